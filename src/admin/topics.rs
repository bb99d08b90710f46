//! `herald topics list | show | hosts`.

use clap::Subcommand;

use super::{opt, print_json, print_table, time};
use crate::{
    domain::ids::UnixMs,
    store::{Db, views},
};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List topics with their subscriber counts.
    List {
        /// At most this many rows.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// What polling costs each topic host: topics, polled, polls an hour, failing, parked,
    /// next poll; most polls an hour first.
    Hosts {
        /// At most this many hosts.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One topic, by id or URL.
    Show {
        topic: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(db: &Db, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Hosts { limit, json } => {
            let rows = views::topic_hosts(db, limit).await?;
            if json {
                return print_json(&rows);
            }
            if rows.is_empty() {
                println!("no topic yet");
                return Ok(());
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|h| {
                    vec![
                        h.host.clone(),
                        h.topics.to_string(),
                        h.polled.to_string(),
                        format!("{:.1}", h.polls_per_hour),
                        h.failing.to_string(),
                        h.parked.to_string(),
                        opt(h.next_poll_at.map(time)),
                    ]
                })
                .collect();
            print_table(
                &[
                    "HOST",
                    "TOPICS",
                    "POLLED",
                    "POLLS/HOUR",
                    "FAILING",
                    "PARKED",
                    "NEXT POLL",
                ],
                &table,
            );
            Ok(())
        }
        Command::List { limit, json } => {
            let rows = views::topics(db, None, UnixMs::now(), None, limit).await?;
            if json {
                return print_json(&rows);
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.active_subscriptions.to_string(),
                        opt(t.feed_kind.as_ref()),
                        t.last_fetched_at.map_or_else(|| "-".into(), time),
                        t.next_poll_at.map_or_else(|| "-".into(), time),
                        opt(t.poll_reason.as_ref()),
                        t.url.clone(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "ACTIVE SUBS",
                    "FEED",
                    "LAST FETCH",
                    "NEXT POLL",
                    "WHY",
                    "URL",
                ],
                &table,
            );
            Ok(())
        }
        Command::Show { topic, json } => {
            let Some(t) = views::topics(db, Some(&topic), UnixMs::now(), None, 1)
                .await?
                .pop()
            else {
                return Err(super::NotFound(format!("no topic {topic}")).into());
            };
            if json {
                return print_json(&t);
            }
            let fields = [
                ("id", t.id.to_string()),
                ("url", t.url.clone()),
                ("content type", opt(t.content_type.as_ref())),
                ("feed", opt(t.feed_kind.as_ref())),
                ("feed error", opt(t.feed_error.as_ref())),
                ("active subs", t.active_subscriptions.to_string()),
                ("pending pings", t.pending_pings.to_string()),
                (
                    "last ping",
                    t.last_pinged_at.map_or_else(|| "-".into(), time),
                ),
                (
                    "last fetch",
                    t.last_fetched_at.map_or_else(|| "-".into(), time),
                ),
                ("fetch error", opt(t.last_fetch_error.as_ref())),
                (
                    "failing since",
                    t.failing_since.map_or_else(|| "-".into(), time),
                ),
                ("next poll", t.next_poll_at.map_or_else(|| "-".into(), time)),
                (
                    "poll interval",
                    t.poll_interval_seconds.map_or_else(
                        || "-".into(),
                        |s| {
                            humantime::format_duration(std::time::Duration::from_secs(
                                u64::try_from(s).unwrap_or(0),
                            ))
                            .to_string()
                        },
                    ),
                ),
                ("poll reason", opt(t.poll_reason.as_ref())),
                ("missed pings", t.missed_pings.to_string()),
                ("alias of", opt(t.alias_of.as_ref())),
            ];
            for (k, v) in fields {
                println!("{k:<14} {v}");
            }
            Ok(())
        }
    }
}
