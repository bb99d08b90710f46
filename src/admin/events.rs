//! `herald events [--after ID] [--follow] [--json]`: the producer's events (docs/events.md) for
//! operators — a table, or one JSON object per line; `--follow` keeps printing them as they are
//! recorded, until interrupted.

use std::time::Duration;

use clap::Args;

use super::{NotFound, opt, print_table, time};
use crate::store::{Db, events};

/// How often `--follow` looks for new events.
const FOLLOW_LOOK: Duration = Duration::from_millis(250);

/// Events read per statement.
const PAGE: i64 = 1000;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only the events after this id (default: the last 20, or with --follow what comes next).
    #[arg(long)]
    after: Option<i64>,
    /// Only events of these types, comma-separated (subscription.activated, topic.missed_ping, …).
    #[arg(long = "type", value_name = "TYPES")]
    kind: Option<String>,
    /// Keep printing events as they are recorded, until interrupted.
    #[arg(long)]
    follow: bool,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(db: &Db, args: EventsArgs) -> anyhow::Result<()> {
    let types = match args.kind.as_deref() {
        None | Some("") => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|t| t.trim().parse())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| super::Refused(format!("--type {e}")))?,
    };
    let filter = events::Filter { types, topic: None };
    let last = events::last_id(db).await?;
    if let Some(after) = args.after
        && after > last
    {
        return Err(
            super::Refused(format!("there is no event {after}: the latest is {last}")).into(),
        );
    }
    let mut after = match (args.after, args.follow) {
        (Some(after), _) => after,
        (None, true) => last,
        (None, false) => (last - 20).max(0),
    };
    loop {
        let page = match events::page(db, Some(after), PAGE, &filter).await? {
            events::Page::Events(page) => page,
            // The last 20 reach back past what retention kept: the oldest kept, then.
            events::Page::Gone { resume_after } if args.after.is_none() => {
                after = resume_after;
                continue;
            }
            events::Page::Gone { resume_after } => {
                if !args.follow {
                    return Err(NotFound(format!(
                        "events after {after} were deleted by retention; the oldest kept come after {resume_after}"
                    ))
                    .into());
                }
                eprintln!(
                    "events after {after} were deleted by retention; going on after {resume_after}"
                );
                after = resume_after;
                continue;
            }
        };
        if let Some(e) = page.last() {
            after = e.id;
        }
        print(&page, args.json, !args.follow)?;
        if page.len() as i64 == PAGE {
            continue;
        }
        if !args.follow {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_LOOK).await;
    }
}

fn print(page: &[events::Event], json: bool, empty_note: bool) -> anyhow::Result<()> {
    if json {
        for e in page {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(());
    }
    if page.is_empty() && !empty_note {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                time(e.at),
                e.kind.clone(),
                opt(e.topic.as_ref()),
                opt(e.callback_host.as_ref()),
                match &e.detail {
                    serde_json::Value::Object(m) if m.is_empty() => String::new(),
                    d => d.to_string(),
                },
            ]
        })
        .collect();
    print_table(
        &["ID", "AT", "TYPE", "TOPIC", "CALLBACK HOST", "DETAIL"],
        &rows,
    );
    Ok(())
}
