//! `herald subscriptions list | show | expire | delete`.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{actions, confirm, opt, parse_time, print_json, print_table, progress, time};
use crate::{
    config::Settings,
    domain::{
        duration::parse_duration,
        ids::{SubscriptionId, UnixMs},
        state::SubscriptionState,
    },
    outbound::Outbound,
    store::{Db, views},
};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List subscriptions, newest last.
    List(ListArgs),
    /// Everything about one subscription: lease, secret (present or not), recent deliveries.
    Show {
        id: SubscriptionId,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End subscriptions now (state expired); optionally tell their subscribers.
    Expire(ExpireArgs),
    /// Delete subscriptions and their delivery history.
    Delete {
        #[arg(required = true)]
        ids: Vec<SubscriptionId>,
        /// Show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this topic URL.
    #[arg(long)]
    topic: Option<String>,
    /// Only callbacks containing this text.
    #[arg(long)]
    callback: Option<String>,
    /// Only this state: active, expired, ended, unsubscribed.
    #[arg(long)]
    state: Option<SubscriptionState>,
    /// Only active subscriptions whose lease ends within this long (e.g. 2d).
    #[arg(long, value_parser = parse_duration)]
    expiring_within: Option<Duration>,
    /// Only subscriptions with failed deliveries or deliveries waiting for a retry.
    #[arg(long)]
    failing: bool,
    /// At most this many rows.
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ExpireArgs {
    /// Subscription ids.
    ids: Vec<SubscriptionId>,
    /// All active subscriptions of this topic URL.
    #[arg(long)]
    topic: Option<String>,
    /// All active subscriptions whose callback contains this text.
    #[arg(long)]
    callback: Option<String>,
    /// All active subscriptions whose lease ended before this time (2026-11-01, RFC 3339, now).
    #[arg(long, value_parser = parse_time)]
    expired_before: Option<UnixMs>,
    /// Every active subscription (filters that would choose them all are refused without it).
    #[arg(long)]
    all: bool,
    /// Show what would be expired; change nothing.
    /// Show what would change; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Send each subscriber a hub.mode=denied notice (WebSub §5.2).
    #[arg(long)]
    notify: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(db: &Db, command: Command) -> anyhow::Result<()> {
    match command {
        Command::List(a) => list(db, a).await,
        Command::Show { id, json } => show(db, id, json).await,
        Command::Expire(a) => expire(db, a).await,
        Command::Delete {
            ids,
            dry_run,
            yes,
            json,
        } => delete(db, ids, dry_run, yes, json).await,
    }
}

async fn list(db: &Db, a: ListArgs) -> anyhow::Result<()> {
    let filter = views::SubscriptionFilter {
        topic: a.topic,
        callback: a.callback,
        state: a.state,
        expiring_before: a.expiring_within.map(|d| UnixMs::now().after(d)),
        failing: a.failing,
        limit: a.limit,
        ..Default::default()
    };
    let rows = views::subscriptions(db, &filter).await?;
    if a.json {
        return print_json(&rows);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.state.to_string(),
                time(s.expires_at),
                s.topic.clone(),
                s.callback.clone(),
                opt(s.last_delivery_state.as_ref()),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "STATE",
            "EXPIRES",
            "TOPIC",
            "CALLBACK",
            "LAST DELIVERY",
        ],
        &table,
    );
    Ok(())
}

async fn show(db: &Db, id: SubscriptionId, json: bool) -> anyhow::Result<()> {
    let filter = views::SubscriptionFilter {
        id: Some(id),
        limit: 1,
        ..Default::default()
    };
    let Some(s) = views::subscriptions(db, &filter).await?.pop() else {
        return Err(super::NotFound(format!("no subscription {id}")).into());
    };
    let recent = views::deliveries(db, Some(id), None, None, 10).await?;
    if json {
        return print_json(&json!({"subscription": s, "recent_deliveries": recent}));
    }
    let fields = [
        ("id", s.id.to_string()),
        ("topic", s.topic.clone()),
        ("callback", s.callback.clone()),
        ("state", s.state.to_string()),
        ("reason", opt(s.state_reason.as_ref())),
        (
            "secret",
            if s.has_secret {
                "yes".into()
            } else {
                "no".into()
            },
        ),
        ("lease", format!("{} s", s.lease_seconds)),
        ("verified", time(s.verified_at)),
        ("expires", time(s.expires_at)),
        ("ended", s.ended_at.map_or_else(|| "-".into(), time)),
        (
            "delivery mode",
            s.delivery_mode
                .map_or_else(|| "(hub default)".into(), |m| m.to_string()),
        ),
        (
            "PuSH 0.3 style",
            if s.legacy { "yes".into() } else { "no".into() },
        ),
    ];
    for (k, v) in fields {
        println!("{k:<15} {v}");
    }
    println!("\nrecent deliveries:");
    super::print_deliveries(&recent);
    Ok(())
}

async fn expire(db: &Db, a: ExpireArgs) -> anyhow::Result<()> {
    let selection = actions::ExpirySelection {
        ids: a.ids.clone(),
        topic: a.topic.clone(),
        callback: a.callback.clone(),
        expired_before: a.expired_before,
        all: a.all,
    };
    let chosen = match actions::select_for_expiry(db, &selection).await {
        Ok(chosen) => chosen,
        Err(actions::SelectionError::Nothing) => anyhow::bail!(
            "say which subscriptions: ids, --topic, --callback or --expired-before (or --all)"
        ),
        Err(actions::SelectionError::Everything(n)) => anyhow::bail!(
            "the filters choose every active subscription ({n}); to expire them all say --all"
        ),
        Err(e) => return Err(e.into()),
    };
    let ids: Vec<SubscriptionId> = chosen.iter().map(|s| s.id).collect();

    if a.dry_run || ids.is_empty() {
        return report(a.json, "would expire", &chosen, a.dry_run);
    }
    if !confirm(&format!("Expire {} subscription(s)?", ids.len()), a.yes)? {
        anyhow::bail!("nothing changed");
    }
    let done = actions::expire(db, &ids).await?;

    if a.notify {
        let settings = Settings::from_vars(std::iter::empty())?;
        let outbound = Outbound::new(&(&settings).into())?;
        let bar = progress(chosen.len() as u64, "notifying");
        for s in chosen.iter().filter(|s| done.contains(&s.id)) {
            if let Err(e) = actions::notify_denied(&outbound, s).await {
                bar.println(format!(
                    "subscription {}: notice not delivered: {}",
                    s.id,
                    crate::telemetry::Chain(&e)
                ));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    let expired: Vec<_> = chosen
        .into_iter()
        .filter(|s| done.contains(&s.id))
        .collect();
    report(a.json, "expired", &expired, false)
}

fn report(
    json: bool,
    what: &str,
    rows: &[views::SubscriptionView],
    dry_run: bool,
) -> anyhow::Result<()> {
    let ids: Vec<SubscriptionId> = rows.iter().map(|s| s.id).collect();
    if json {
        return print_json(&json!({"dry_run": dry_run, "count": ids.len(), "ids": ids}));
    }
    println!(
        "{what} {} subscription(s){}",
        ids.len(),
        if dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    for s in rows {
        println!("  {}  {}  {}", s.id, s.topic, s.callback);
    }
    Ok(())
}

async fn delete(
    db: &Db,
    ids: Vec<SubscriptionId>,
    dry_run: bool,
    yes: bool,
    json: bool,
) -> anyhow::Result<()> {
    if dry_run {
        if json {
            return print_json(&json!({"dry_run": true, "ids": ids}));
        }
        println!(
            "would delete {} subscription(s) (dry run: nothing changed)",
            ids.len()
        );
        return Ok(());
    }
    if !confirm(
        &format!(
            "Delete {} subscription(s) and their delivery history?",
            ids.len()
        ),
        yes,
    )? {
        anyhow::bail!("nothing changed");
    }
    let n = actions::delete(db, &ids).await?;
    if json {
        return print_json(&json!({"deleted": n}));
    }
    println!("deleted {n} subscription(s)");
    Ok(())
}
