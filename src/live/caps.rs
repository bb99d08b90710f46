//! Caps on live connections: per token, per client address and in all, per process. A
//! connection holds a [`Permit`] for as long as it is open; one over a cap is refused with the
//! cap it hit (`429` for SSE, close code 1013 for a WebSocket), and counted
//! (`herald_live_connections_refused_total`).

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use super::Live;
use crate::domain::ids::LiveTokenId;

/// Open connections, counted.
#[derive(Debug, Default)]
pub(super) struct Counts {
    total: usize,
    tokens: HashMap<LiveTokenId, usize>,
    clients: HashMap<Option<IpAddr>, usize>,
}

/// Why a connection was refused by a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapRefusal {
    #[error("this token already has {0} live connections open (HERALD_LIVE_MAX_PER_TOKEN)")]
    Token(usize),
    #[error("your address already has {0} live connections open (HERALD_LIVE_MAX_PER_CLIENT)")]
    Client(usize),
    #[error("this hub holds as many live connections as it may ({0}); try again later")]
    Total(usize),
}

impl CapRefusal {
    /// The cap, as the metric's label says it.
    pub fn cap(self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::Client(_) => "client",
            Self::Total(_) => "total",
        }
    }
}

/// A connection's place under the caps; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    live: Arc<Live>,
    token: LiveTokenId,
    client: Option<Option<IpAddr>>,
}

impl Live {
    /// A place for one more connection with `token` from `client` (`Limits::limited_key`:
    /// `None` for a trusted client, which no per-client cap counts), or the cap it would exceed.
    pub fn admit(
        self: &Arc<Self>,
        token: LiveTokenId,
        client: Option<Option<IpAddr>>,
    ) -> Result<Permit, CapRefusal> {
        let settings = &self.settings;
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.total >= settings.max_connections {
            return Err(CapRefusal::Total(settings.max_connections));
        }
        if counts.tokens.get(&token).copied().unwrap_or(0) >= settings.max_per_token {
            return Err(CapRefusal::Token(settings.max_per_token));
        }
        if let Some(client) = client
            && counts.clients.get(&client).copied().unwrap_or(0) >= settings.max_per_client
        {
            return Err(CapRefusal::Client(settings.max_per_client));
        }
        counts.total += 1;
        *counts.tokens.entry(token).or_default() += 1;
        if let Some(client) = client {
            *counts.clients.entry(client).or_default() += 1;
        }
        Ok(Permit {
            live: self.clone(),
            token,
            client,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.live.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        release(&mut counts.tokens, &self.token);
        if let Some(client) = &self.client {
            release(&mut counts.clients, client);
        }
    }
}

fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}
