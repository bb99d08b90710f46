//! The hub's own storage misbehaving: a SQLite file on a disk that fills up, with the hub's log
//! on the same disk (a container writing both to its state volume).

use std::{io::Write, path::PathBuf, process::Command};

use reqwest::StatusCode;

use crate::helpers::{
    Subscriber,
    app::Backend,
    eventually, loopback_listener,
    process::{HubProcess, post_hub},
};

/// A small tmpfs of the test's own, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "herald-disk-{}",
            herald::domain::challenge::random_hex(6)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self(dir))
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).expect("a filler file");
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn subscribe(client: &reqwest::Client, port: u16, callback: &str) -> Option<StatusCode> {
    let pairs = [
        ("hub.mode", "subscribe"),
        ("hub.topic", "http://127.0.0.1:9/full-disk"),
        ("hub.callback", callback),
    ];
    post_hub(client, port, &pairs).await
}

/// The disk under the database and the log fills up: every request gets an answer (503 for
/// what cannot be stored, never a dropped connection), every 202 is verified, and once there
/// is room again the hub takes requests as before. (Before: the log library's report of its
/// own failed write panicked, dropping 43 of 50 requests; and SQLite's own rollback of the
/// failed write left the one connection refusing every later transaction, for ever.)
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_clearly_loses_nothing_accepted_and_recovers() {
    if Backend::from_env() != Backend::Sqlite {
        return;
    }
    let disk = match SmallDisk::mount("4m") {
        Ok(disk) => disk,
        Err(reason) => {
            eprintln!("skipped: no tmpfs can be mounted here ({reason})");
            return;
        }
    };
    let sub = Subscriber::spawn();
    let database_url = format!("sqlite://{}", disk.0.join("herald.db").display());
    let (_, port) = loopback_listener();
    let vars = vec![
        ("HERALD_ALLOW_PRIVATE_ADDRESSES", "true".to_owned()),
        ("HERALD_QUEUE_POLL", "100ms".to_owned()),
        ("RUST_LOG", "debug".to_owned()),
    ];
    let _hub =
        HubProcess::start_logging(&database_url, port, &vars, Some(&disk.0.join("herald.log")));
    herald::outbound::install_crypto_provider();
    // A request the hub dropped or left hanging counts as unanswered.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("a client");
    eventually("the hub to listen", || async {
        subscribe(&client, port, &sub.callback("warm-up"))
            .await
            .map(|_| ())
    })
    .await;
    let filler = disk.fill();

    let mut accepted = vec![sub.callback("warm-up")];
    let mut answers = Vec::new();
    for n in 0..30 {
        let callback = sub.callback(&format!("full-{n}"));
        let status = subscribe(&client, port, &callback).await;
        if status == Some(StatusCode::ACCEPTED) {
            accepted.push(callback);
        }
        answers.push(status);
    }
    assert!(
        answers.iter().all(|s| matches!(
            s,
            Some(StatusCode::ACCEPTED | StatusCode::SERVICE_UNAVAILABLE)
        )),
        "every request answered, 202 or 503: {answers:?}"
    );
    assert!(
        answers.contains(&Some(StatusCode::SERVICE_UNAVAILABLE)),
        "the full disk was noticed: {answers:?}"
    );

    std::fs::remove_file(&filler).expect("room again");
    for n in 0..10 {
        let callback = sub.callback(&format!("after-{n}"));
        assert_eq!(
            subscribe(&client, port, &callback).await,
            Some(StatusCode::ACCEPTED),
            "with room again, requests are taken"
        );
        accepted.push(callback);
    }
    for callback in &accepted {
        let name = callback.rsplit('/').next().expect("a name");
        sub.wait_verifications(name, 1).await;
    }
    let db = herald::store::Db::connect(&database_url)
        .await
        .expect("the database opens");
    let herald::store::Db::Sqlite(pool) = &db else {
        unreachable!("a SQLite URL");
    };
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(pool)
        .await
        .expect("integrity check");
    assert_eq!(check, "ok");
}

async fn health(client: &reqwest::Client, port: u16) -> (StatusCode, serde_json::Value) {
    let response = client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .expect("the hub answers");
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

/// The database file deleted under the running hub (SQLite would go on writing to the deleted
/// file, lost at the next start): `/health` says so with 503, and is well again when the file
/// is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_file_deleted_under_the_hub_is_reported() {
    if Backend::from_env() != Backend::Sqlite {
        return;
    }
    let app = crate::helpers::TestApp::spawn().await;
    let path = PathBuf::from(
        app.database_url
            .strip_prefix("sqlite://")
            .expect("a SQLite URL"),
    );
    assert_eq!(health(&app.client, app.port).await.0, StatusCode::OK);
    let aside = path.with_extension("aside");
    std::fs::rename(&path, &aside).expect("moved away");
    let (status, body) = health(&app.client, app.port).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("deleted while the hub ran")),
        "{body}"
    );
    std::fs::rename(&aside, &path).expect("put back");
    assert_eq!(health(&app.client, app.port).await.0, StatusCode::OK);
}

/// The database on a read-only file system at start: `herald serve` stops at once and says
/// which file and why (SQLite alone says "unable to open database file").
#[tokio::test(flavor = "multi_thread")]
async fn a_database_on_a_read_only_disk_is_refused_with_the_reason() {
    if Backend::from_env() != Backend::Sqlite {
        return;
    }
    let disk = match SmallDisk::mount("16m") {
        Ok(disk) => disk,
        Err(reason) => {
            eprintln!("skipped: no tmpfs can be mounted here ({reason})");
            return;
        }
    };
    let file = disk.0.join("herald.db");
    let database_url = format!("sqlite://{}", file.display());
    let herald = |command: &str| {
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg(command)
            .env("HERALD_DATABASE_URL", &database_url)
            .env("HERALD_LISTEN", "127.0.0.1:0")
            .output()
            .expect("herald runs")
    };
    assert!(herald("migrate").status.success());
    let status = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&disk.0)
        .status()
        .expect("mount");
    assert!(status.success(), "remount read-only");
    let out = herald("serve");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&file.display().to_string()) && said.contains("Read-only file system"),
        "{said}"
    );
}
