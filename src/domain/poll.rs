//! Polling schedules: when a topic is fetched next though nobody pinged, and why
//! (docs/polling.md). Pure: the poller (src/distribution/poll.rs) feeds in what a fetch found
//! and what the topic's history says, and stores what comes out.
//!
//! - **Entry rate.** The time between fetches that found something new is smoothed
//!   ([`next_gap`]); the topic is polled at half of it, or of the time it has now been quiet if
//!   that is longer — so a feed that posts hourly is polled every 30 minutes and one that went
//!   silent backs off by itself. Never below the minimum, never above the maximum.
//! - **Server hints** (`Cache-Control: max-age`, `Expires`, RSS `<ttl>`) may lengthen the
//!   interval, within the maximum.
//! - **Failures** back off exponentially from the minimum; a `Retry-After` is obeyed (within
//!   the maximum).
//! - **Pinged topics** (the publisher pinged or pushed before) are polled as a safety net, at
//!   the pinged interval at least; each missed ping halves that floor (down to the minimum).
//! - **Parked**: a topic whose fetches have all failed for the give-up time is no longer
//!   polled, until a new subscriber or a ping asks for it again.
//! - **Jitter**: ±10 %, so topics scheduled together drift apart.

use std::{fmt, str::FromStr, time::Duration};

use super::ids::UnixMs;

/// Which topics are polled (`HERALD_POLLING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollingMode {
    /// None.
    Off,
    /// Only topics whose publisher pinged or pushed before, at the pinged interval.
    #[default]
    SafetyNet,
    /// Every topic with a subscriber; hubless feeds at their adaptive interval.
    All,
}

impl PollingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::SafetyNet => "safety-net",
            Self::All => "all",
        }
    }
}

impl fmt::Display for PollingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a polling mode: off, safety-net or all")]
pub struct NotAPollingMode(String);

impl FromStr for PollingMode {
    type Err = NotAPollingMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "off" => Ok(Self::Off),
            "safety-net" => Ok(Self::SafetyNet),
            "all" => Ok(Self::All),
            other => Err(NotAPollingMode(other.to_owned())),
        }
    }
}

/// The intervals a schedule stays within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollBounds {
    pub min: Duration,
    pub max: Duration,
    /// The least interval of a topic whose publisher pings.
    pub pinged: Duration,
    /// How long a topic may fail before it is parked.
    pub give_up: Duration,
}

impl PollBounds {
    /// How long a topic that is not to be fetched now (no subscriber; never pinged in
    /// safety-net mode) waits before it is looked at again: an hour, or less when the maximum
    /// is shorter.
    pub fn idle(&self) -> Duration {
        self.max.min(Duration::from_secs(3600))
    }
}

/// Why a topic is polled when it is: shown on the topic page, the admin API and the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollReason {
    /// New entries appear about this often (half the smoothed gap).
    EntryRate,
    /// Nothing new seen yet, or for longer than the usual gap: half the quiet time.
    Quiet,
    /// The server said how long its answer stays fresh.
    ServerHint,
    /// The publisher pings: a safety-net poll.
    Pinged,
    /// Fetches fail: exponential backoff.
    Backoff,
    /// The server asked for a pause (`Retry-After`).
    RetryAfter,
    /// No active subscriber: looked at again later, not fetched.
    NoSubscriber,
    /// Safety-net mode, and the publisher never pinged: looked at again later, not fetched.
    NeverPinged,
    /// Every fetch failed for the give-up time: not polled until a subscriber or a ping asks.
    Parked,
    /// The same feed as another topic (feed identity): that topic's polls are its polls.
    Alias,
}

