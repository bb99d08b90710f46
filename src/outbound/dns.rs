//! Host names resolved without blocking a thread (hickory's stub resolver, configured from
//! `/etc/resolv.conf` and `/etc/hosts`), each lookup bounded by a deadline, and the resolver the
//! HTTP clients connect through, which keeps only the addresses the policy permits.
//!
//! A lookup that times out costs a timer and a socket, not a thread of the blocking pool: a
//! flood of names that never answer cannot starve the hub's other blocking work.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hickory_resolver::{
    TokioResolver,
    config::{ResolveHosts, ResolverConfig, ResolverOpts},
    net::{NetError, runtime::TokioRuntimeProvider},
};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::address::AddressPolicy;

/// How long a host name may take to resolve.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// The process's resolver: shared by every client, with one cache.
#[derive(Clone)]
pub struct Dns(Arc<TokioResolver>);

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dns")
    }
}

impl Dns {
    /// The system's configuration; without a readable `/etc/resolv.conf`, the hosts file only
    /// (said once, at start).
    pub fn from_system() -> Self {
        let mut builder = match TokioResolver::builder_tokio() {
            Ok(builder) => builder,
            Err(error) => {
                tracing::warn!(error = %crate::telemetry::Chain(&error), "no usable /etc/resolv.conf: host names resolve from /etc/hosts only");
                TokioResolver::builder_with_config(
                    ResolverConfig::default(),
                    TokioRuntimeProvider::default(),
                )
            }
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.use_hosts_file = ResolveHosts::Always;
        options.timeout = options.timeout.min(DNS_TIMEOUT);
        let resolver = builder
            .build()
            .or_else(|error| {
                tracing::warn!(error = %crate::telemetry::Chain(&error), "the system's resolver configuration was refused: host names resolve from /etc/hosts only");
                TokioResolver::builder_with_config(
                    ResolverConfig::default(),
                    TokioRuntimeProvider::default(),
                )
                .build()
            })
            .expect("a resolver without name servers always builds");
        Self(Arc::new(resolver))
    }

    /// A resolver asking only the name server at `server` (UDP), without the hosts file.
    #[cfg(test)]
    fn asking(server: SocketAddr) -> Self {
        use hickory_resolver::config::{ConnectionConfig, NameServerConfig};
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
            server.ip(),
            true,
            vec![udp],
        )]);
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        builder.options_mut().use_hosts_file = ResolveHosts::Never;
        Self(Arc::new(builder.build().expect("a resolver")))
    }

    /// Resolves `host` (an IP literal resolves to itself), giving up after `timeout`.
    pub async fn lookup(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Vec<SocketAddr>, LookupError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let resolving = async {
            self.0
                .lookup_ip(host)
                .await
                .map(|found| found.iter().map(|ip| SocketAddr::new(ip, port)).collect())
        };
        bounded(host, timeout, resolving).await
    }
}

/// A resolution of `host` that gives up after `timeout`.
pub(super) async fn bounded(
    host: &str,
    timeout: Duration,
    resolving: impl Future<Output = Result<Vec<SocketAddr>, NetError>>,
) -> Result<Vec<SocketAddr>, LookupError> {
    match tokio::time::timeout(timeout, resolving).await {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(error)) if error.is_no_records_found() => Ok(Vec::new()),
        Ok(Err(error)) => Err(LookupError::Failed {
            host: host.to_owned(),
            error: Box::new(error),
        }),
        Err(_) => Err(LookupError::TimedOut(host.to_owned())),
    }
}

/// Why a host name did not resolve.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("resolving {host} failed")]
    Failed {
        host: String,
        #[source]
        error: Box<NetError>,
    },
    #[error("resolving {0} timed out")]
    TimedOut(String),
    #[error("address not allowed: {0} resolves only to non-public addresses")]
    NotAllowed(String),
    #[error("{0} has no address")]
    NoAddress(String),
}

/// Resolves host names for an HTTP client and keeps only the addresses `policy` permits.
#[derive(Debug, Clone)]
pub(super) struct PolicyResolver {
    pub dns: Dns,
    pub policy: AddressPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (dns, policy) = (self.dns.clone(), self.policy.clone());
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let all = dns.lookup(&host, 0, DNS_TIMEOUT).await?;
            if all.is_empty() {
                return Err(LookupError::NoAddress(host).into());
            }
            let allowed: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| policy.permits_any_port(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(LookupError::NotAllowed(host).into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lookups_give_up_after_their_timeout_and_literals_resolve_to_themselves() {
        // A resolver that never answers (a real lookup of a bad name may fail before a zero
        // timeout is even looked at).
        let never = std::future::pending::<Result<Vec<SocketAddr>, NetError>>();
        let error = bounded("example.invalid", Duration::from_millis(10), never)
            .await
            .expect_err("no answer in time");
        let error = crate::telemetry::Chain(&error).to_string();
        assert!(error.contains("timed out"), "{error}");
        let dns = Dns::from_system();
        let found = dns.lookup("127.0.0.1", 80, DNS_TIMEOUT).await.unwrap();
        assert_eq!(found, vec!["127.0.0.1:80".parse().unwrap()]);
        let found = dns.lookup("[::1]", 443, DNS_TIMEOUT).await.unwrap();
        assert_eq!(found, vec!["[::1]:443".parse().unwrap()]);
        let local = dns.lookup("localhost", 8080, DNS_TIMEOUT).await.unwrap();
        assert!(
            local.iter().all(|a| a.ip().is_loopback()) && !local.is_empty(),
            "{local:?}"
        );
    }

    /// The OS threads of this process.
    fn threads() -> usize {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Hundreds of names whose server never answers: each lookup gives up at its deadline and
    /// none holds a thread meanwhile (a blocking `getaddrinfo` per lookup would need one each,
    /// and keep it after the deadline, up to the blocking pool's 512).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_names_that_never_resolve_holds_no_thread() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket");
        let dns = Dns::asking(silent.local_addr().expect("its address"));
        let before = threads();
        let lookups = (0..300).map(|n| {
            let dns = dns.clone();
            tokio::spawn(async move {
                dns.lookup(&format!("slow-{n}.example"), 80, Duration::from_millis(300))
                    .await
            })
        });
        let mut peak = before;
        let results = futures::future::join_all(lookups);
        tokio::pin!(results);
        let results = loop {
            tokio::select! {
                done = &mut results => break done,
                _ = tokio::time::sleep(Duration::from_millis(20)) => peak = peak.max(threads()),
            }
        };
        for result in results {
            let error = result.expect("joined").expect_err("no answer");
            assert!(matches!(error, LookupError::TimedOut(_)), "{error}");
        }
        // A blocking lookup per name would add about 300 threads (the blocking pool allows
        // 512); other tests running in this process at the same time add a few.
        assert!(
            peak < before + 64,
            "threads: {before} before, {peak} at the peak"
        );
        drop(silent);
    }
}
