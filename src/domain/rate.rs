//! Rate limit settings: `COUNT/UNIT[,BURST]` — `20/s,100` is 20 requests a second sustained
//! with bursts of up to 100; `UNIT` is `s`, `m` or `h`; `off` turns the limit off.

use std::{fmt, str::FromStr, time::Duration};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained: this many requests…
    pub count: u32,
    /// …per this long.
    pub per: Duration,
    /// Requests allowed at once before the sustained rate applies.
    pub burst: u32,
}

impl RateLimit {
    /// The interval at which one more request is allowed.
    pub fn replenish_every(&self) -> Duration {
        self.per / self.count
    }
}

/// `HERALD_RATE_LIMIT`-style setting: a limit, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSetting(pub Option<RateLimit>);

/// A rate-limit setting that does not read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("{0:?} is not a rate limit: use COUNT/UNIT[,BURST] (20/s,100) or off")]
    Unreadable(String),
    #[error("{0:?}: a rate limit allows at least 1 request (or say off)")]
    Zero(String),
}

impl FromStr for RateSetting {
    type Err = RateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        let bad = || RateError::Unreadable(s.to_owned());
        let (rate, burst) = match s.split_once(',') {
            Some((rate, burst)) => (rate.trim(), Some(burst.trim())),
            None => (s, None),
        };
        let (count, unit) = rate.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        let burst = match burst {
            Some(b) => b.parse().map_err(|_| bad())?,
            None => count,
        };
        if count == 0 || burst == 0 {
            return Err(RateError::Zero(s.to_owned()));
        }
        Ok(Self(Some(RateLimit { count, per, burst })))
    }
}

impl fmt::Display for RateSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(r) => {
                let unit = match r.per.as_secs() {
                    1 => "s",
                    60 => "m",
                    _ => "h",
                };
                write!(f, "{}/{unit},{}", r.count, r.burst)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_settings_parse_or_say_why_not() {
        let r: RateSetting = "20/s,100".parse().unwrap();
        assert_eq!(
            r.0,
            Some(RateLimit {
                count: 20,
                per: Duration::from_secs(1),
                burst: 100
            })
        );
        assert_eq!(r.to_string(), "20/s,100");
        assert_eq!(r.0.unwrap().replenish_every(), Duration::from_millis(50));
        assert_eq!("5/m".parse::<RateSetting>().unwrap().0.unwrap().burst, 5);
        assert_eq!("off".parse::<RateSetting>().unwrap().0, None);
        for bad in ["", "20", "20/d", "0/s", "x/s", "20/s,0", "20/s,x"] {
            assert!(bad.parse::<RateSetting>().is_err(), "{bad}");
        }
    }
}
