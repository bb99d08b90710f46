//! A PostgreSQL server of the test's own (`initdb` and `pg_ctl` into a temporary directory, on
//! a free loopback port), for what the shared server must not suffer: being crashed and
//! started again.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

impl PgCluster {
    /// A new cluster, running; `Err` with the reason when PostgreSQL's server programs are not
    /// installed here.
    pub fn start() -> Result<Self, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no /usr/lib/postgresql: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
            .ok_or("no initdb and pg_ctl under /usr/lib/postgresql/*/bin")?;
        let dir = std::env::temp_dir().join(format!(
            "herald-pg-{}",
            herald::domain::challenge::random_hex(6)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (_, port) = super::loopback_listener();
        let cluster = Self { dir, bin, port };
        if is_root() {
            // initdb refuses to run as root: the cluster belongs to the postgres user.
            cluster.must(Command::new("chown").arg("postgres:").arg(&cluster.dir));
        }
        let data = cluster.data();
        cluster.must(
            cluster
                .as_owner("initdb")
                .args(["-A", "trust", "-U", "postgres", "-N", "-D"])
                .arg(&data),
        );
        cluster.resume();
        Ok(cluster)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server as a crash would (`-m immediate`: no checkpoint, clients cut off).
    pub fn crash(&self) {
        self.must(
            self.as_owner("pg_ctl")
                .args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(self.data()),
        );
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        self.must(
            self.as_owner("pg_ctl")
                .args(["start", "-w", "-l"])
                .arg(self.dir.join("server.log"))
                .arg("-o")
                .arg(options)
                .arg("-D")
                .arg(self.data()),
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_owner(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    fn must(&self, cmd: &mut Command) {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            read(&self.dir.join("server.log"))
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .as_owner("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
