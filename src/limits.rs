//! Limits that keep one party from occupying the hub: how many requests go to one callback
//! host at once, and how many synchronous verifications run at once. In-process: each Herald
//! process applies them to what it sends itself.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::url::HubUrl;

#[derive(Debug)]
pub struct Limits {
    per_host: HostSlots,
    sync_verifications: Arc<Semaphore>,
}

impl Limits {
    pub fn new(max_per_host: usize, max_sync_verifications: usize) -> Self {
        Self {
            per_host: HostSlots::new(max_per_host),
            sync_verifications: Arc::new(Semaphore::new(max_sync_verifications)),
        }
    }

    /// A slot for one request to `url`'s host, or `None` when that host already has its share
    /// in flight (the caller defers the request rather than wait in line).
    pub fn host_slot(&self, url: &HubUrl) -> Option<OwnedSemaphorePermit> {
        self.per_host.try_acquire(url)
    }

    /// A slot for one synchronous verification, or `None` when too many are running.
    pub fn sync_verification(&self) -> Option<OwnedSemaphorePermit> {
        self.sync_verifications.clone().try_acquire_owned().ok()
    }
}

/// One semaphore per callback host (host and port: one server), created on first use.
#[derive(Debug)]
struct HostSlots {
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Past this many hosts the idle ones are forgotten, so the map stays small.
const FORGET_IDLE_ABOVE: usize = 10_000;

impl HostSlots {
    fn new(per_host: usize) -> Self {
        Self {
            per_host,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    fn try_acquire(&self, url: &HubUrl) -> Option<OwnedSemaphorePermit> {
        let u = url.as_url();
        let key = format!(
            "{}:{}",
            u.host_str().unwrap_or_default(),
            u.port_or_known_default().unwrap_or(0)
        );
        let semaphore = {
            let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            if hosts.len() > FORGET_IDLE_ABOVE {
                let full = self.per_host;
                hosts.retain(|_, s| s.available_permits() < full);
            }
            hosts
                .entry(key)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
                .clone()
        };
        semaphore.try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_host_has_its_own_share() {
        let limits = Limits::new(2, 1);
        let a = HubUrl::parse("http://a.example/cb/1").unwrap();
        let a2 = HubUrl::parse("http://a.example/cb/2").unwrap();
        let a_other_port = HubUrl::parse("http://a.example:8080/cb").unwrap();
        let b = HubUrl::parse("https://b.example/cb").unwrap();
        let first = limits.host_slot(&a).expect("free");
        let _second = limits.host_slot(&a2).expect("free");
        assert!(limits.host_slot(&a).is_none(), "a's share is taken");
        assert!(limits.host_slot(&a_other_port).is_some());
        assert!(limits.host_slot(&b).is_some());
        drop(first);
        assert!(limits.host_slot(&a).is_some(), "a slot came back");
        let sync = limits.sync_verification().expect("free");
        assert!(limits.sync_verification().is_none());
        drop(sync);
        assert!(limits.sync_verification().is_some());
    }
}
