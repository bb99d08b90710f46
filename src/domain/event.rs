//! What the producer hears about its subscribers (docs/events.md): the kinds of event the hub
//! records, each in the transaction of the change it reports.

use std::str::FromStr;

use super::vocabulary::NotOneOf;

/// The kind of an event, as `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(into = "&'static str")]
#[schema(as = String)]
pub enum EventType {
    /// A subscription was verified: new, renewed or changed (with its lease's end).
    SubscriptionActivated,
    /// A verified unsubscribe ended it.
    SubscriptionUnsubscribed,
    /// Its lease ran out.
    SubscriptionExpired,
    /// The hub refused it (with the reason).
    SubscriptionDenied,
    /// The callback did not confirm it (with the reason).
    SubscriptionVerificationFailed,
    /// Deliveries to a callback stopped arriving: one exhausted its retries (for its
    /// subscription), or the callback host's circuit breaker opened (for the host).
    CallbackFailing,
    /// A delivery to it arrived again, or the host's breaker closed.
    CallbackRecovered,
    /// A delivery exhausted its retries (with the delivery id; replayable until
    /// `HERALD_FAILED_RETENTION`).
    DeliveryDeadLettered,
    /// The topic's fetches started failing (with the error).
    TopicFetchFailing,
    /// A fetch succeeded again.
    TopicFetchRecovered,
    /// A poll found new entries its publisher had not pinged for.
    TopicMissedPing,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        Self::SubscriptionActivated,
        Self::SubscriptionUnsubscribed,
        Self::SubscriptionExpired,
        Self::SubscriptionDenied,
        Self::SubscriptionVerificationFailed,
        Self::CallbackFailing,
        Self::CallbackRecovered,
        Self::DeliveryDeadLettered,
        Self::TopicFetchFailing,
        Self::TopicFetchRecovered,
        Self::TopicMissedPing,
    ];

    const NAMES: [&'static str; 11] = [
        "subscription.activated",
        "subscription.unsubscribed",
        "subscription.expired",
        "subscription.denied",
        "subscription.verification_failed",
        "callback.failing",
        "callback.recovered",
        "delivery.dead_lettered",
        "topic.fetch_failing",
        "topic.fetch_recovered",
        "topic.missed_ping",
    ];

    pub fn as_str(self) -> &'static str {
        let i = Self::ALL.iter().position(|t| *t == self).unwrap_or(0);
        Self::NAMES[i]
    }
}

impl From<EventType> for &'static str {
    fn from(t: EventType) -> Self {
        t.as_str()
    }
}

impl FromStr for EventType {
    type Err = NotOneOf;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| NotOneOf::new(s, &Self::NAMES))
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::EventType;

    #[test]
    fn every_type_reads_back_from_its_name() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
        }
        assert!("subscription.nothing".parse::<EventType>().is_err());
    }
}
