//! PostgreSQL notifications between Herald processes: a statement that notifies at commit, and
//! a listener that keeps its connection (reconnecting after a loss) and hands every payload to
//! a callback. With SQLite there is one process, woken in memory, and none of this runs.

use std::time::Duration;

use super::{StoreError, Tx, dispatch_tx};

/// In `tx`: notifies `channel` with `payload` when the transaction commits (PostgreSQL folds
/// identical notifications of one transaction into one). Nothing on SQLite.
pub async fn at_commit(tx: &mut Tx, channel: &str, payload: &str) -> Result<(), StoreError> {
    if let Tx::Pg(_) = tx {
        dispatch_tx!(tx, c => sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel).bind(payload).execute(c).await?.rows_affected());
    }
    Ok(())
}

/// Listens on `channel` for ever: `on_payload` for each notification, `on_gap` after
/// (re)connecting, when notifications may have been missed. Waits `retry` between attempts.
pub async fn listen(
    pool: sqlx::PgPool,
    channel: &'static str,
    retry: Duration,
    on_payload: impl Fn(&str) + Send,
    on_gap: impl Fn() + Send,
) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%error, channel, "cannot listen for notifications; polling meanwhile");
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(channel).await {
            tracing::warn!(%error, channel, "cannot listen for notifications; polling meanwhile");
            tokio::time::sleep(retry).await;
            continue;
        }
        on_gap();
        loop {
            match listener.recv().await {
                Ok(note) => on_payload(note.payload()),
                Err(error) => {
                    tracing::warn!(%error, channel, "lost the notification channel; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
