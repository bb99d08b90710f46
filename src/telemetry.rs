//! Logging: human-readable by default, JSON with `HERALD_LOG_FORMAT=json`; filtered by
//! `RUST_LOG` (default `info`, with the database and queue libraries at `warn`). Colours only
//! when standard error is a terminal (and `NO_COLOR` is unset).
//!
//! The id of the HTTP request being served (`http::request_id`) is kept for the task that
//! serves it, so the jobs that request causes (a subscription's verification, a ping's
//! distribution) carry it and log it on their spans as `request_id`.

use std::future::Future;

use tracing_subscriber::{EnvFilter, fmt};

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,apalis=warn,apalis_core=warn,actix_server=warn")
    });
    let json = std::env::var("HERALD_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    // A log that cannot be written (a full disk, a closed pipe) is given up line by line: the
    // library's own report of it would go to the same standard error with `eprintln!`, which
    // panics when it fails, dropping the request or stopping the worker that logged.
    // Colour only for a person at a terminal: a file, a pipe or journald gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .log_internal_errors(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `f` as the serving of the HTTP request `id`.
pub async fn with_request_id<F: Future>(id: String, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// The id of the HTTP request being served by this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// An error with its causes, on one line (`what failed: why: why`): how Herald logs and prints
/// errors, once, where they are handled. A cause whose words its parent already said (drivers
/// often put their source's message in their own) is not repeated.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut said = self.0.to_string();
        f.write_str(&said)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !text.is_empty() && !said.contains(&text) {
                write!(f, ": {text}")?;
                said = text;
            }
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot store the request")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("error returned from database: {0}")]
    struct Middle(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("disk I/O error")]
    struct Inner;

    #[test]
    fn a_chain_says_each_cause_once() {
        let error = Outer(Middle(Inner));
        assert_eq!(
            Chain(&error).to_string(),
            "cannot store the request: error returned from database: disk I/O error"
        );
        assert_eq!(Chain(&Inner).to_string(), "disk I/O error");
    }
}
