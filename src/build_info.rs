//! Which Herald this is: the package version and the commit it was built from (build.rs).
//! Shown by `herald --version`, the start-up log line, `herald_build_info` and
//! `GET /admin/status`.

/// The package version (Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit built from, abbreviated; "unknown" when built without git or `HERALD_COMMIT`.
pub const COMMIT: &str = env!("HERALD_COMMIT");

/// `VERSION (COMMIT)`, as `herald --version` prints it.
pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("HERALD_COMMIT"), ")");
