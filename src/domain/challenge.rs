//! `hub.challenge` (WebSub §5.3, §8.2): random, single-use and URL-safe.

use ring::rand::{SecureRandom, SystemRandom};

/// 32 random bytes as 64 lower-case hex characters: URL-safe without any escaping.
pub fn generate() -> String {
    random_hex(32)
}

/// `n` random bytes from the operating system, hex-encoded.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source is available");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn challenges_are_url_safe_and_unique() {
        let a = super::generate();
        let b = super::generate();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
