//! The circuit breaker of one callback host: after [`Breaker::THRESHOLD`] consecutive
//! connection failures or timeouts the host is *open* (paused): its deliveries wait without
//! using up attempts. When the cool-down ends one delivery goes as a probe (*half-open*); an
//! answer — any HTTP status: the host is reachable — closes the breaker, a failure opens it
//! again with a cool-down twice as long (up to [`Breaker::MAX_COOLDOWN`]).
//!
//! Pure: the caller passes the time in, and the outbound code says what happened.

use std::time::Duration;

use super::ids::UnixMs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow; `failures` in a row so far.
    Closed { failures: u32 },
    /// Paused until `until`; the next cool-down, should the probe fail, is `cooldown` × 2.
    Open { until: UnixMs, cooldown: Duration },
    /// One probe is in flight.
    HalfOpen { cooldown: Duration },
}

/// What a request to the host may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Go,
    /// Go, as the probe of a half-open breaker.
    Probe,
    /// Wait until then.
    Wait(UnixMs),
}

/// What a request to the host came to, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// The host answered (whatever the status).
    Answered,
    /// The connection failed or timed out.
    Unreachable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    state: BreakerState,
    cooldown: Duration,
}

impl Breaker {
    pub const THRESHOLD: u32 = 5;
    pub const MAX_COOLDOWN: Duration = Duration::from_secs(600);
    /// How long a request waits while the probe is in flight.
    pub const PROBE_WAIT: Duration = Duration::from_secs(1);

    pub fn new(cooldown: Duration) -> Self {
        Self {
            state: BreakerState::Closed { failures: 0 },
            cooldown,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn admit(&mut self, now: UnixMs) -> Admission {
        match self.state {
            BreakerState::Closed { .. } => Admission::Go,
            BreakerState::Open { until, cooldown } if now >= until => {
                self.state = BreakerState::HalfOpen { cooldown };
                Admission::Probe
            }
            BreakerState::Open { until, .. } => Admission::Wait(until),
            BreakerState::HalfOpen { .. } => Admission::Wait(now.after(Self::PROBE_WAIT)),
        }
    }

    /// Records an outcome; returns true when the state changed between closed and open (what
    /// operators are shown).
    pub fn record(&mut self, reached: Reached, now: UnixMs) -> bool {
        let before = self.is_closed();
        self.state = match (self.state, reached) {
            (_, Reached::Answered) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, Reached::Unreachable) => {
                let failures = failures + 1;
                if failures >= Self::THRESHOLD {
                    BreakerState::Open {
                        until: now.after(self.cooldown),
                        cooldown: self.cooldown,
                    }
                } else {
                    BreakerState::Closed { failures }
                }
            }
            // The probe failed: pause longer.
            (BreakerState::HalfOpen { cooldown }, Reached::Unreachable) => {
                let cooldown = (cooldown * 2).min(Self::MAX_COOLDOWN.max(self.cooldown));
                BreakerState::Open {
                    until: now.after(cooldown),
                    cooldown,
                }
            }
            // Requests that were in flight when it opened: nothing new is learnt.
            (open @ BreakerState::Open { .. }, Reached::Unreachable) => open,
        };
        before != self.is_closed()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, BreakerState::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_probes_after_the_cooldown_and_closes_on_an_answer() {
        let t = |ms| UnixMs::from_millis(ms);
        let mut b = Breaker::new(Duration::from_secs(10));
        for i in 0..Breaker::THRESHOLD - 1 {
            assert!(!b.record(Reached::Unreachable, t(i as i64)));
            assert_eq!(b.admit(t(0)), Admission::Go);
        }
        assert!(b.record(Reached::Unreachable, t(100)), "opened");
        assert!(
            !b.record(Reached::Unreachable, t(150)),
            "a late failure changes nothing"
        );
        assert_eq!(b.admit(t(5_000)), Admission::Wait(t(10_100)));
        assert_eq!(b.admit(t(10_100)), Admission::Probe);
        assert_eq!(
            b.admit(t(10_200)),
            Admission::Wait(t(11_200)),
            "one probe at a time"
        );
        assert!(!b.record(Reached::Unreachable, t(11_000)), "still open");
        assert_eq!(
            b.admit(t(20_000)),
            Admission::Wait(t(31_000)),
            "twice the cool-down"
        );
        assert_eq!(b.admit(t(31_000)), Admission::Probe);
        assert!(b.record(Reached::Answered, t(31_500)), "closed");
        assert_eq!(b.admit(t(31_600)), Admission::Go);
        // An answer in between resets the count.
        for _ in 0..Breaker::THRESHOLD - 1 {
            b.record(Reached::Unreachable, t(40_000));
        }
        b.record(Reached::Answered, t(40_001));
        b.record(Reached::Unreachable, t(40_002));
        assert!(b.is_closed());
    }

    #[test]
    fn the_cooldown_is_capped() {
        let mut b = Breaker::new(Duration::from_secs(400));
        let mut now = UnixMs::from_millis(0);
        for _ in 0..Breaker::THRESHOLD {
            b.record(Reached::Unreachable, now);
        }
        for _ in 0..5 {
            now = now.after(Breaker::MAX_COOLDOWN);
            assert_eq!(b.admit(now), Admission::Probe);
            b.record(Reached::Unreachable, now);
        }
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: now.after(Breaker::MAX_COOLDOWN),
                cooldown: Breaker::MAX_COOLDOWN
            }
        );
    }
}
