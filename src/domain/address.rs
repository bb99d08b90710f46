//! Which IP addresses the hub may contact (server-side request forgery defence; WebSub says
//! nothing of it, but a hub that fetches and calls any URL it is given must).
//!
//! By default only public unicast addresses are allowed. `loopback:8000,9000` additionally
//! allows the loopback range on the ports named (a hub co-located with its publisher or its
//! subscribers); a bare `loopback` allows every loopback port, which opens every local service
//! to anyone who can subscribe (the hub warns at start). `true` allows everything (tests, or a
//! hub inside a trusted private network).
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are judged as the IPv4 address they carry.
//! The IPv6 forms that *tunnel or translate* to IPv4 — IPv4-compatible `::a.b.c.d`,
//! IPv4-translated `::ffff:0:a.b.c.d`, 6to4 `2002::/16`, Teredo `2001::/32`, NAT64
//! `64:ff9b::/96` and `64:ff9b:1::/48` — are refused whatever IPv4 address they embed: which
//! host a relay or translator finally reaches cannot be judged from here, and no callback or
//! topic needs them. So are deprecated site-local `fec0::/10` and the other non-public ranges.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
    sync::Arc,
};

/// Which addresses the hub may contact (`HERALD_ALLOW_PRIVATE_ADDRESSES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressPolicy {
    PublicOnly,
    /// Public addresses, and loopback on these ports.
    AllowLoopback(LoopbackPorts),
    AllowAll,
}

/// The loopback ports a [`AddressPolicy::AllowLoopback`] opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoopbackPorts {
    Any,
    /// Sorted, without repeats, never empty.
    Only(Arc<[u16]>),
}

impl LoopbackPorts {
    pub fn includes(&self, port: u16) -> bool {
        match self {
            Self::Any => true,
            Self::Only(ports) => ports.binary_search(&port).is_ok(),
        }
    }
}

impl AddressPolicy {
    /// Whether `ip` may be contacted on `port`.
    pub fn permits(&self, ip: IpAddr, port: u16) -> bool {
        match self {
            Self::AllowLoopback(_) if !self.opens_loopback_on(port) => {
                Self::PublicOnly.permits_any_port(ip)
            }
            _ => self.permits_any_port(ip),
        }
    }

    /// Whether `ip` may be contacted on some port (loopback: on one the policy names).
    pub fn permits_any_port(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match self {
            Self::AllowAll => true,
            Self::AllowLoopback(_) => ip.is_loopback() || is_public(ip),
            Self::PublicOnly => is_public(ip),
        }
    }

    /// Whether loopback may be contacted on `port` (`AllowAll` opens it everywhere).
    pub fn opens_loopback_on(&self, port: u16) -> bool {
        match self {
            Self::AllowAll => true,
            Self::AllowLoopback(ports) => ports.includes(port),
            Self::PublicOnly => false,
        }
    }

    /// Whether the policy opens loopback on only some ports (connections then need to know
    /// their port before they resolve a name).
    pub fn depends_on_port(&self) -> bool {
        matches!(self, Self::AllowLoopback(LoopbackPorts::Only(_)))
    }
}

impl fmt::Display for AddressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PublicOnly => f.write_str("false"),
            Self::AllowAll => f.write_str("true"),
            Self::AllowLoopback(LoopbackPorts::Any) => f.write_str("loopback"),
            Self::AllowLoopback(LoopbackPorts::Only(ports)) => {
                let list: Vec<String> = ports.iter().map(u16::to_string).collect();
                write!(f, "loopback:{}", list.join(","))
            }
        }
    }
}

/// An `HERALD_ALLOW_PRIVATE_ADDRESSES` value that is not a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAPolicy {
    #[error(transparent)]
    Word(#[from] super::vocabulary::NotOneOf),
    #[error("{0:?} is not a port (1-65535) in loopback:PORT,PORT")]
    Port(String),
}

