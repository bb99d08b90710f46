//! The real `herald` binary as a child process, for what only a real process shows: SIGKILL
//! and SIGTERM.

use std::process::{Child, Command, Stdio};

pub struct HubProcess {
    child: Child,
}

impl HubProcess {
    /// Starts `herald serve` with `vars` (and the database URL and listen address given).
    pub fn start(database_url: &str, port: u16, vars: &[(&str, String)]) -> Self {
        Self::start_logging(database_url, port, vars, None)
    }

    /// As [`HubProcess::start`], writing the hub's log (standard error) to `log`.
    pub fn start_logging(
        database_url: &str,
        port: u16,
        vars: &[(&str, String)],
        log: Option<&std::path::Path>,
    ) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.arg("serve")
            .env("HERALD_DATABASE_URL", database_url)
            .env("HERALD_LISTEN", format!("127.0.0.1:{port}"));
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(match log {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
                None => Stdio::null(),
            })
            .spawn()
            .expect("herald starts");
        Self { child }
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then waits for the process to exit by itself.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        self.child.wait().expect("exits")
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs a form to the hub URL of the process on `port`; its status, or `None` when the
/// connection failed (not listening yet, or dropped).
pub async fn post_hub(
    client: &reqwest::Client,
    port: u16,
    pairs: &[(&str, &str)],
) -> Option<reqwest::StatusCode> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let response = client
        .post(format!("http://127.0.0.1:{port}/hub"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .ok()?;
    Some(response.status())
}
