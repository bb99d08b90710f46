//! `herald hosts`: callback hosts whose circuit breaker is open (deliveries paused), as last
//! recorded by any process.

use super::{opt, print_json, print_table, time};
use crate::store::{Db, callback_hosts};

pub async fn run(db: &Db, all: bool, json: bool) -> anyhow::Result<()> {
    let rows = callback_hosts::list(db, all).await?;
    if json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("no callback host is paused");
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|h| {
            vec![
                h.host.clone(),
                h.state.clone(),
                opt(h.opened_at.map(time)),
                opt(h.retry_at.map(time)),
                time(h.updated_at),
            ]
        })
        .collect();
    print_table(
        &["HOST", "BREAKER", "OPENED", "NEXT PROBE", "UPDATED"],
        &table,
    );
    Ok(())
}