impl FromStr for AddressPolicy {
    type Err = NotAPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        if let Some(list) = lower.strip_prefix("loopback:") {
            let mut ports = list
                .split(',')
                .map(|p| match p.trim().parse::<u16>() {
                    Ok(port) if port > 0 => Ok(port),
                    _ => Err(NotAPolicy::Port(p.trim().to_owned())),
                })
                .collect::<Result<Vec<u16>, _>>()?;
            ports.sort_unstable();
            ports.dedup();
            return Ok(Self::AllowLoopback(LoopbackPorts::Only(ports.into())));
        }
        match lower.as_str() {
            "false" | "no" | "0" | "none" => Ok(Self::PublicOnly),
            "loopback" => Ok(Self::AllowLoopback(LoopbackPorts::Any)),
            "true" | "yes" | "1" | "all" => Ok(Self::AllowAll),
            other => Err(super::vocabulary::NotOneOf::new(
                other,
                &["false", "loopback:PORT,PORT", "loopback", "true"],
            )
            .into()),
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries; any other as it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, cloud metadata
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24 protocol assignments
        || (a == 198 && (18..20).contains(&b)) // 198.18/15 benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let first = s[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (first & 0xffc0) == 0xfe80 // fe80::/10 link local
        || (first & 0xffc0) == 0xfec0 // fec0::/10 site local (deprecated)
        || (first == 0x2001 && s[1] == 0x0db8) // documentation
        || (first == 0x2001 && s[1] == 0x0000) // 2001::/32 Teredo
        || first == 0x2002 // 2002::/16 6to4
        || (first == 0x0064 && s[1] == 0xff9b) // 64:ff9b::/96 and 64:ff9b:1::/48 NAT64
        || s[..6] == [0, 0, 0, 0, 0, 0] // ::a.b.c.d IPv4-compatible (deprecated)
        || s[..6] == [0, 0, 0, 0, 0xffff, 0]) // ::ffff:0:a.b.c.d IPv4-translated
}

/// The client of a request that came through `peer`: `peer` itself unless `is_proxy` says it
/// is a trusted reverse proxy. Then the `X-Forwarded-For` entries (`forwarded`, each header's
/// comma-separated list, in order) are walked from the right — the hop nearest to the hub
/// first — past trusted proxies, and the first other entry is the client. An entry that is not
/// an address (nor `address:port`, `[v6]:port`) ends the walk with no client known (`None`):
/// whatever lies left of it could have been written by anyone, including a spoofed loopback.
/// When every entry is a trusted proxy, the client is `peer`.
pub fn forwarded_client<'a>(
    peer: IpAddr,
    forwarded: impl DoubleEndedIterator<Item = &'a str>,
    is_proxy: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    if !is_proxy(peer) {
        return Some(peer);
    }
    for entry in forwarded.rev() {
        let entry = entry.trim();
        let ip = entry
            .parse::<IpAddr>()
            .or_else(|_| entry.parse::<std::net::SocketAddr>().map(|s| s.ip()))
            .ok()?;
        if !is_proxy(ip) {
            return Some(ip);
        }
    }
    Some(peer)
}