impl PollReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EntryRate => "entry rate",
            Self::Quiet => "quiet",
            Self::ServerHint => "server hint",
            Self::Pinged => "publisher pings",
            Self::Backoff => "error backoff",
            Self::RetryAfter => "retry-after",
            Self::NoSubscriber => "no subscriber",
            Self::NeverPinged => "never pinged",
            Self::Parked => "failing too long",
            Self::Alias => "alias",
        }
    }

    /// Reads what [`PollReason::as_str`] wrote.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::EntryRate,
            Self::Quiet,
            Self::ServerHint,
            Self::Pinged,
            Self::Backoff,
            Self::RetryAfter,
            Self::NoSubscriber,
            Self::NeverPinged,
            Self::Parked,
            Self::Alias,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for PollReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a topic's past fetches say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollHistory {
    /// When the topic row was made: the start of its quiet time before anything new was seen.
    pub since: UnixMs,
    /// The last fetch that found something new.
    pub last_change_at: Option<UnixMs>,
    /// The smoothed time between fetches that found something new.
    pub change_gap: Option<Duration>,
    /// Whether the publisher pinged or pushed before.
    pub pinged: bool,
    /// Polls that found new entries although the publisher pings.
    pub missed_pings: u32,
    /// Since when every fetch failed.
    pub failing_since: Option<UnixMs>,
}

/// What a fetch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Something new was distributed.
    Changed,
    /// Nothing new (304, the same body, or a feed without new entries).
    Unchanged,
    /// It failed, for the `failures`-th time in a row (1 for the first).
    Failed {
        failures: u32,
        retry_after: Option<Duration>,
    },
}

/// When to poll next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextPoll {
    pub interval: Duration,
    pub reason: PollReason,
}

/// Where a parked topic's next poll is put: as good as never.
pub const PARKED_UNTIL: UnixMs = UnixMs::from_millis(i64::MAX / 2);

impl NextPoll {
    /// The instant of the next poll after `now`, spread by [`spread`] (never, when parked).
    pub fn at(&self, now: UnixMs) -> UnixMs {
        match self.reason {
            PollReason::Parked => PARKED_UNTIL,
            _ => now.after(spread(self.interval)),
        }
    }
}

/// The smoothed gap between changes after a change at `now` (weight 0.3 to the newest gap);
/// the gap known so far when no change was seen before.
pub fn next_gap(history: &PollHistory, now: UnixMs) -> Option<Duration> {
    let Some(last) = history.last_change_at else {
        return history.change_gap;
    };
    let observed = last.until(now);
    Some(match history.change_gap {
        Some(gap) => gap.mul_f64(0.7) + observed.mul_f64(0.3),
        None => observed,
    })
}

/// The interval after a fetch at `now` (before jitter). `history` is as it was before that
/// fetch; `hint` is how long the server said its answer stays fresh.
pub fn next_poll(
    bounds: &PollBounds,
    history: &PollHistory,
    outcome: FetchOutcome,
    hint: Option<Duration>,
    now: UnixMs,
) -> NextPoll {
    let clamp = |d: Duration| d.clamp(bounds.min, bounds.max.max(bounds.min));
    if let FetchOutcome::Failed {
        failures,
        retry_after,
    } = outcome
    {
        let doublings = failures.saturating_sub(1).min(30);
        let backoff = clamp(bounds.min.saturating_mul(1 << doublings));
        if history
            .failing_since
            .is_some_and(|since| since.until(now) >= bounds.give_up)
        {
            return NextPoll {
                interval: backoff,
                reason: PollReason::Parked,
            };
        }
        return match retry_after {
            Some(wait) if wait > backoff => NextPoll {
                interval: wait.min(bounds.max.max(bounds.min)),
                reason: PollReason::RetryAfter,
            },
            _ => NextPoll {
                interval: backoff,
                reason: PollReason::Backoff,
            },
        };
    }
    let (last_change, gap) = match outcome {
        FetchOutcome::Changed => (Some(now), next_gap(history, now)),
        _ => (history.last_change_at, history.change_gap),
    };
    let quiet = last_change.unwrap_or(history.since).until(now);
    let mut next = match gap {
        Some(gap) if gap >= quiet => NextPoll {
            interval: clamp(gap / 2),
            reason: PollReason::EntryRate,
        },
        _ => NextPoll {
            interval: clamp(quiet / 2),
            reason: PollReason::Quiet,
        },
    };
    if let Some(hint) = hint.map(clamp)
        && hint > next.interval
    {
        next = NextPoll {
            interval: hint,
            reason: PollReason::ServerHint,
        };
    }
    if history.pinged {
        let floor = clamp(bounds.pinged / (1u32 << history.missed_pings.min(16)));
        if floor > next.interval {
            next = NextPoll {
                interval: floor,
                reason: PollReason::Pinged,
            };
        }
    }
    next
}

