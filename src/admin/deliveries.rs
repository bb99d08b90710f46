//! `herald deliveries list | retry`: inspect deliveries and replay dead letters.

use clap::Subcommand;
use serde_json::json;

use super::{actions, confirm, print_json, progress};
use crate::{
    domain::{
        ids::{DeliveryId, SubscriptionId},
        state::DeliveryState,
    },
    queue::Wakers,
    store::{Db, deliveries, views},
};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List deliveries, newest first.
    List {
        /// Only failed deliveries (retries exhausted).
        #[arg(long)]
        failed: bool,
        /// Only deliveries of this subscription.
        #[arg(long)]
        subscription: Option<SubscriptionId>,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replay failed deliveries with a fresh retry schedule.
    Retry {
        /// Delivery ids.
        ids: Vec<DeliveryId>,
        /// Every failed delivery.
        #[arg(long, conflicts_with = "ids")]
        all_failed: bool,
        /// Show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation (needed for --all-failed off a terminal).
        #[arg(long)]
        yes: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(db: &Db, command: Command) -> anyhow::Result<()> {
    match command {
        Command::List {
            failed,
            subscription,
            limit,
            json,
        } => {
            let rows = views::deliveries(
                db,
                subscription,
                failed.then_some(DeliveryState::Failed),
                None,
                limit,
            )
            .await?;
            if json {
                return print_json(&rows);
            }
            super::print_deliveries(&rows);
            Ok(())
        }
        Command::Retry {
            ids,
            all_failed,
            dry_run,
            yes,
            json,
        } => {
            if ids.is_empty() && !all_failed {
                anyhow::bail!("say which deliveries: ids or --all-failed");
            }
            let ids = if all_failed {
                deliveries::failed_ids(db).await?
            } else {
                ids
            };
            if dry_run {
                if json {
                    return print_json(&json!({"dry_run": true, "count": ids.len(), "ids": ids}));
                }
                println!(
                    "would replay {} delivery(ies) (dry run: nothing changed)",
                    ids.len()
                );
                return Ok(());
            }
            if all_failed && !confirm(&format!("Replay {} failed delivery(ies)?", ids.len()), yes)?
            {
                anyhow::bail!("nothing changed");
            }
            let bar = progress(ids.len() as u64, "replaying");
            let mut replayed = Vec::new();
            for chunk in ids.chunks(actions::REPLAY_CHUNK) {
                // This process runs no workers: the running hub's are told at the commit.
                replayed.extend(actions::replay(db, &Wakers::new(false), chunk).await?);
                bar.inc(chunk.len() as u64);
            }
            bar.finish_and_clear();
            if json {
                return print_json(&json!({"count": replayed.len(), "ids": replayed}));
            }
            println!(
                "replaying {} delivery(ies); the running hub sends them shortly",
                replayed.len()
            );
            let skipped = ids.len() - replayed.len();
            if skipped > 0 {
                println!("{skipped} were not failed and were left alone");
            }
            Ok(())
        }
    }
}
