//! A word outside a closed vocabulary: a stored state, a setting's or a parameter's value.

/// `value` is none of the words `expected`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not one of {}", expected.join(", "))]
pub struct NotOneOf {
    pub value: String,
    pub expected: &'static [&'static str],
}

impl NotOneOf {
    pub fn new(value: &str, expected: &'static [&'static str]) -> Self {
        Self {
            value: value.to_owned(),
            expected,
        }
    }
}
