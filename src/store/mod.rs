//! Persistence on SQLite (the embedded default) or PostgreSQL, chosen once from the URL.
//!
//! Only this module and `queue` (apalis' tables) know which engine is in use; the store knows
//! nothing of queues or settings: callers pass plain values. SQL is written once in the
//! dialect both accept (`$N` placeholders, `ON CONFLICT`, `RETURNING`) and run through
//! [`dispatch!`], which expands the same expression for each pool type. Times are integer Unix
//! milliseconds passed in as parameters, never `now()` in SQL. One module per table.

pub mod bodies;
pub mod callback_hosts;
pub mod contents;
pub mod deliveries;
pub mod distributions;
pub mod events;
pub mod events_push;
pub mod file;
pub mod live;
pub mod maintenance;
pub mod notify;
pub mod processes;
pub mod requests;
pub mod subscriptions;
pub mod topic_entries;
pub mod topics;
pub mod views;

use std::{fmt, str::FromStr, time::Duration};

use crate::domain::ids::UnixMs;
use sqlx::{
    PgPool, Postgres, Sqlite, SqlitePool,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database answered with an error, or could not be reached. Its message is the
    /// driver's, said once (this variant adds no words of its own, so a logged chain does not
    /// repeat it).
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The queue library refused to store a job (its tables are in the same database).
    #[error("cannot push a queue job")]
    Queue(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A database URL Herald does not support.
    #[error("unsupported database URL {0:?}: use sqlite://FILE or postgres://…")]
    UnsupportedUrl(String),
    /// An operator command named a SQLite file that does not exist.
    #[error(
        "there is no database at {0}: set HERALD_DATABASE_URL (or --database-url) to the hub's database, or run `herald migrate` to create one there"
    )]
    NoDatabase(String),
    /// The SQLite file (or its directory) cannot be opened for writing: a read-only file
    /// system, missing permissions, a missing directory.
    #[error("the database file {path} cannot be opened for writing")]
    FileUnusable {
        path: String,
        #[source]
        reason: std::io::Error,
    },
    /// The claim this process held on a row lapsed and another worker took it over: what this
    /// process did is not recorded (the transaction rolls back), the other's result counts.
    #[error("claim on {0} lost to another worker")]
    ClaimLost(&'static str),
    /// A stored row that does not decode into its domain type (a value outside the vocabulary
    /// the migrations allow, or an unparseable URL): reported where the row is read.
    #[error("corrupt row {table}#{id}: {what}")]
    Corrupt {
        table: &'static str,
        id: i64,
        what: String,
    },
}

/// SQLite's "unable to open database file" says neither which file nor why: when the file
/// cannot be opened for writing, the operating system's reason is given instead, with the path.
fn explain_open_failure(url: &str, error: sqlx::Error) -> StoreError {
    match writable(url) {
        Err(unusable) => unusable,
        Ok(()) => error.into(),
    }
}

/// Whether the SQLite file a URL names (or, when it does not exist yet, its directory) can be
/// written: `Err` names the file and the operating system's reason. Anything but a SQLite file
/// passes. `serve` and `migrate` ask before they connect: SQLite itself would open a read-only
/// file and fail later, on the first write, with "attempt to write a readonly database".
pub fn writable(url: &str) -> Result<(), StoreError> {
    let Some(file) = file::DatabaseFile::path_of(url) else {
        return Ok(());
    };
    let probe = if file.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .map(drop)
    } else {
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
        let probe = dir.map_or_else(
            || std::path::PathBuf::from(".herald-probe"),
            |d| d.join(".herald-probe"),
        );
        std::fs::File::create(&probe).map(|_| {
            let _ = std::fs::remove_file(&probe);
        })
    };
    probe.map_err(|reason| StoreError::FileUnusable {
        path: file.display().to_string(),
        reason,
    })
}

/// Whether a pooled SQLite connection may be handed out. When the disk fills (or a write
/// fails otherwise), SQLite may roll a transaction back by itself; the driver's own ROLLBACK
/// then fails and it goes on counting a transaction that is gone, refusing every later one on
/// that connection ("non-zero transaction depth") — with one connection, the hub's every write
/// for ever. Such a connection is closed and a new one opened. The common case costs one
/// atomic read; a rollback still queued on the connection is let through first.
async fn still_usable(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    conn.ping().await?;
    let usable = !conn.is_in_transaction();
    if !usable {
        tracing::warn!("a database connection left in a transaction that SQLite ended is replaced");
    }
    Ok(usable)
}

