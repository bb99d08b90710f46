//! `TestApp`: Herald built exactly as `herald serve` builds it, on port 0, against a fresh
//! SQLite file or a fresh PostgreSQL database (`HERALD_TEST_DATABASE=postgres`).

use herald::{app::Application, config::Settings, store::Db};
use reqwest::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_env() -> Self {
        match std::env::var("HERALD_TEST_DATABASE").as_deref() {
            Ok("postgres") | Ok("postgresql") | Ok("pg") => Self::Postgres,
            Ok("sqlite") | Err(_) => Self::Sqlite,
            Ok(other) => panic!("HERALD_TEST_DATABASE={other:?}: use sqlite or postgres"),
        }
    }
}

fn admin_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh, empty database URL for one test.
pub async fn fresh_database() -> String {
    let name = format!("herald_test_{}", herald::domain::challenge::random_hex(8));
    match Backend::from_env() {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!("{name}.db"));
            format!("sqlite://{}", path.display())
        }
        Backend::Postgres => {
            let admin = admin_url();
            let pool = sqlx::PgPool::connect(&admin)
                .await
                .expect("connect to PostgreSQL as admin");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&pool)
                .await
                .expect("create the test database");
            pool.close().await;
            let base = admin
                .rsplit_once('/')
                .map_or(admin.as_str(), |(b, _)| b)
                .to_owned();
            format!("{base}/{name}")
        }
    }
}

