//! Durations as operators and API callers write them, in one form for every setting and
//! parameter: `250ms`, `30s`, `5m`, `2h`, `10d`, `1h30m` (units may be combined; `humantime`
//! reads them), or a bare number of seconds. Nothing longer than [`MAX_DURATION`] is taken:
//! every instant the hub computes from a duration must still be a time it can store.

use std::time::Duration;

/// The longest duration any setting or parameter may be: 100 years.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A duration that does not read as one, or is too long to be meant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    #[error("{value:?} is not a duration like 250ms, 30s, 5m, 2h, 10d or 1h30m ({reason})")]
    NotADuration {
        value: String,
        #[source]
        reason: humantime::DurationError,
    },
    #[error("{0:?} is longer than the longest duration taken (100 years)")]
    TooLong(String),
}

/// Reads a duration (see the module docs).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    let too_long = || DurationError::TooLong(s.to_owned());
    let duration = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(s.parse().map_err(|_| too_long())?)
    } else {
        match humantime::parse_duration(s) {
            Ok(d) => d,
            Err(humantime::DurationError::NumberOverflow) => return Err(too_long()),
            Err(reason) => {
                return Err(DurationError::NotADuration {
                    value: s.to_owned(),
                    reason,
                });
            }
        }
    };
    if duration > MAX_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

/// Reads a duration given in whole seconds or in any form [`parse_duration`] takes (the lease
/// settings: `864000` and `10d` are the same lease), as seconds.
pub fn parse_seconds(text: &str) -> Result<u64, DurationError> {
    parse_duration(text).map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_every_form_and_too_long_ones_are_refused() {
        let ok = [
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("30", Duration::from_secs(30)),
            (" 5m ", Duration::from_secs(300)),
            ("2h", Duration::from_secs(7200)),
            ("10d", Duration::from_secs(864_000)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h 30m", Duration::from_secs(5400)),
            ("0s", Duration::ZERO),
            ("36500d", Duration::from_secs(36_500 * 86_400)),
        ];
        for (text, expected) in ok {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
        for too_long in [
            "213503982335d",
            "36501d",
            "18446744073709551616",
            "99999999999999999999999s",
        ] {
            assert_eq!(
                parse_duration(too_long),
                Err(DurationError::TooLong(too_long.trim().to_owned())),
                "{too_long}"
            );
        }
        for bad in ["", "soon", "5 parsecs", "-5s"] {
            let error = parse_duration(bad).expect_err(bad);
            assert!(
                error.to_string().contains("is not a duration"),
                "{bad}: {error}"
            );
        }
        assert_eq!(parse_seconds("10d"), Ok(864_000));
        assert_eq!(parse_seconds("864000"), Ok(864_000));
    }
}