/// The key a client is limited under: its address, with an IPv6 address cut to its first
/// `ipv6_prefix` bits (a /64 is one subscriber's network: rotating within it must not escape a
/// limit). An IPv4-mapped address counts as its IPv4 address.
pub fn limit_key(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u32::from(ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_only_refuses_internal_ranges() {
        let refused = [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "::8.8.8.8",
            "::ffff:0:127.0.0.1",
            "::ffff:0:8.8.8.8",
            "2002:7f00:1::1",
            "2002:0808:0808::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "feff::1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::8.8.8.8",
            "64:ff9b:1::a00:1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ];
        for s in refused {
            assert!(!AddressPolicy::PublicOnly.permits(ip(s), 80), "{s}");
        }
        for s in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert!(AddressPolicy::PublicOnly.permits(ip(s), 80), "{s}");
        }
    }

    #[test]
    fn loopback_mode_allows_only_loopback_in_addition_and_only_on_the_ports_named() {
        let any: AddressPolicy = "loopback".parse().unwrap();
        assert!(any.permits(ip("127.0.0.1"), 22));
        assert!(any.permits(ip("::1"), 8080));
        assert!(!any.permits(ip("10.0.0.1"), 80));
        assert!(!any.permits(ip("169.254.169.254"), 80));
        let some: AddressPolicy = "loopback:9000, 8000,8000".parse().unwrap();
        assert_eq!(some.to_string(), "loopback:8000,9000");
        assert!(some.permits(ip("127.0.0.1"), 8000));
        assert!(some.permits(ip("::ffff:127.0.0.1"), 9000));
        assert!(!some.permits(ip("127.0.0.1"), 5432));
        assert!(!some.permits(ip("::1"), 22));
        assert!(
            some.permits(ip("93.184.216.34"), 5432),
            "public addresses on any port"
        );
        assert!(some.depends_on_port() && !any.depends_on_port());
        assert!(!some.opens_loopback_on(5432) && some.opens_loopback_on(9000));
        assert!(AddressPolicy::AllowAll.permits(ip("10.0.0.1"), 1));
    }

    #[test]
    fn parses_settings() {
        assert_eq!("false".parse(), Ok(AddressPolicy::PublicOnly));
        assert_eq!("TRUE".parse(), Ok(AddressPolicy::AllowAll));
        assert_eq!(
            "loopback".parse(),
            Ok(AddressPolicy::AllowLoopback(LoopbackPorts::Any))
        );
        for bad in [
            "maybe",
            "loopback:",
            "loopback:0",
            "loopback:70000",
            "loopback:80,x",
        ] {
            let error = bad.parse::<AddressPolicy>().expect_err(bad).to_string();
            assert!(error.contains("loopback:PORT"), "{bad}: {error}");
        }
        for policy in ["false", "true", "loopback", "loopback:1,65535"] {
            assert_eq!(policy.parse::<AddressPolicy>().unwrap().to_string(), policy);
        }
    }

    #[test]
    fn the_forwarded_client_is_the_first_untrusted_entry_from_the_right() {
        let proxy = |ip: IpAddr| ip.is_loopback() || ip == "10.0.0.5".parse::<IpAddr>().unwrap();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let walk = |header: &str| forwarded_client(peer, header.split(','), proxy);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // A peer that is no proxy is the client, whatever it forwards.
        assert_eq!(
            forwarded_client(
                "203.0.113.1".parse().unwrap(),
                "127.0.0.1".split(','),
                proxy
            ),
            ip("203.0.113.1")
        );
        assert_eq!(walk("198.51.100.7"), ip("198.51.100.7"));
        assert_eq!(
            walk("127.0.0.1, 198.51.100.7, 10.0.0.5"),
            ip("198.51.100.7")
        );
        assert_eq!(walk("198.51.100.7:5555"), ip("198.51.100.7"));
        assert_eq!(walk("[2001:db8::1]:443"), ip("2001:db8::1"));
        // What the client wrote itself, left of an entry that is no address, is never taken.
        assert_eq!(walk("127.0.0.1, not-an-address"), None);
        assert_eq!(walk("127.0.0.1, unknown, 10.0.0.5"), None);
        assert_eq!(walk("127.0.0.1,"), None);
        // Only proxies: the peer.
        assert_eq!(walk("10.0.0.5"), ip("127.0.0.1"));
        assert_eq!(
            forwarded_client(peer, std::iter::empty(), proxy),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn ipv6_clients_are_limited_per_network() {
        let key = |s: &str, prefix| limit_key(s.parse().unwrap(), prefix);
        assert_eq!(
            key("2001:db8:1:2:aaaa::1", 64),
            key("2001:db8:1:2:bbbb::9", 64)
        );
        assert_ne!(key("2001:db8:1:2::1", 64), key("2001:db8:1:3::1", 64));
        assert_eq!(
            key("2001:db8:1:2::1", 128),
            "2001:db8:1:2::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            key("::ffff:203.0.113.9", 64),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            key("203.0.113.9", 64),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(key("2001:db8::1", 0), "::".parse::<IpAddr>().unwrap());
    }
}
