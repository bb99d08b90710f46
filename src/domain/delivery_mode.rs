//! How a subscriber of a feed topic wants updates: the hub default `HERALD_FEED_DELIVERY`,
//! overridden per subscription with the subscribe parameter `herald.delivery` (other hubs
//! ignore unknown parameters, so subscribers may always send it).

use std::{fmt, str::FromStr};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// The feed with only its new and changed entries (WebSub §7's "MAY remove already-delivered
    /// entries").
    Diff,
    /// One delivery per new or changed entry, each a single-entry feed (the StatusNet/OStatus hub).
    Single,
    /// The whole document, whenever it has a new or changed entry.
    Full,
}

impl DeliveryMode {
    pub const ALL: [DeliveryMode; 3] = [Self::Diff, Self::Single, Self::Full];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Diff => "diff",
            Self::Single => "single",
            Self::Full => "full",
        }
    }
}

impl fmt::Display for DeliveryMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryMode {
    type Err = super::vocabulary::NotOneOf;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "diff" => Ok(Self::Diff),
            "single" => Ok(Self::Single),
            "full" => Ok(Self::Full),
            other => Err(super::vocabulary::NotOneOf::new(
                other,
                &["diff", "single", "full"],
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for m in DeliveryMode::ALL {
            assert_eq!(m.as_str().parse(), Ok(m));
        }
        assert!("Diff".parse::<DeliveryMode>().is_err());
    }
}
