//! What to do after a delivery attempt (WebSub §7): a pure function of the attempt number and
//! the outcome.
//!
//! 2xx is delivered; 410 ends the subscription; everything else — 3xx included, which is never
//! followed — is retried on the configured schedule, honouring `Retry-After` on 429 and 503
//! within bounds, until the schedule is exhausted and the delivery is given up (kept as failed,
//! replayable). A failure never ends a subscription.

use std::{str::FromStr, time::Duration};

use super::duration::{DurationError, parse_duration};

/// The delays between attempts: `1m,5m,30m,2h,6h,12h` means up to seven attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl RetrySchedule {
    pub fn delays(&self) -> &[Duration] {
        &self.0
    }
}

impl FromStr for RetrySchedule {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Self(Vec::new()));
        }
        s.split(',')
            .map(|part| parse_duration(part.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

/// What the subscriber's callback did with one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Any 2xx.
    Success(u16),
    /// Any other status.
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No HTTP answer at all (refused, reset, timed out, address not allowed).
    Transport(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    /// 410 Gone: the subscriber deleted the subscription.
    EndSubscription,
    RetryAfter(Duration),
    GiveUp,
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    schedule: RetrySchedule,
    /// The longest `Retry-After` the hub honours.
    max_retry_after: Duration,
}

impl RetryPolicy {
    pub fn new(schedule: RetrySchedule, max_retry_after: Duration) -> Self {
        Self {
            schedule,
            max_retry_after,
        }
    }

    /// The schedule as configured, e.g. `1m,5m,30m`.
    pub fn schedule_text(&self) -> String {
        // As an operator writes it (`1m,5m,2h`, `1h30m`), not re-spelled in seconds.
        self.schedule
            .delays()
            .iter()
            .map(|d| {
                humantime::format_duration(*d)
                    .to_string()
                    .replace(' ', "")
                    .replace("days", "d")
                    .replace("day", "d")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `attempts` counts the attempt that produced `outcome` (1 for the first).
    pub fn next_step(&self, attempts: u32, outcome: &Outcome) -> NextStep {
        let retry_after = match outcome {
            Outcome::Success(_) => return NextStep::Delivered,
            Outcome::Status { status: 410, .. } => return NextStep::EndSubscription,
            Outcome::Status {
                status: 429 | 503,
                retry_after,
            } => *retry_after,
            Outcome::Status { .. } | Outcome::Transport(_) => None,
        };
        let Some(&scheduled) = self
            .schedule
            .delays()
            .get(attempts.saturating_sub(1) as usize)
        else {
            return NextStep::GiveUp;
        };
        let delay = match retry_after {
            Some(asked) => asked.min(self.max_retry_after).max(scheduled),
            None => scheduled,
        };
        NextStep::RetryAfter(delay)
    }
}

/// Spreads `delay` by up to ±10% using `unit`, a uniform random number in `[0, 1)`, so that a
/// crowd of failures does not come back as one thundering herd.
pub fn with_jitter(delay: Duration, unit: f64) -> Duration {
    let factor = 0.9 + 0.2 * unit.clamp(0.0, 1.0);
    delay.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new("1m,5m,30m".parse().unwrap(), Duration::from_secs(3600))
    }

    #[test]
    fn a_schedule_reads_back_as_an_operator_writes_it() {
        let written = "1m,5m,30m,2h,6h,12h,1h30m,250ms,1d";
        let policy = RetryPolicy::new(written.parse().unwrap(), Duration::from_secs(3600));
        assert_eq!(policy.schedule_text(), written);
        let again: RetrySchedule = policy.schedule_text().parse().unwrap();
        assert_eq!(again.delays(), policy.schedule.delays());
    }

    #[test]
    fn parses_schedules() {
        let s: RetrySchedule = "250ms, 30s,5m,2h,1d,7".parse().unwrap();
        let ms: Vec<u128> = s.delays().iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [250, 30_000, 300_000, 7_200_000, 86_400_000, 7000]);
        assert!("".parse::<RetrySchedule>().unwrap().delays().is_empty());
        assert!("5x".parse::<RetrySchedule>().is_err());
        assert!("m".parse::<RetrySchedule>().is_err());
    }

    #[test]
    fn decides_by_outcome_and_attempt() {
        let p = policy();
        let status = |status| Outcome::Status {
            status,
            retry_after: None,
        };
        let min = |m: u64| NextStep::RetryAfter(Duration::from_secs(60 * m));
        let table = [
            (1, Outcome::Success(200), NextStep::Delivered),
            (3, Outcome::Success(204), NextStep::Delivered),
            (1, status(410), NextStep::EndSubscription),
            (1, status(500), min(1)),
            (1, status(302), min(1)),
            (2, status(404), min(5)),
            (3, Outcome::Transport("refused".into()), min(30)),
            (4, status(500), NextStep::GiveUp),
            (4, status(410), NextStep::EndSubscription),
        ];
        for (attempts, outcome, expected) in table {
            assert_eq!(
                p.next_step(attempts, &outcome),
                expected,
                "{attempts} {outcome:?}"
            );
        }
    }

    #[test]
    fn honours_retry_after_within_bounds() {
        let p = policy();
        let asked = |status, secs| Outcome::Status {
            status,
            retry_after: Some(Duration::from_secs(secs)),
        };
        // Longer than scheduled: honoured.
        assert_eq!(
            p.next_step(1, &asked(503, 600)),
            NextStep::RetryAfter(Duration::from_secs(600))
        );
        // Shorter than scheduled: the schedule wins.
        assert_eq!(
            p.next_step(1, &asked(429, 5)),
            NextStep::RetryAfter(Duration::from_secs(60))
        );
        // Absurdly long: capped.
        assert_eq!(
            p.next_step(1, &asked(429, 999_999)),
            NextStep::RetryAfter(Duration::from_secs(3600))
        );
        // Only 429 and 503 carry meaning.
        assert_eq!(
            p.next_step(1, &asked(500, 600)),
            NextStep::RetryAfter(Duration::from_secs(60))
        );
    }

    #[test]
    fn an_empty_schedule_gives_up_at_once() {
        let p = RetryPolicy::new("".parse().unwrap(), Duration::from_secs(1));
        assert_eq!(
            p.next_step(1, &Outcome::Transport("x".into())),
            NextStep::GiveUp
        );
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let d = Duration::from_secs(100);
        assert_eq!(with_jitter(d, 0.0), Duration::from_secs(90));
        assert_eq!(with_jitter(d, 0.5), Duration::from_secs(100));
        assert!(with_jitter(d, 0.999) <= Duration::from_secs(110));
    }
}
