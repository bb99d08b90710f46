//! The operator's commands (`herald subscriptions …`, `topics …`, `deliveries …`, `publish`,
//! `check-config`). They work directly on `HERALD_DATABASE_URL`, also while the hub runs: what
//! they change is ordinary state plus queue jobs, which the running hub picks up.
//!
//! Output is a table for people and, with `--json`, JSON for scripts. Destructive commands ask
//! for confirmation on a terminal and need `--yes` otherwise; `--dry-run` shows what would
//! change and changes nothing.

pub mod actions;
pub mod deliveries;
pub mod events;
pub mod hosts;
pub mod subscriptions;
pub mod system;
pub mod topics;

use std::io::{IsTerminal, Write};

/// A subscription, topic or delivery an operator named that does not exist (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// What the operator asked for is refused: invalid settings, a selection that would choose too
/// much (exit code 4).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

use serde::Serialize;

use crate::domain::ids::UnixMs;

/// Prints `rows` under `headers`, columns padded to fit. On a terminal the table fits its
/// width (the widest cells wrap); into a pipe or file every row stays on one line for `grep`
/// and `cut`.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_header(headers.iter().copied())
        .add_rows(rows.iter().cloned());
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for line in table.lines() {
        println!("{}", line.trim_end());
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Deliveries as a table (`deliveries list`, `subscriptions show`).
pub fn print_deliveries(rows: &[crate::store::views::DeliveryView]) {
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|d| {
            vec![
                d.id.to_string(),
                d.subscription_id.to_string(),
                d.seq.to_string(),
                d.state.to_string(),
                d.attempts.to_string(),
                opt(d.last_status),
                opt(d.last_error.as_ref()),
                time(d.updated_at),
                d.callback.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "ID", "SUB", "SEQ", "STATE", "ATTEMPTS", "STATUS", "ERROR", "UPDATED", "CALLBACK",
        ],
        &table,
    );
}

/// An instant as `2026-11-22 14:05:00Z`.
pub fn time(at: UnixMs) -> String {
    chrono::DateTime::from_timestamp_millis(at.as_millis())
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// `2026-11-01`, `2026-11-01T12:00:00Z` or `now` as an instant.
pub fn parse_time(s: &str) -> Result<UnixMs, NotATime> {
    if s == "now" {
        return Ok(UnixMs::now());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(UnixMs::from_millis(t.timestamp_millis()));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| UnixMs::from_millis(t.and_utc().timestamp_millis()))
        .ok_or_else(|| NotATime(s.to_owned()))
}

/// A time an operator gave that does not read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a time (use 2026-11-01, 2026-11-01T12:00:00Z or now)")]
pub struct NotATime(String);

/// Asks before a destructive change: `--yes` answers for the operator; on a terminal the
/// operator is asked; otherwise the answer is no.
pub fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{question} Refusing without --yes (standard input is not a terminal).");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// A progress bar on standard error (hidden when it is not a terminal).
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len}") {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use crate::domain::ids::UnixMs;

    #[test]
    fn parses_times() {
        assert_eq!(
            super::parse_time("2026-11-01"),
            Ok(UnixMs::from_millis(1_793_491_200_000))
        );
        assert_eq!(
            super::parse_time("2026-11-01T00:00:01Z"),
            Ok(UnixMs::from_millis(1_793_491_201_000))
        );
        assert!(super::parse_time("yesterday").is_err());
    }
}