/// `interval` spread by `unit` (in -1..=1) times 10 %.
pub fn jittered(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(1.0 + 0.1 * unit.clamp(-1.0, 1.0))
}

/// Whether a poll goes without validators: every `every`-th one after polls answered 304 in a
/// row (`not_modified_streak` of them), so that a server whose ETag never changes is caught
/// within `every` polls, and one that answers 200 is never asked unconditionally.
pub fn unconditional(every: u32, not_modified_streak: u32) -> bool {
    not_modified_streak.saturating_add(1) >= every
}

/// `interval` spread by a random ±10 %.
pub fn spread(interval: Duration) -> Duration {
    let mut bytes = [0u8; 2];
    bytes.copy_from_slice(
        &hex::decode(super::challenge::random_hex(2)).unwrap_or_else(|_| vec![0x80, 0]),
    );
    let unit = f64::from(u16::from_be_bytes(bytes)) / f64::from(u16::MAX) * 2.0 - 1.0;
    jittered(interval, unit)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_nth_poll_after_a_run_of_304s_is_unconditional() {
        use super::unconditional;
        assert!(!unconditional(3, 0));
        assert!(!unconditional(3, 1));
        assert!(unconditional(3, 2));
        assert!(unconditional(3, 7));
        assert!(unconditional(1, 0));
        assert!(unconditional(0, 0));
        assert!(!unconditional(20, 18));
        assert!(unconditional(20, 19));
        assert!(unconditional(20, u32::MAX));
    }

    use super::*;

    const MIN: Duration = Duration::from_secs(300);
    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(86_400);

    fn bounds() -> PollBounds {
        PollBounds {
            min: MIN,
            max: DAY,
            pinged: 6 * HOUR,
            give_up: 7 * DAY,
        }
    }

    fn at(d: Duration) -> UnixMs {
        UnixMs::from_millis(1_000_000_000_000).after(d)
    }

    fn history() -> PollHistory {
        PollHistory {
            since: at(Duration::ZERO),
            last_change_at: None,
            change_gap: None,
            pinged: false,
            missed_pings: 0,
            failing_since: None,
        }
    }

    #[test]
    fn a_topic_failing_for_the_give_up_time_is_parked() {
        let failed = |since| {
            let h = PollHistory {
                failing_since: Some(at(since)),
                ..history()
            };
            let outcome = FetchOutcome::Failed {
                failures: 9,
                retry_after: None,
            };
            next_poll(&bounds(), &h, outcome, None, at(8 * DAY))
        };
        assert_eq!(failed(2 * DAY).reason, PollReason::Backoff);
        let parked = failed(Duration::ZERO);
        assert_eq!(parked.reason, PollReason::Parked);
        assert_eq!(parked.at(at(8 * DAY)), PARKED_UNTIL);
    }

    #[test]
    fn a_feed_that_posts_hourly_is_polled_every_half_hour() {
        let h = PollHistory {
            last_change_at: Some(at(9 * HOUR)),
            change_gap: Some(HOUR),
            ..history()
        };
        let next = next_poll(&bounds(), &h, FetchOutcome::Changed, None, at(10 * HOUR));
        assert_eq!(next.interval, HOUR / 2);
        assert_eq!(next.reason, PollReason::EntryRate);
    }

    #[test]
    fn a_quiet_feed_backs_off_to_the_maximum() {
        let h = history();
        let young = next_poll(&bounds(), &h, FetchOutcome::Unchanged, None, at(MIN));
        assert_eq!((young.interval, young.reason), (MIN, PollReason::Quiet));
        let older = next_poll(&bounds(), &h, FetchOutcome::Unchanged, None, at(4 * HOUR));
        assert_eq!(older.interval, 2 * HOUR);
        let old = next_poll(&bounds(), &h, FetchOutcome::Unchanged, None, at(30 * DAY));
        assert_eq!(old.interval, DAY);
    }

    #[test]
    fn failures_double_from_the_minimum_and_retry_after_is_obeyed() {
        let h = history();
        let fail = |failures, retry_after| {
            next_poll(
                &bounds(),
                &h,
                FetchOutcome::Failed {
                    failures,
                    retry_after,
                },
                None,
                at(HOUR),
            )
        };
        assert_eq!(fail(1, None).interval, MIN);
        assert_eq!(fail(3, None).interval, 4 * MIN);
        assert_eq!(fail(40, None).interval, DAY);
        assert_eq!(fail(1, None).reason, PollReason::Backoff);
        let asked = fail(1, Some(2 * HOUR));
        assert_eq!(
            (asked.interval, asked.reason),
            (2 * HOUR, PollReason::RetryAfter)
        );
        assert_eq!(fail(1, Some(30 * DAY)).interval, DAY);
        assert_eq!(fail(3, Some(Duration::from_secs(1))).interval, 4 * MIN);
    }

    #[test]
    fn hints_lengthen_within_the_maximum_and_pinged_topics_are_a_safety_net() {
        let h = PollHistory {
            last_change_at: Some(at(HOUR)),
            change_gap: Some(HOUR),
            ..history()
        };
        let hinted = next_poll(
            &bounds(),
            &h,
            FetchOutcome::Unchanged,
            Some(3 * HOUR),
            at(HOUR),
        );
        assert_eq!(
            (hinted.interval, hinted.reason),
            (3 * HOUR, PollReason::ServerHint)
        );
        let capped = next_poll(
            &bounds(),
            &h,
            FetchOutcome::Unchanged,
            Some(9 * DAY),
            at(HOUR),
        );
        assert_eq!(capped.interval, DAY);
        let pinged = PollHistory { pinged: true, ..h };
        let net = next_poll(&bounds(), &pinged, FetchOutcome::Unchanged, None, at(HOUR));
        assert_eq!((net.interval, net.reason), (6 * HOUR, PollReason::Pinged));
        let missed = PollHistory {
            missed_pings: 2,
            ..pinged
        };
        let shorter = next_poll(&bounds(), &missed, FetchOutcome::Unchanged, None, at(HOUR));
        assert_eq!(shorter.interval, 6 * HOUR / 4);
    }

    #[test]
    fn the_gap_is_smoothed() {
        let h = PollHistory {
            last_change_at: Some(at(HOUR)),
            change_gap: Some(HOUR),
            ..history()
        };
        assert_eq!(
            next_gap(&h, at(3 * HOUR)),
            Some(HOUR.mul_f64(0.7) + (2 * HOUR).mul_f64(0.3))
        );
        assert_eq!(next_gap(&history(), at(HOUR)), None);
        let estimated = PollHistory {
            change_gap: Some(HOUR),
            ..history()
        };
        assert_eq!(next_gap(&estimated, at(HOUR)), Some(HOUR));
    }

    #[test]
    fn modes_and_reasons_read_back() {
        for m in [PollingMode::Off, PollingMode::SafetyNet, PollingMode::All] {
            assert_eq!(m.as_str().parse(), Ok(m));
        }
        assert!("sometimes".parse::<PollingMode>().is_err());
        for r in ["entry rate", "quiet", "retry-after", "never pinged"] {
            assert_eq!(PollReason::parse(r).map(PollReason::as_str), Some(r));
        }
        assert_eq!(jittered(HOUR, 1.0), HOUR.mul_f64(1.1));
        assert_eq!(jittered(HOUR, -5.0), HOUR.mul_f64(0.9));
    }
}
