//! One request's verification: ask the callback with a challenge (§5.3) — or, for a topic this
//! hub will not serve, tell it so (§5.2) — and say how the request ends. Writes nothing.

use super::Verification;
use crate::{
    domain::{
        access::HubMode,
        challenge,
        hub_request::{Mode, SubscriptionRequest},
        ids::UnixMs,
        state::RequestState,
        url::HubUrl,
    },
    outbound::OutboundError,
    store::{
        StoreError,
        requests::StoredRequest,
        subscriptions::{self, PolledFor},
    },
};

/// What one verification came to, to be written with the others of its batch.
#[derive(Debug)]
pub(super) struct Decided {
    pub state: RequestState,
    pub reason: Option<String>,
    /// For a verified request: the lease granted and when verification started.
    pub applied: Option<(u64, UnixMs)>,
}

impl Verification {
    /// Asks the callback (or, for a topic this hub will not serve, tells it so) and says how
    /// the request ends.
    pub(super) async fn decide(&self, stored: &StoredRequest) -> Decided {
        let req = &stored.request;
        let (mode, topic, callback) = (req.mode, &req.topic, &req.callback);

        let refusal = match mode {
            Mode::Subscribe => match self.topic_refusal(topic).await {
                Some(reason) => Some(reason),
                None => self.poll_cap_refusal(req).await,
            },
            Mode::Unsubscribe => None,
        };
        if let Some(reason) = refusal {
            self.deny(callback, topic, &reason).await;
            return Decided {
                state: RequestState::Denied,
                reason: Some(reason),
                applied: None,
            };
        }

        let lease = self.lease.grant(req.lease_seconds);
        let challenge = challenge::generate();
        let lease_text = lease.to_string();
        let mut params = vec![
            ("hub.mode", mode.as_str()),
            ("hub.topic", topic.as_str()),
            ("hub.challenge", challenge.as_str()),
        ];
        if mode == Mode::Subscribe {
            params.push(("hub.lease_seconds", &lease_text));
        }
        // PuSH 0.3: the subscriber's token comes back verbatim in every verification.
        if let Some(token) = req.verify_token.as_deref() {
            params.push(("hub.verify_token", token));
        }
        // The lease runs from the moment the verification request is made (§5.3).
        let verified_at = UnixMs::now();
        let refused = match self
            .outbound
            .get_verification(&callback.with_appended_query(&params))
            .await
        {
            Ok((status, body)) if (200..300).contains(&status) && body == challenge.as_bytes() => {
                return Decided {
                    state: RequestState::Verified,
                    reason: None,
                    applied: Some((lease, verified_at)),
                };
            }
            Ok((status, _)) if (200..300).contains(&status) => {
                format!("callback answered {status} without echoing the challenge")
            }
            Ok((status, _)) => format!("callback answered {status}"),
            Err(error) => {
                // The class of failure is what the subscriber (a 409 for hub.verify=sync) and
                // the stored reason say; resolver and connection details stay in the log.
                tracing::info!(callback = %callback.logged(), error = %crate::telemetry::Chain(&error), "verification request failed");
                failure_class(&error).into()
            }
        };
        Decided {
            state: RequestState::Failed,
            reason: Some(refused),
            applied: None,
        }
    }

    /// Why the hub refuses to serve `topic`, if it does: a closed hub serves only its
    /// producer's topics, and no hub fetches from addresses its policy forbids.
    async fn topic_refusal(&self, topic: &HubUrl) -> Option<String> {
        if self.access.mode == HubMode::Closed && !self.access.topic_allow.permits(topic) {
            return Some("this hub only serves its publisher's own topics".into());
        }
        let url = topic.as_url();
        if let Err(e) = self.outbound.check(url) {
            return Some(format!("topic {e}"));
        }
        let host = url.host_str()?;
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs = self.outbound.lookup(host, port).await.ok()?;
        let policy = self.outbound.policy();
        (!addrs.is_empty() && addrs.iter().all(|a| !policy.permits(a.ip(), port))).then(|| {
            format!("topic host {host} resolves only to addresses this hub may not fetch from")
        })
    }

    /// Why the hub refuses to poll `req`'s topic for it, if it does: with
    /// `HERALD_POLLING=all`, a feed that never pinged is polled for its subscribers alone, and
    /// one callback host, or one client address, may have at most so many such feeds polled
    /// (an open hub is nobody's free crawler). A renewal of a subscription to such a feed is
    /// not counted against itself. Should the count fail (the database away), the request is
    /// not refused: its completion fails too, and it is verified again.
    async fn poll_cap_refusal(&self, req: &SubscriptionRequest) -> Option<String> {
        let settings = &self.settings;
        if !settings.polls_unpinged {
            return None;
        }
        let host = req.callback.host_key();
        let client = req.client.map(|a| a.to_string());
        let caps: Vec<(PolledFor, u64)> = [
            settings
                .poll_cap_per_callback_host
                .map(|cap| (PolledFor::CallbackHost(&host), cap)),
            settings
                .poll_cap_per_subscriber
                .zip(client.as_deref())
                .map(|(cap, addr)| (PolledFor::Client(addr), cap)),
        ]
        .into_iter()
        .flatten()
        .collect();
        if caps.is_empty() {
            return None;
        }
        let checked = async {
            if !subscriptions::is_unpinged(&self.db, &req.topic).await? {
                return Ok(None);
            }
            let now = UnixMs::now();
            for &(whom, cap) in &caps {
                let n =
                    subscriptions::unpinged_feeds_of(&self.db, whom, &req.topic, now, cap).await?;
                if n >= cap {
                    return Ok(Some(match whom {
                        PolledFor::CallbackHost(host) => format!(
                            "this hub polls at most {cap} feeds that do not ping for one callback host, and {host} has that many"
                        ),
                        PolledFor::Client(_) => format!(
                            "this hub polls at most {cap} feeds that do not ping for one subscriber address, and yours has that many"
                        ),
                    }));
                }
            }
            Ok::<_, StoreError>(None)
        };
        checked.await.unwrap_or_else(|error| {
            tracing::warn!(error = %crate::telemetry::Chain(&error), "cannot count the feeds polled for this subscriber");
            None
        })
    }

    /// Informs the subscriber that its subscription was refused (§5.2). Best effort: the
    /// answer is irrelevant.
    async fn deny(&self, callback: &HubUrl, topic: &HubUrl, reason: &str) {
        let url = callback.with_appended_query(&[
            ("hub.mode", "denied"),
            ("hub.topic", topic.as_str()),
            ("hub.reason", reason),
        ]);
        if let Err(e) = self.outbound.get_verification(&url).await {
            tracing::info!(callback = %callback.logged(), error = %crate::telemetry::Chain(&e), "denial notice not delivered");
        }
    }
}

/// What went wrong with a verification request, in words that reveal nothing about the hub's
/// network.
fn failure_class(error: &OutboundError) -> &'static str {
    match error {
        OutboundError::Timeout => "the callback did not answer in time",
        OutboundError::Forbidden(_) => "the callback's address is not one this hub may contact",
        OutboundError::TooLarge(_) => "the callback's answer was too large to be a challenge",
        OutboundError::Transport(_) => "the connection to the callback failed",
        OutboundError::Status(_) | OutboundError::Unavailable { .. } => {
            "the callback did not answer with the challenge"
        }
    }
}
