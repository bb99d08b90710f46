//! Records which commit the binary was built from (`HERALD_COMMIT`, read by src/build_info.rs):
//! a builder may set it (a source tarball has no `.git`), else `git` is asked, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HERALD_COMMIT");
    let commit = std::env::var("HERALD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=HERALD_COMMIT={}", commit.trim());
}

fn git_commit() -> Option<String> {
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it names (a commit).
    let git_dir = run(&["rev-parse", "--git-dir"])?;
    println!("cargo:rerun-if-changed={git_dir}/HEAD");
    if let Some(branch) = run(&["symbolic-ref", "-q", "HEAD"]) {
        println!("cargo:rerun-if-changed={git_dir}/{branch}");
    }
    println!("cargo:rerun-if-changed={git_dir}/packed-refs");
    run(&["rev-parse", "--short=12", "HEAD"])
}

fn run(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}
