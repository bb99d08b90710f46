//! What the hub says of a document whose topic said nothing of itself.

/// Content-Type sent (to webhook and live subscribers alike) when the topic had none.
pub const FALLBACK_CONTENT_TYPE: &str = "application/octet-stream";
