//! The SQLite file under a running hub. SQLite keeps writing to a file deleted (or replaced)
//! under it: everything written from then on is gone when the process stops, silently. So the
//! file's identity (device and inode) is taken when the hub opens it, and compared again by the
//! heartbeat (`crate::upkeep::liveness`, which logs an error) and by `/health` (which answers
//! 503 with the reason).

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// A SQLite database file as it was when the hub opened it.
#[derive(Debug, Clone)]
pub struct DatabaseFile {
    path: PathBuf,
    identity: (u64, u64),
}

/// What became of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FileProblem {
    #[error(
        "the database file was deleted while the hub ran: what it writes now is lost when it stops; restore the file and restart"
    )]
    Deleted,
    #[error(
        "the database file was replaced while the hub ran: the hub still writes to the old one; restart it to use the new one"
    )]
    Replaced,
}

impl DatabaseFile {
    /// The file a `sqlite://` URL names, as it is now; `None` for another database, or an
    /// in-memory one.
    pub fn of(url: &str) -> Option<Self> {
        let path = Self::path_of(url)?;
        let identity = identity(&path)?;
        Some(Self { path, identity })
    }

    /// The path a `sqlite://` URL names (`None`: another database, or an in-memory one).
    pub fn path_of(url: &str) -> Option<PathBuf> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest
            .split('?')
            .next()
            .filter(|p| !p.is_empty() && *p != ":memory:")?;
        Some(PathBuf::from(path))
    }

    /// What is wrong with the file now, if anything.
    pub fn problem(&self) -> Option<FileProblem> {
        match identity(&self.path) {
            None => Some(FileProblem::Deleted),
            Some(now) if now != self.identity => Some(FileProblem::Replaced),
            Some(_) => None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_or_replaced_file_is_noticed() {
        let dir = std::env::temp_dir().join(format!("herald-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hub.db");
        std::fs::write(&path, b"x").unwrap();
        let file = DatabaseFile::of(&format!("sqlite://{}?mode=rwc", path.display())).unwrap();
        assert_eq!(file.problem(), None);
        let moved = dir.join("moved.db");
        std::fs::rename(&path, &moved).unwrap();
        assert_eq!(file.problem(), Some(FileProblem::Deleted));
        std::fs::write(&path, b"y").unwrap();
        assert_eq!(file.problem(), Some(FileProblem::Replaced));
        assert!(DatabaseFile::of("postgres://localhost/herald").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