pub struct TestApp {
    pub app: Option<Application>,
    pub database_url: String,
    pub port: u16,
    pub vars: Vec<(&'static str, String)>,
    pub client: reqwest::Client,
    db: Db,
}

impl TestApp {
    /// A hub that may contact loopback (where the test doubles live), with fast retries.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// As [`TestApp::spawn`], with settings overridden by `HERALD_*` names.
    pub async fn spawn_with(overrides: &[(&'static str, &str)]) -> Self {
        Self::spawn_on(fresh_database().await, overrides).await
    }

    /// As [`TestApp::spawn_with`], on the database at `database_url`.
    pub async fn spawn_on(database_url: String, overrides: &[(&'static str, &str)]) -> Self {
        let mut vars: Vec<(&'static str, String)> = vec![
            ("HERALD_ALLOW_PRIVATE_ADDRESSES", "true".into()),
            ("HERALD_RETRY_SCHEDULE", "100ms,200ms,300ms".into()),
            ("HERALD_LEASE_MIN_SECONDS", "1".into()),
            ("HERALD_QUEUE_POLL", "100ms".into()),
            ("HERALD_VERIFY_TIMEOUT", "5s".into()),
            ("HERALD_DELIVERY_TIMEOUT", "5s".into()),
        ];
        for (k, v) in overrides {
            vars.retain(|(name, _)| name != k);
            vars.push((k, (*v).to_owned()));
        }
        Self::start(database_url, vars, None).await
    }

    async fn start(
        database_url: String,
        vars: Vec<(&'static str, String)>,
        port: Option<u16>,
    ) -> Self {
        let mut all = vars.clone();
        all.push(("HERALD_DATABASE_URL", database_url.clone()));
        all.push(("HERALD_LISTEN", format!("127.0.0.1:{}", port.unwrap_or(0))));
        let settings = Settings::from_vars(all).expect("valid test settings");
        let app = Application::build(settings).await.expect("the hub starts");
        let port = app.port().unwrap_or(0);
        let db = Db::connect(&database_url)
            .await
            .expect("a second connection for assertions");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            app: Some(app),
            database_url,
            port,
            vars,
            client,
            db,
        }
    }

    /// Stops the hub gracefully and starts a new one on the same database (and port).
    pub async fn restart(mut self) -> Self {
        self.app.take().expect("running").stop().await;
        self.db.close().await;
        Self::start(
            self.database_url.clone(),
            self.vars.clone(),
            Some(self.port),
        )
        .await
    }

    /// Starts another process-like instance on the same database with extra settings.
    pub async fn sibling(&self, overrides: &[(&'static str, &str)]) -> TestApp {
        let mut vars = self.vars.clone();
        for (k, v) in overrides {
            vars.retain(|(name, _)| name != k);
            vars.push((k, (*v).to_owned()));
        }
        Self::start(self.database_url.clone(), vars, None).await
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
    }

    /// The body of `GET <path>` on the hub's listener, as text (the metrics, a page).
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
            .expect("the hub answers")
            .text()
            .await
            .expect("text")
    }

    pub fn hub_url(&self) -> String {
        format!("http://127.0.0.1:{}/hub", self.port)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// POSTs a form to the hub URL; returns status and body text.
    pub async fn post_form(&self, pairs: &[(&str, &str)]) -> (StatusCode, String) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.post_raw("application/x-www-form-urlencoded", body.into_bytes())
            .await
    }

    pub async fn post_raw(&self, content_type: &str, body: Vec<u8>) -> (StatusCode, String) {
        let response = self
            .client
            .post(self.hub_url())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("the hub answers");
        let status = response.status();
        (status, response.text().await.unwrap_or_default())
    }

    pub async fn subscribe(
        &self,
        topic: &str,
        callback: &str,
        extra: &[(&str, &str)],
    ) -> StatusCode {
        let mut pairs = vec![
            ("hub.mode", "subscribe"),
            ("hub.topic", topic),
            ("hub.callback", callback),
        ];
        pairs.extend_from_slice(extra);
        self.post_form(&pairs).await.0
    }

    pub async fn unsubscribe(&self, topic: &str, callback: &str) -> StatusCode {
        self.post_form(&[
            ("hub.mode", "unsubscribe"),
            ("hub.topic", topic),
            ("hub.callback", callback),
        ])
        .await
        .0
    }

    pub async fn publish(&self, topic: &str) -> StatusCode {
        self.post_form(&[("hub.mode", "publish"), ("hub.url", topic)])
            .await
            .0
    }

    /// The state of the subscription of `callback` to `topic`, if a row exists.
    pub async fn subscription_state(&self, topic: &str, callback: &str) -> Option<String> {
        self.scalar_text(
            "SELECT s.state FROM subscriptions s JOIN topics t ON t.id = s.topic_id WHERE t.url = $1 AND s.callback = $2",
            &[topic, callback],
        )
        .await
    }

    /// Waits until the request for (topic, callback) is no longer pending; returns its state.
    pub async fn settled_request(&self, topic: &str, callback: &str) -> String {
        super::eventually("the subscription request to be settled", || async {
            let state = self
                .scalar_text(
                    "SELECT state FROM subscription_requests WHERE topic = $1 AND callback = $2 ORDER BY id DESC LIMIT 1",
                    &[topic, callback],
                )
                .await?;
            (state != "pending").then_some(state)
        })
        .await
    }

    /// Subscribes and waits for the verification to succeed.
    pub async fn subscribed(&self, topic: &str, callback: &str, extra: &[(&str, &str)]) {
        assert_eq!(
            self.subscribe(topic, callback, extra).await,
            StatusCode::ACCEPTED
        );
        assert_eq!(self.settled_request(topic, callback).await, "verified");
    }

    /// Waits until `n` deliveries are recorded as delivered.
    pub async fn wait_delivered(&self, n: i64) {
        super::eventually(&format!("{n} deliveries to be recorded"), || async {
            (self
                .count("SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'")
                .await
                == n)
                .then_some(())
        })
        .await
    }

    /// Waits until no topic has pings that a distribution has not covered.
    pub async fn wait_topics_idle(&self) {
        super::eventually("every distribution to finish", || async {
            (self
                .count("SELECT COUNT(*) FROM topics WHERE ping_seq > distributed_seq")
                .await
                == 0)
                .then_some(())
        })
        .await
    }

    /// Waits for a fetch error to be recorded on `topic`, and returns it.
    pub async fn wait_fetch_error(&self, topic: &str) -> String {
        super::eventually("the fetch error to be recorded", || async {
            self.scalar_text(
                "SELECT last_fetch_error FROM topics WHERE url = $1",
                &[topic],
            )
            .await
        })
        .await
    }

    /// Waits until the only delivery has reached `state`.
    pub async fn wait_delivery_state(&self, state: &str) {
        super::eventually(&format!("the delivery to be {state}"), || async {
            (self
                .scalar_text("SELECT state FROM deliveries", &[])
                .await?
                == state)
                .then_some(())
        })
        .await
    }

    /// Waits until no delivery is being sent or waiting for a retry due soon (every delivery
    /// is delivered, failed, cancelled, gone, or pending a retry at least a minute away).
    pub async fn wait_delivery_states_settled(&self) {
        let soon = (chrono::Utc::now().timestamp_millis() + 60_000).to_string();
        super::eventually("every delivery to settle", || async {
            let busy = self
                .scalar_text(
                    "SELECT CAST(COUNT(*) AS TEXT) FROM deliveries
                     WHERE state = 'sending' OR (state = 'pending' AND next_attempt_at < CAST($1 AS BIGINT))",
                    &[&soon],
                )
                .await;
            (busy.as_deref() == Some("0")).then_some(())
        })
        .await
    }

    /// As [`TestApp::scalar_text`], for a statement built at run time.
    pub async fn scalar_text_built(&self, sql: String, binds: &[&str]) -> Option<String> {
        herald_sql::text_built(&self.db, sql, binds).await
    }

    pub async fn scalar_text(&self, sql: &'static str, binds: &[&str]) -> Option<String> {
        herald_sql::text(&self.db, sql, binds).await
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        herald_sql::count(&self.db, sql).await
    }

    /// The first column of every row `sql` returns, as text.
    pub async fn texts(&self, sql: &'static str, binds: &[&str]) -> Vec<String> {
        herald_sql::texts(&self.db, sql, binds).await
    }

    /// The states of every request made for `callback`, oldest first, once none is pending.
    pub async fn settled_requests(&self, callback: &str) -> Vec<String> {
        super::eventually("every request of the callback to be settled", || async {
            let states = self
                .texts(
                    "SELECT state FROM subscription_requests WHERE callback = $1 ORDER BY id",
                    &[callback],
                )
                .await;
            (!states.iter().any(|s| s == "pending")).then_some(states)
        })
        .await
    }

    pub async fn exec(&self, sql: &'static str) {
        herald_sql::exec(&self.db, sql).await
    }

    /// A statement built by the test itself (bulk arrangement the API would take long to make).
    pub async fn exec_built(&self, sql: String) {
        exec_on(&self.db, sql).await
    }
}

/// Raw SQL for assertions and for breaking things on purpose.
/// Runs a statement built at run time on `db`.
pub async fn exec_on(db: &Db, sql: String) {
    match db {
        Db::Sqlite(p) => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .expect("statement");
        }
        Db::Pg(p) => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .expect("statement");
        }
    }
}

pub mod herald_sql {
    use herald::store::Db;

    /// As [`text`], for a statement built at run time.
    pub async fn text_built(db: &Db, sql: String, binds: &[&str]) -> Option<String> {
        match db {
            Db::Sqlite(p) => {
                let mut q = sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql));
                for b in binds {
                    q = q.bind(*b);
                }
                q.fetch_optional(p).await.expect("query").flatten()
            }
            Db::Pg(p) => {
                let mut q = sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql));
                for b in binds {
                    q = q.bind(*b);
                }
                q.fetch_optional(p).await.expect("query").flatten()
            }
        }
    }