/// SQLite primary result codes of a database that cannot be used now: BUSY, LOCKED, READONLY,
/// IOERR, FULL, CANTOPEN.
const SQLITE_UNAVAILABLE: [i32; 6] = [5, 6, 8, 10, 13, 14];

/// PostgreSQL SQLSTATE classes and codes of a server that is away or cannot write now:
/// connection exceptions, insufficient resources (disk full, out of memory, too many
/// connections), operator intervention (shutting down, crash recovery), system errors.
const PG_UNAVAILABLE: [&str; 4] = ["08", "53", "57P", "58"];

impl StoreError {
    /// Whether the database is away or cannot write now (connection lost or refused, server
    /// shutting down, disk full, file read-only or gone, locked past the busy timeout), as
    /// opposed to refusing this statement: the same work may succeed later.
    pub fn is_unavailable(&self) -> bool {
        let Self::Sqlx(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                match self.engine() {
                    Some("sqlite") => code
                        .parse::<i32>()
                        .is_ok_and(|c| SQLITE_UNAVAILABLE.contains(&(c & 0xff))),
                    _ => PG_UNAVAILABLE.iter().any(|class| code.starts_with(class)),
                }
            }
            _ => false,
        }
    }

    /// Which engine a database error came from, when it is one.
    fn engine(&self) -> Option<&'static str> {
        match self {
            Self::Sqlx(sqlx::Error::Database(db))
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
            {
                Some("sqlite")
            }
            Self::Sqlx(sqlx::Error::Database(_)) => Some("postgres"),
            _ => None,
        }
    }

    pub(crate) fn corrupt(table: &'static str, id: i64, what: impl fmt::Display) -> Self {
        Self::Corrupt {
            table,
            id,
            what: what.to_string(),
        }
    }
}

/// A subscribe or unsubscribe request as stored (in `subscription_requests`, or as the settings
/// of a subscription a renewal verifies), decoded once into the domain request; a value that
/// does not decode is reported against `table` and `id`.
pub(crate) struct StoredRequestParts {
    pub table: &'static str,
    pub id: i64,
    pub mode: crate::domain::hub_request::Mode,
    pub topic: String,
    pub callback: String,
    pub lease_seconds: Option<u64>,
    pub secret: Option<String>,
    pub delivery_mode: Option<String>,
    pub legacy: Option<crate::domain::hub_request::VerifyMode>,
    pub verify_token: Option<String>,
    pub on_behalf_of: Option<i64>,
    pub replay: Option<i64>,
    pub client_addr: Option<String>,
}

impl TryFrom<StoredRequestParts> for crate::domain::hub_request::SubscriptionRequest {
    type Error = StoreError;

    fn try_from(p: StoredRequestParts) -> Result<Self, StoreError> {
        use crate::domain::{secret::Secret, url::HubUrl};
        let bad = |what: String| StoreError::corrupt(p.table, p.id, what);
        Ok(Self {
            mode: p.mode,
            topic: HubUrl::parse(&p.topic).map_err(|e| bad(format!("topic {e}")))?,
            callback: HubUrl::parse(&p.callback).map_err(|e| bad(format!("callback {e}")))?,
            lease_seconds: p.lease_seconds,
            secret: p.secret.and_then(Secret::from_stored),
            delivery_mode: p
                .delivery_mode
                .map(|m| m.parse())
                .transpose()
                .map_err(|e| bad(format!("delivery_mode {e}")))?,
            legacy: p.legacy,
            verify_token: p.verify_token,
            on_behalf_of: p.on_behalf_of.and_then(|n| u32::try_from(n).ok()),
            replay: p.replay.and_then(|n| u32::try_from(n).ok()),
            client: p
                .client_addr
                .map(|a| a.parse())
                .transpose()
                .map_err(|e| bad(format!("client_addr {e}")))?,
        })
    }
}

/// A connection pool to one of the two engines.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

/// An open transaction on one of the two engines.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Pg(sqlx::Transaction<'static, Postgres>),
}

