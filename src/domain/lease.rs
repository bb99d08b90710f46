//! Leases (WebSub §5.1, §5.3.1): the subscriber asks, the hub decides.
//!
//! `hub.lease_seconds` must be a positive decimal integer (digits only; `0`, signs, decimals and
//! exponents are refused). Values too large for a `u64` are treated as "as long as allowed".
//! The granted lease is the request clamped to `[min, max]`, or the default when absent, and is
//! always sent on subscribe verification. There are no perpetual leases.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hub.lease_seconds must be a positive decimal integer, got {0:?}")]
pub struct InvalidLease(pub String);

/// Parses the subscriber's `hub.lease_seconds`.
pub fn parse_requested(raw: &str) -> Result<u64, InvalidLease> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidLease(raw.to_owned()));
    }
    let value = raw.parse::<u64>().unwrap_or(u64::MAX);
    if value == 0 {
        return Err(InvalidLease(raw.to_owned()));
    }
    Ok(value)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasePolicy {
    min: u64,
    default: u64,
    max: u64,
}

/// Lease settings that cannot make a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseBoundsError {
    #[error("the minimum lease must be at least 1 second")]
    ZeroMinimum,
    #[error("lease settings must satisfy min <= default <= max (got {min}, {default}, {max})")]
    OutOfOrder { min: u64, default: u64, max: u64 },
}

impl LeasePolicy {
    pub fn new(min: u64, default: u64, max: u64) -> Result<Self, LeaseBoundsError> {
        if min == 0 {
            return Err(LeaseBoundsError::ZeroMinimum);
        }
        if !(min <= default && default <= max) {
            return Err(LeaseBoundsError::OutOfOrder { min, default, max });
        }
        Ok(Self { min, default, max })
    }

    /// The lease granted for a request that asked for `requested` seconds.
    pub fn grant(&self, requested: Option<u64>) -> u64 {
        requested.map_or(self.default, |r| r.clamp(self.min, self.max))
    }

    pub fn max(&self) -> u64 {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_positive_decimal_integers() {
        assert_eq!(parse_requested("86400"), Ok(86400));
        assert_eq!(parse_requested("1"), Ok(1));
        assert_eq!(parse_requested("99999999999999999999"), Ok(u64::MAX));
        for bad in [
            "", "0", "000", "-5", "+10", " 10", "1.5", "1e3", "ten", "10 ",
        ] {
            assert!(parse_requested(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grants_clamped_or_default() {
        let p = LeasePolicy::new(60, 864_000, 2_592_000).unwrap();
        let table = [
            (None, 864_000),
            (Some(1), 60),
            (Some(3600), 3600),
            (Some(u64::MAX), 2_592_000),
        ];
        for (requested, granted) in table {
            assert_eq!(p.grant(requested), granted, "{requested:?}");
        }
    }

    #[test]
    fn rejects_inconsistent_settings() {
        assert!(LeasePolicy::new(0, 10, 10).is_err());
        assert!(LeasePolicy::new(10, 5, 20).is_err());
        assert!(LeasePolicy::new(10, 30, 20).is_err());
    }
}
