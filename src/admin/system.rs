//! `herald publish` and `herald check-config`.

use serde_json::json;

use super::print_json;
use crate::{
    config::Settings,
    distribution::{self, Pinged},
    domain::{access::HubMode, url::HubUrl},
    queue::Wakers,
    store::Db,
};

/// Records a publish ping, exactly like `hub.mode=publish` on the hub URL.
pub async fn publish(db: &Db, topics: &[String], json: bool) -> anyhow::Result<()> {
    let urls = topics
        .iter()
        .map(|t| HubUrl::parse(t).map_err(|e| anyhow::anyhow!("topic {e}: {t:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // This process runs no workers: the running hub's are told at the commit.
    let Pinged { subscribed, queued } =
        distribution::record_pings(db, &Wakers::new(false), &urls).await?;
    if json {
        return print_json(
            &json!({"topics": urls.len(), "subscribed": subscribed, "distributions_queued": queued}),
        );
    }
    println!(
        "pinged {} topic(s): {subscribed} with subscribers; the running hub fetches and distributes them",
        urls.len()
    );
    Ok(())
}

/// Parses the configuration the way `herald serve` would and checks the database.
/// With `--json`, a failure is JSON too (`{"valid": false, "error": …}`) on standard output.
pub async fn check_config(
    settings: Result<Settings, crate::config::ConfigError>,
    json: bool,
) -> anyhow::Result<()> {
    let checked = match settings {
        Ok(settings) => report(&settings).await.map(|r| (r, settings)),
        Err(e) => Err(super::Refused(format!("invalid configuration: {e}")).into()),
    };
    let (report, settings) = match checked {
        Ok(checked) => checked,
        Err(error) if json => {
            let said = crate::telemetry::Chain(error.as_ref()).to_string();
            print_json(&json!({ "valid": false, "error": said }))?;
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    if json {
        return print_json(&report);
    }
    println!("configuration is valid");
    if let Some(map) = report.as_object() {
        for (k, v) in map
            .iter()
            .filter(|(k, _)| !["valid", "warnings"].contains(&k.as_str()))
        {
            println!(
                "  {k:<27} {}",
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            );
        }
    }
    for warning in settings.warnings() {
        println!("warning: {warning}");
    }
    Ok(())
}

/// What `check-config` reports of valid settings, after looking at the database.
async fn report(settings: &Settings) -> anyhow::Result<serde_json::Value> {
    if let Some(reason) = settings.unreachable_hub_url() {
        return Err(super::Refused(format!("invalid configuration: {reason}")).into());
    }
    let url = settings.database_url.expose();
    // A SQLite file not created yet is fine: `herald serve` creates it. Nothing is created here.
    let database = match crate::store::file::DatabaseFile::path_of(url) {
        Some(path) if !path.exists() => {
            format!("sqlite, created at first start: {}", path.display())
        }
        _ => {
            let db = Db::connect_existing(url).await?;
            let engine = db.engine().to_owned();
            db.close().await;
            engine
        }
    };
    let public_url = settings.public_url.as_ref().map_or_else(
        || format!("http://{}/hub", settings.listen),
        |u| u.to_string(),
    );
    let report = json!({
        "valid": true,
        "database": database,
        "listen": settings.listen.to_string(),
        "public_url": public_url,
        "mode": if settings.access.mode == HubMode::Closed { "closed" } else { "open" },
        "producer_api": settings.access.producer_token.is_some(),
        "producer_events_url": settings.events_push.as_ref().map(|p| p.url.to_string()),
        "address_policy": settings.address_policy.to_string(),
        "signature_algorithm": settings.delivery.signature_algorithm.name(),
        "legacy_signature_algorithm": settings.delivery.legacy_signature_algorithm.name(),
        "feed_delivery": settings.delivery.feed_default.as_str(),
        "retry_schedule": settings.delivery.retry.schedule_text(),
        "role": format!("{:?}", settings.role).to_lowercase(),
        "warnings": settings.warnings(),
    });
    Ok(report)
}

/// `herald backup PATH`: a consistent copy of a SQLite database, taken while the hub runs
/// (SQLite's `VACUUM INTO`: one read transaction, a compact file, the WAL's newest writes
/// included — unlike a copy of the file). Never overwrites a file.
pub async fn backup(db: &Db, path: &std::path::Path) -> anyhow::Result<()> {
    let Db::Sqlite(pool) = db else {
        anyhow::bail!(
            "herald backup copies SQLite databases; back PostgreSQL up with pg_dump (docs/deploy.md, \"Backups\")"
        );
    };
    if path.exists() {
        anyhow::bail!(
            "{} exists: a backup never overwrites a file",
            path.display()
        );
    }
    let target = path
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{} is not a UTF-8 path", path.display()))?;
    sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(pool)
        .await?;
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!("backed up to {} ({bytes} bytes)", path.display());
    Ok(())
}
