//! Logging: human-readable by default, JSON with `HERALD_LOG_FORMAT=json`; filtered by
//! `RUST_LOG` (default `info`, with the database and queue libraries at `warn`).

use tracing_subscriber::{EnvFilter, fmt};

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,apalis=warn,apalis_core=warn,actix_server=warn")
    });
    let json = std::env::var("HERALD_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
