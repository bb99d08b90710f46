//! Row identities and instants, typed so that a delivery id can never be passed where a
//! subscription id is expected.
//!
//! Each id is the integer primary key of its table (`migrations/*/0001_core.sql`); it is read
//! from rows (`sqlx(transparent)`), job payloads and JSON (`serde(transparent)`) as the bare
//! number, so neither stored data nor the JSON of the APIs changes shape. [`UnixMs`] is the
//! one instant type: Unix milliseconds, the unit every time column uses.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

/// An id that is not a positive integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an id (a positive integer)")]
pub struct NotAnId(String);

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            sqlx::Type, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The id as stored; for ids read back from the database or typed by an operator.
            pub const fn new(raw: i64) -> Self {
                Self(raw)
            }

            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = NotAnId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Self)
                    .ok_or_else(|| NotAnId(s.to_owned()))
            }
        }
    };
}

id_type!(
    /// A row of `topics`.
    TopicId
);
id_type!(
    /// A row of `subscriptions` (the HubSub table).
    SubscriptionId
);
id_type!(
    /// A row of `subscription_requests`: one subscribe or unsubscribe intent.
    RequestId
);
id_type!(
    /// A row of `deliveries`: one document to one subscription.
    DeliveryId
);
id_type!(
    /// A row of `contents`: one document as distributed.
    ContentId
);
id_type!(
    /// A row of `distributions`: one fetch that changed, or one producer push.
    DistributionId
);
id_type!(
    /// A row of `bodies`: one fetched or pushed body, stored once for every document made of it.
    BodyId
);

id_type!(
    /// A row of `live_subscribers`: a person or app following topics live.
    LiveSubscriberId
);
id_type!(
    /// A row of `live_tokens`: one grant of topics to a live subscriber.
    LiveTokenId
);
id_type!(
    /// A row of `live_events`: one document waiting for one live subscriber; its position
    /// in that subscriber's stream.
    LiveEventId
);

/// One running Herald process (one start of `herald serve`): what its claims are tied to.
/// Random, so a restarted process is a new one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct ProcessId(String);

impl ProcessId {
    pub fn generate() -> Self {
        Self(super::challenge::random_hex(8))
    }

    /// A process id as stored (read back from a row or a queue worker's name).
    pub fn from_stored(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An instant, in Unix milliseconds. The default is the epoch ("at once").
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    sqlx::Type,
    utoipa::ToSchema,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct UnixMs(i64);

/// Serde helpers: an instant written as RFC 3339 text (`2026-12-07T16:00:00.000Z`), as the
/// APIs and the CLI's JSON show times (`#[serde(serialize_with = "…")]`).
pub mod rfc3339 {
    use super::UnixMs;

    pub fn serialize<S: serde::Serializer>(at: &UnixMs, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339())
    }

    pub fn option<S: serde::Serializer>(at: &Option<UnixMs>, s: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_some(&at.to_rfc3339()),
            None => s.serialize_none(),
        }
    }
}

impl UnixMs {
    /// The beginning of time, for "due at once".
    pub const EPOCH: UnixMs = UnixMs(0);

    /// The end of time, for "not scheduled".
    pub const NEVER: UnixMs = UnixMs(i64::MAX);

    pub fn now() -> Self {
        Self(chrono::Utc::now().timestamp_millis())
    }

    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (never negative).
    pub fn as_secs(self) -> u64 {
        (self.0.max(0) / 1000) as u64
    }

    /// This instant plus `d`, saturating.
    pub fn after(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// This instant minus `d`, saturating.
    pub fn before(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// How long from `self` until `later` (zero when `later` is not later).
    pub fn until(self, later: UnixMs) -> Duration {
        Duration::from_millis(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }

    /// RFC 3339 in UTC, to the millisecond.
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp_millis(self.0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| self.0.to_string())
    }
}

impl fmt::Display for UnixMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_positive_integers() {
        assert_eq!("42".parse::<DeliveryId>(), Ok(DeliveryId::new(42)));
        assert!("0".parse::<DeliveryId>().is_err());
        assert!("-3".parse::<TopicId>().is_err());
        assert!("x".parse::<TopicId>().is_err());
    }

    #[test]
    fn ids_and_instants_serialise_as_bare_numbers() {
        assert_eq!(serde_json::to_string(&RequestId::new(7)).unwrap(), "7");
        assert_eq!(
            serde_json::to_string(&UnixMs::from_millis(1500)).unwrap(),
            "1500"
        );
        let id: SubscriptionId = serde_json::from_str("12").unwrap();
        assert_eq!(id.get(), 12);
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = UnixMs::from_millis(1_000);
        assert_eq!(t.after(Duration::from_millis(500)).as_millis(), 1_500);
        assert_eq!(t.before(Duration::from_secs(2)).as_millis(), -1_000);
        assert_eq!(t.until(UnixMs::from_millis(400)), Duration::ZERO);
        assert_eq!(t.until(UnixMs::from_millis(3_000)), Duration::from_secs(2));
        assert_eq!(
            UnixMs::from_millis(i64::MAX)
                .after(Duration::MAX)
                .as_millis(),
            i64::MAX
        );
        assert_eq!(t.to_rfc3339(), "1970-01-01T00:00:01.000Z");
    }
}