    pub async fn text(db: &Db, sql: &'static str, binds: &[&str]) -> Option<String> {
        match db {
            Db::Sqlite(p) => {
                let mut q = sqlx::query_scalar::<_, Option<String>>(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.fetch_optional(p).await.expect("query").flatten()
            }
            Db::Pg(p) => {
                let mut q = sqlx::query_scalar::<_, Option<String>>(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.fetch_optional(p).await.expect("query").flatten()
            }
        }
    }

    pub async fn texts(db: &Db, sql: &'static str, binds: &[&str]) -> Vec<String> {
        match db {
            Db::Sqlite(p) => {
                let mut q = sqlx::query_scalar::<_, String>(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.fetch_all(p).await.expect("query")
            }
            Db::Pg(p) => {
                let mut q = sqlx::query_scalar::<_, String>(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.fetch_all(p).await.expect("query")
            }
        }
    }

    pub async fn count(db: &Db, sql: &'static str) -> i64 {
        match db {
            Db::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(p)
                .await
                .expect("query"),
            Db::Pg(p) => sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(p)
                .await
                .expect("query"),
        }
    }

    pub async fn exec(db: &Db, sql: &'static str) {
        match db {
            Db::Sqlite(p) => {
                sqlx::query(sql).execute(p).await.expect("statement");
            }
            Db::Pg(p) => {
                sqlx::query(sql).execute(p).await.expect("statement");
            }
        }
    }
}
