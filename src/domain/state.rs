//! The states stored rows move through, and the small closed vocabularies stored beside them.
//!
//! Each is stored as lower-case text (see the CHECK constraints in `migrations/`); only
//! `store/` converts between the two spellings, with [`as_str`](RequestState::as_str) when
//! binding and `FromStr` when reading a row. Serialised to JSON as the same words.

use std::{fmt, str::FromStr};

use serde::Serialize;

use super::delivery_mode::DeliveryMode;

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        // By hand: the derive does not see serde's renames through this macro's literals.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = super::vocabulary::NotOneOf;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(super::vocabulary::NotOneOf::new(other, &[$($text),+])),
                }
            }
        }
    };
}

text_enum!(
    /// Where a subscription request stands (`subscription_requests.state`).
    RequestState {
        /// Waiting for its verification (which may be under way: see the request's claim).
        Pending = "pending",
        /// The subscriber confirmed it; it was applied.
        Verified = "verified",
        /// The callback did not confirm it; nothing changed.
        Failed = "failed",
        /// The hub refused the topic and told the callback (`hub.mode=denied`).
        Denied = "denied",
        /// Replaced by an identical later request before its verification started.
        Superseded = "superseded",
    }
);

text_enum!(
    /// Who asked for a subscription request (`subscription_requests.origin`).
    RequestOrigin {
        /// A subscriber, on the hub URL.
        Subscriber = "subscriber",
        /// The hub itself, renewing a lease before it ends.
        Renewal = "renewal",
    }
);

text_enum!(
    /// Where a subscription stands (`subscriptions.state`).
    SubscriptionState {
        Active = "active",
        /// A verified unsubscribe removed it.
        Unsubscribed = "unsubscribed",
        /// Its callback answered 410 Gone.
        Ended = "ended",
        /// Its lease ran out, or an operator expired it.
        Expired = "expired",
    }
);

text_enum!(
    /// Where a delivery stands (`deliveries.state`).
    DeliveryState {
        /// Waiting to be sent (for the first time, or again after `next_attempt_at`).
        Pending = "pending",
        /// Claimed by a worker that is POSTing it.
        Sending = "sending",
        Delivered = "delivered",
        /// Retries exhausted; kept for replay.
        Failed = "failed",
        /// The callback answered 410 Gone.
        Gone = "gone",
        /// Not sent: its subscription ended first.
        Cancelled = "cancelled",
    }
);

impl DeliveryState {
    /// Still to be sent (or being sent).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Sending)
    }
}

text_enum!(
    /// What started a distribution (`distributions.source`).
    DistributionSource {
        /// A publish ping, followed by a fetch.
        Ping = "ping",
        /// A producer's fat ping through the API.
        Push = "push",
        /// A scheduled fetch nobody asked for (src/distribution/poll.rs).
        Poll = "poll",
    }
);

/// Which subscriptions of a topic one distributed document is for (`contents.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Every active subscription: content that is not a feed (or a feed that did not parse).
    Whole,
    /// The subscriptions that receive feeds in this mode.
    Mode(DeliveryMode),
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Whole => "whole",
            Self::Mode(m) => m.as_str(),
        }
    }
}

impl FromStr for Audience {
    type Err = super::vocabulary::NotOneOf;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "whole" => Ok(Self::Whole),
            mode => mode.parse().map(Self::Mode).map_err(|_| {
                super::vocabulary::NotOneOf::new(mode, &["whole", "diff", "single", "full"])
            }),
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_spellings_round_trip() {
        for s in RequestState::ALL {
            assert_eq!(s.as_str().parse(), Ok(*s));
        }
        for s in SubscriptionState::ALL {
            assert_eq!(s.as_str().parse(), Ok(*s));
        }
        for s in DeliveryState::ALL {
            assert_eq!(s.as_str().parse(), Ok(*s));
        }
        for s in RequestOrigin::ALL {
            assert_eq!(s.as_str().parse(), Ok(*s));
        }
        for a in [Audience::Whole, Audience::Mode(DeliveryMode::Single)] {
            assert_eq!(a.as_str().parse(), Ok(a));
        }
        assert!("Active".parse::<SubscriptionState>().is_err());
    }

    #[test]
    fn json_uses_the_stored_words() {
        assert_eq!(
            serde_json::to_string(&DeliveryState::Cancelled).unwrap(),
            "\"cancelled\""
        );
    }
}