/// Runs `$body` with `$conn` bound to the pool of whichever engine `$db` uses.
macro_rules! dispatch {
    ($db:expr, $conn:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($conn) => $body,
            $crate::store::Db::Pg($conn) => $body,
        }
    };
}

/// Runs `$body` with `$conn` bound to the connection of the transaction `$tx`.
macro_rules! dispatch_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite(t) => {
                let $conn = &mut **t;
                $body
            }
            $crate::store::Tx::Pg(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    };
}
pub(crate) use {dispatch, dispatch_tx};

impl Db {
    /// Connects to a database that must exist already (operator commands: a command run in
    /// the wrong directory must not create an empty hub there).
    pub async fn connect_existing(url: &str) -> Result<Self, StoreError> {
        if let Some(path) = file::DatabaseFile::path_of(url)
            && !path.exists()
        {
            return Err(StoreError::NoDatabase(path.display().to_string()));
        }
        Self::connect(url).await
    }

    /// Connects; a SQLite file is created when missing, in WAL mode with a busy timeout.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(15))
                .foreign_keys(true);
            // One connection: SQLite takes one writer at a time anyway, and writers on several
            // connections waited for its lock in the busy handler's sleeps, the first to retry
            // winning; the pool's queue is first come, first served instead. Measured
            // (benches/hub.rs, 10,000 subscribers): 8 connections 1,667 subscriptions/s and
            // 13,400 deliveries/s; 2 connections 2,258 and 15,200; one 2,617 and 17,400.
            // So no code may wait for a connection while it holds one (a `Tx`): it would wait
            // for itself.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .before_acquire(|conn, _| Box::pin(still_usable(conn)))
                .connect_with(options)
                .await
                .map_err(|e| explain_open_failure(url, e))?;
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // Every statement is planned for its parameters and the tables as they are now: a
            // generic plan made while a table was nearly empty (a new hub, a server whose
            // autovacuum has not analyzed it yet) would scan it whole for ever after.
            // Herald's working set (open deliveries, subscriptions) is read all the time and
            // stays in memory: costed as disk seeks (the default 4), 500 lookups by primary key
            // lost to reading and hashing a whole 30,000-row table for every batch.
            let options = PgConnectOptions::from_str(url)?.options([
                ("plan_cache_mode", "force_custom_plan"),
                ("random_page_cost", "1.1"),
            ]);
            // One connection first, on its own: a server that refuses or is not there is
            // reported at once with its reason, not as the pool's timeout 15 s later.
            {
                use sqlx::Connection;
                sqlx::PgConnection::connect_with(&options)
                    .await?
                    .close()
                    .await?;
            }
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(15))
                .connect_with(options)
                .await?;
            Ok(Self::Pg(pool))
        } else {
            Err(StoreError::UnsupportedUrl(
                crate::domain::url::redact_password(url),
            ))
        }
    }

    /// Applies Herald's own migrations (the queue's tables are `queue::tables::migrate`'s).
    /// Herald's history lives in its own table, `_herald_migrations`, so it cannot clash with
    /// apalis', which uses sqlx's default table name.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Db::Sqlite(pool) => {
                let mut ours = sqlx::migrate!("./migrations/sqlite");
                ours.dangerous_set_table_name("_herald_migrations");
                ours.run(pool).await?;
            }
            Db::Pg(pool) => {
                let mut ours = sqlx::migrate!("./migrations/postgres");
                ours.dangerous_set_table_name("_herald_migrations");
                ours.run(pool).await?;
            }
        }
        Ok(())
    }

    /// The migrations of this version not applied to the database yet (all of them on an
    /// empty one), by version number.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let known: Vec<i64> = match self {
            Db::Sqlite(_) => sqlx::migrate!("./migrations/sqlite")
                .iter()
                .map(|m| m.version)
                .collect(),
            Db::Pg(_) => sqlx::migrate!("./migrations/postgres")
                .iter()
                .map(|m| m.version)
                .collect(),
        };
        let sql = "SELECT version FROM _herald_migrations WHERE success";
        let applied: Vec<i64> =
            dispatch!(self, pool => sqlx::query_scalar(sql).fetch_all(pool).await)
                .unwrap_or_default();
        Ok(known.into_iter().filter(|v| !applied.contains(v)).collect())
    }

    /// Whether Herald's tables exist (some migration has run).
    pub async fn has_schema(&self) -> bool {
        let probe: Result<i64, sqlx::Error> = dispatch!(self, pool => sqlx::query_scalar("SELECT COUNT(*) FROM subscriptions").fetch_one(pool).await);
        probe.is_ok()
    }

    /// Begins a transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`):
    /// every Herald transaction writes, and a deferred one that reads first and writes later
    /// fails with "database is locked" — without waiting — when another connection wrote in
    /// between (SQLITE_BUSY_SNAPSHOT). Taken up front, the lock waits under `busy_timeout`.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Db::Pg(pool) => Tx::Pg(pool.begin().await?),
        })
    }

    pub fn engine(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Pg(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        dispatch!(self, pool => pool.close().await)
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Pg(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// `$start, $start+1, …` for `n` values: the placeholder list of an `IN (…)`.
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A claim's expiry, made unique: up to a second of random slack is added, so two workers
/// claiming in the same millisecond hold different values, and a write made conditional on
/// "the claim is still the one I took" (`… AND claimed_until = $token`) is exact.
pub(crate) fn claim_token(hold_until: UnixMs) -> UnixMs {
    let hex = crate::domain::challenge::random_hex(2);
    let slack = u64::from(u16::from_str_radix(&hex, 16).unwrap_or(0)) % 1000;
    hold_until.after(Duration::from_millis(slack))
}

/// How many rows one pruning statement deletes: small enough that no statement holds SQLite's
/// write lock for long.
pub(crate) const PRUNE_BATCH: i64 = 1000;

/// Runs a deleting statement (which deletes at most [`PRUNE_BATCH`] rows) until it deletes
/// fewer, yielding between batches; returns how many rows went.
pub(crate) async fn in_batches<F, Fut>(mut batch: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        if n < PRUNE_BATCH as u64 {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Runs `sql` — a `DELETE` of at most `$2` rows older than `$1` — in batches of
/// [`PRUNE_BATCH`]; returns how many rows went.
pub(crate) async fn delete_older_in_batches(
    db: &Db,
    sql: &'static str,
    before: UnixMs,
) -> Result<u64, StoreError> {
    in_batches(|| async {
        Ok(
            dispatch!(db, c => sqlx::query(sql).bind(before).bind(PRUNE_BATCH)
            .execute(c).await?.rows_affected()),
        )
    })
    .await
}

/// How many values one `IN (…)` list binds: well under SQLite's and PostgreSQL's limits on
/// bound parameters, whatever else the statement binds.
pub(crate) const IN_LIST_CHUNK: usize = 500;

/// Splits `values` into chunks for statements with an `IN (…)` list, and writes each chunk's
/// statement: `{list}` in `template` becomes the placeholders `$first, $first+1, …`. Bind the
/// statement's other parameters first, then the chunk with [`bind_all!`].
pub(crate) fn in_list_chunks<'t, 'v, T>(
    template: &'t str,
    first: usize,
    values: &'v [T],
) -> impl Iterator<Item = (String, &'v [T])> + use<'t, 'v, T> {
    values.chunks(IN_LIST_CHUNK).map(move |chunk| {
        (
            template.replace("{list}", &placeholders(first, chunk.len())),
            chunk,
        )
    })
}

/// Binds every value of `$values` to the query `$q`, in order.
macro_rules! bind_all {
    ($q:expr, $values:expr) => {{
        let mut q = $q;
        for value in $values {
            q = q.bind(*value);
        }
        q
    }};
}
pub(crate) use bind_all;

#[cfg(test)]
mod tests {
    #[test]
    fn in_lists_are_chunked_with_their_own_placeholders() {
        let ids: Vec<i64> = (0..1001).collect();
        let chunks: Vec<_> = super::in_list_chunks("x IN ({list})", 2, &ids).collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2].0, "x IN ($2)");
        assert_eq!(chunks[0].1.len(), super::IN_LIST_CHUNK);
        assert!(
            chunks[1]
                .0
                .ends_with(&format!("${})", super::IN_LIST_CHUNK + 1))
        );
    }

    #[test]
    fn placeholder_lists() {
        assert_eq!(super::placeholders(3, 3), "$3,$4,$5");
        assert_eq!(super::placeholders(1, 1), "$1");
    }
}
