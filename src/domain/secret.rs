//! `hub.secret` (WebSub §5.1): the HMAC key a subscriber asks deliveries to be signed with.
//!
//! It must be shorter than 200 **bytes** of UTF-8. An empty value means "no secret". The value
//! never appears in `Debug` output or logs.

use std::fmt;

pub const MAX_SECRET_BYTES: usize = 199;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hub.secret must be shorter than 200 bytes (it has {0})")]
pub struct SecretTooLong(pub usize);

impl Secret {
    /// `Ok(None)` for an absent or empty secret.
    pub fn parse(raw: Option<&str>) -> Result<Option<Self>, SecretTooLong> {
        match raw {
            None | Some("") => Ok(None),
            Some(s) if s.len() > MAX_SECRET_BYTES => Err(SecretTooLong(s.len())),
            Some(s) => Ok(Some(Self(s.to_owned()))),
        }
    }

    /// For values read back from our own store, which were validated when accepted.
    pub fn from_stored(raw: String) -> Option<Self> {
        (!raw.is_empty()).then_some(Self(raw))
    }

    /// Whether `presented` is this secret, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(&self.0, presented)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Whether two secrets are equal, in constant time: both are hashed to a fixed length first,
/// so neither their content nor their length leaks through timing.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(a.as_bytes());
    let b = Sha256::digest(b.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_not_characters() {
        assert!(Secret::parse(Some(&"a".repeat(199))).unwrap().is_some());
        assert_eq!(
            Secret::parse(Some(&"a".repeat(200))),
            Err(SecretTooLong(200))
        );
        // 100 two-byte characters are 200 bytes.
        assert_eq!(
            Secret::parse(Some(&"é".repeat(100))),
            Err(SecretTooLong(200))
        );
        assert!(Secret::parse(Some(&"é".repeat(99))).unwrap().is_some());
    }

    #[test]
    fn empty_means_none_and_debug_hides_the_value() {
        assert_eq!(Secret::parse(Some("")), Ok(None));
        assert_eq!(Secret::parse(None), Ok(None));
        let s = Secret::parse(Some("hunter2")).unwrap().unwrap();
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
