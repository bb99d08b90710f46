//! `X-Hub-Signature` (WebSub §7.1): `<method>=<lower-case hex HMAC of the exact body>`.

use std::{fmt, str::FromStr};

use hmac::{Hmac, KeyInit, Mac};

use super::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl SignatureAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// The full header value for `body` signed with `secret`.
    pub fn sign(self, secret: &Secret, body: &[u8]) -> String {
        let key = secret.expose().as_bytes();
        let digest = match self {
            Self::Sha1 => mac::<Hmac<sha1::Sha1>>(key, body),
            Self::Sha256 => mac::<Hmac<sha2::Sha256>>(key, body),
            Self::Sha384 => mac::<Hmac<sha2::Sha384>>(key, body),
            Self::Sha512 => mac::<Hmac<sha2::Sha512>>(key, body),
        };
        format!("{}={}", self.name(), hex::encode(digest))
    }
}

fn mac<M: Mac + KeyInit>(key: &[u8], body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SignatureAlgorithm {
    type Err = super::vocabulary::NotOneOf;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sha1" => Ok(Self::Sha1),
            "sha256" => Ok(Self::Sha256),
            "sha384" => Ok(Self::Sha384),
            "sha512" => Ok(Self::Sha512),
            other => Err(super::vocabulary::NotOneOf::new(
                other,
                &["sha1", "sha256", "sha384", "sha512"],
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231 test case 2 (key "Jefe") for the SHA-2 family; RFC 2202 test case 2 for SHA-1.
    const BODY: &[u8] = b"what do ya want for nothing?";

    #[test]
    fn known_answers() {
        let key = Secret::parse(Some("Jefe")).unwrap().unwrap();
        let cases = [
            (
                SignatureAlgorithm::Sha1,
                "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (
                SignatureAlgorithm::Sha256,
                "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                SignatureAlgorithm::Sha384,
                "sha384=af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
            ),
            (
                SignatureAlgorithm::Sha512,
                "sha512=164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
        ];
        for (alg, expected) in cases {
            assert_eq!(alg.sign(&key, BODY), expected);
        }
    }

    #[test]
    fn parses_names_case_insensitively() {
        assert_eq!("SHA256".parse(), Ok(SignatureAlgorithm::Sha256));
        assert!("md5".parse::<SignatureAlgorithm>().is_err());
    }
}
