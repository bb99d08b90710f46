//! One POST to a callback (WebSub §7): the headers it carries, the breaker and host slot it
//! goes through, and what the retry policy (`domain::retry`) makes of its answer.

use std::sync::Arc;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LINK};

use super::{Delivery, EVENT_ID_HEADER, SEQUENCE_HEADER};
use crate::{
    domain::{
        breaker::{Admission, Reached},
        content::FALLBACK_CONTENT_TYPE,
        ids::UnixMs,
        link::delivery_link_header,
        retry::{NextStep, Outcome, with_jitter},
        state::SubscriptionState,
    },
    limits::{HOST_BUSY_DEFER, HOST_SLOT_WAIT},
    store::{
        callback_hosts,
        contents::ContentRow,
        deliveries::{ClaimedDelivery, Recorded},
    },
    telemetry::Chain,
};

/// A header value that cannot be sent (a stored value with bytes HTTP does not allow).
#[derive(Debug, thiserror::Error)]
#[error("cannot send header value {0:?}")]
struct UnsendableHeader(String);

impl Delivery {
    /// One POST, and what the retry policy makes of its outcome.
    pub(super) async fn attempt(
        &self,
        row: &ClaimedDelivery,
        content: Arc<ContentRow>,
        jitter: f64,
    ) -> Recorded {
        if row.subscription_state != SubscriptionState::Active {
            return Recorded::Cancelled {
                reason: format!("subscription is {}", row.subscription_state),
            };
        }
        if row.expires_at <= UnixMs::now() {
            return Recorded::Cancelled {
                reason: "subscription lease expired".into(),
            };
        }
        // A host that stopped answering is paused: its deliveries wait without using attempts.
        let host = crate::limits::host_key(&row.callback);
        if let Admission::Wait(until) = self.limits.breaker_admit(&host, UnixMs::now()) {
            return Recorded::Deferred { until };
        }
        // One host gets its share of requests at a time; the rest wait without using an
        // attempt.
        let slot = self.limits.host_slot_within(&host, HOST_SLOT_WAIT);
        let Some(_host_slot) = slot.await else {
            return Recorded::Deferred {
                until: UnixMs::now().after(HOST_BUSY_DEFER),
            };
        };
        let headers = match self.headers(row, &content) {
            Ok(h) => h,
            Err(refused) => {
                return Recorded::Failed {
                    status: None,
                    error: refused.to_string(),
                };
            }
        };
        let outcome = match self
            .outbound
            .post_delivery(row.callback.as_str(), headers, content.body.clone())
            .await
        {
            Ok(r) if (200..300).contains(&r.status) => Outcome::Success(r.status),
            Ok(r) => Outcome::Status {
                status: r.status,
                retry_after: r.retry_after,
            },
            Err(e) => Outcome::Transport(e.to_string()),
        };
        let reached = match outcome {
            Outcome::Transport(_) => Reached::Unreachable,
            _ => Reached::Answered,
        };
        let now = UnixMs::now();
        if let Some(retry_at) = self.limits.breaker_record(&host, reached, now) {
            match retry_at {
                Some(at) => {
                    tracing::warn!(%host, retry_at = %at, "callback host unreachable: paused")
                }
                None => tracing::info!(%host, "callback host answers again: resumed"),
            }
            if let Err(error) = callback_hosts::record(&self.db, &host, retry_at, now).await {
                tracing::warn!(error = %Chain(&error), "breaker state not recorded");
            }
        }
        let attempts = row.attempts.saturating_add(1);
        let (status, error) = match &outcome {
            Outcome::Success(s) => (Some(*s), String::new()),
            Outcome::Status { status, .. } => {
                (Some(*status), format!("callback answered {status}"))
            }
            Outcome::Transport(e) => (None, e.clone()),
        };
        match self.settings.retry.next_step(attempts, &outcome) {
            NextStep::Delivered => {
                self.metrics
                    .delivered_after(content.accepted_at, UnixMs::now());
                Recorded::Delivered {
                    status: status.unwrap_or(200),
                }
            }
            NextStep::EndSubscription => Recorded::Gone,
            NextStep::RetryAfter(delay) => Recorded::Retry {
                status,
                error,
                next_attempt_at: UnixMs::now().after(with_jitter(delay, jitter)),
            },
            NextStep::GiveUp => Recorded::Failed { status, error },
        }
    }

    fn headers(
        &self,
        row: &ClaimedDelivery,
        content: &ContentRow,
    ) -> Result<HeaderMap, UnsendableHeader> {
        let mut h = HeaderMap::new();
        let content_type = content
            .content_type
            .as_deref()
            .unwrap_or(FALLBACK_CONTENT_TYPE);
        h.insert(CONTENT_TYPE, value(content_type)?);
        h.insert(
            LINK,
            value(&delivery_link_header(&content.hub_link, &content.self_link))?,
        );
        let event_id = format!("{}-{}", content.event_id, row.subscription_id);
        h.insert(HeaderName::from_static(EVENT_ID_HEADER), value(&event_id)?);
        h.insert(
            HeaderName::from_static(SEQUENCE_HEADER),
            value(&row.seq.to_string())?,
        );
        if let Some(secret) = &row.secret {
            // PuSH 0.3-era subscribers (GNU social, StatusNet) verify only sha1.
            let algorithm = if row.legacy {
                self.settings.legacy_signature_algorithm
            } else {
                self.settings.signature_algorithm
            };
            let signature = algorithm.sign(secret, &content.body);
            h.insert(
                HeaderName::from_static("x-hub-signature"),
                value(&signature)?,
            );
        }
        Ok(h)
    }
}

fn value(s: &str) -> Result<HeaderValue, UnsendableHeader> {
    HeaderValue::from_str(s).map_err(|_| UnsendableHeader(s.to_owned()))
}
