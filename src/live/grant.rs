//! Live tokens: what a producer hands to a person's browser or app, and the check a connection
//! passes before it is served.
//!
//! A token is 32 random bytes in hex, prefixed `hlt_`; only its SHA-256 is stored, so a database
//! dump reveals no usable token. A token names one subscriber, the topics it may follow and the
//! delivery mode; it is refused once it expires or is revoked.

use sha2::{Digest, Sha256};

use crate::{
    domain::{
        challenge,
        delivery_mode::DeliveryMode,
        ids::{LiveSubscriberId, LiveTokenId, TopicId, UnixMs},
    },
    store::{Db, StoreError, live},
};

const PREFIX: &str = "hlt_";

/// A new random token.
pub fn new_token() -> String {
    format!("{PREFIX}{}", challenge::random_hex(32))
}

/// What is stored of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// Why a connection is not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("a live token is required: Authorization: Bearer <token>, or ?token=<token>")]
    NoToken,
    #[error("the live token is not valid")]
    UnknownToken,
    #[error("the live token expired")]
    Expired,
    #[error("the live token was revoked")]
    Revoked,
    #[error("the live token does not grant the topic {0}")]
    TopicNotGranted(String),
}

impl Refusal {
    /// A stable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoToken | Self::UnknownToken => "unauthorized",
            Self::Expired => "token_expired",
            Self::Revoked => "token_revoked",
            Self::TopicNotGranted(_) => "topic_not_granted",
        }
    }
}

/// A checked token: who is connecting and what the connection follows.
#[derive(Debug, Clone)]
pub struct Grant {
    pub token: LiveTokenId,
    pub subscriber_id: LiveSubscriberId,
    pub subscriber: String,
    pub mode: DeliveryMode,
    pub expires_at: UnixMs,
    /// The topics this connection follows (all those granted, or those asked for): id, URL.
    pub topics: Vec<(TopicId, String)>,
}

impl Grant {
    pub fn topic_ids(&self) -> Vec<TopicId> {
        self.topics.iter().map(|(id, _)| *id).collect()
    }

    pub fn topic_urls(&self) -> Vec<&str> {
        self.topics.iter().map(|(_, url)| url.as_str()).collect()
    }
}

/// Checks `token` and, when `wanted` is not empty, that it grants each of those topics (the
/// connection then follows only them).
pub async fn authenticate(
    db: &Db,
    token: Option<&str>,
    wanted: &[String],
    now: UnixMs,
) -> Result<Result<Grant, Refusal>, StoreError> {
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(Err(Refusal::NoToken));
    };
    let Some(row) = live::find_token(db, &token_hash(token)).await? else {
        return Ok(Err(Refusal::UnknownToken));
    };
    if row.revoked_at.is_some() {
        return Ok(Err(Refusal::Revoked));
    }
    if row.expires_at <= now {
        return Ok(Err(Refusal::Expired));
    }
    let mut topics = row.topics;
    if !wanted.is_empty() {
        for want in wanted {
            if !topics.iter().any(|(_, url)| url == want) {
                return Ok(Err(Refusal::TopicNotGranted(want.clone())));
            }
        }
        topics.retain(|(_, url)| wanted.contains(url));
    }
    Ok(Ok(Grant {
        token: row.id,
        subscriber_id: row.subscriber_id,
        subscriber: row.subscriber,
        mode: row.mode,
        expires_at: row.expires_at,
        topics,
    }))
}

/// Whether the token of a connection is still good (checked on every heartbeat).
pub async fn still_valid(
    db: &Db,
    grant: &Grant,
    now: UnixMs,
) -> Result<Option<Refusal>, StoreError> {
    Ok(match live::token_state(db, grant.token).await? {
        None => Some(Refusal::Revoked),
        Some((_, Some(_))) => Some(Refusal::Revoked),
        Some((expires_at, None)) if expires_at <= now => Some(Refusal::Expired),
        Some(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 64);
        assert_eq!(token_hash(&a), token_hash(&format!(" {a}\n")));
        assert_ne!(token_hash(&a), token_hash(&b));
        assert!(!token_hash(&a).contains(&a[PREFIX.len()..]));
    }
}
