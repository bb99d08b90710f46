//! Records which commit the binary was built from (`HERALD_COMMIT`, read by src/build_info.rs):
//! a builder may set it (a source tarball has no `.git`), else `git` is asked, else "unknown".
//! Also makes a change of `migrations/` rebuild the crate, which embeds them.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HERALD_COMMIT");
    // `sqlx::migrate!` reads the migrations when the crate compiles; a new or changed migration
    // must recompile it.
    println!("cargo:rerun-if-changed=migrations");
    let commit = std::env::var("HERALD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=HERALD_COMMIT={}", commit.trim());
}

fn git_commit() -> Option<String> {
    // Rebuild when HEAD moves: HEAD itself (a checkout), the branches' loose refs (a commit
    // writes or creates one; a directory is watched whole) and packed-refs. Only paths that
    // exist are named: cargo reruns a build script on every build for a missing one (a new
    // repository has no packed-refs).
    let git_dir = run(&["rev-parse", "--git-dir"])?;
    let watched = [
        format!("{git_dir}/HEAD"),
        format!("{git_dir}/refs/heads"),
        format!("{git_dir}/packed-refs"),
    ];
    for path in watched {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    run(&["rev-parse", "--short=12", "HEAD"])
}

fn run(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}
