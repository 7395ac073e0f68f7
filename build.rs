//! Stamps the binary with the git commit and the build date for `podgate --version`
//! (`PODGATE_GIT_COMMIT`, `PODGATE_BUILD_DATE`; either may be given from outside, e.g.
//! by a packager building from a tarball without `.git`).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PODGATE_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=PODGATE_BUILD_DATE");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // A new commit or checkout moves HEAD or the branch it names (asked of git, so
    // that worktrees, whose `.git` is a file, are followed too).
    let git_path = |path: &str| {
        let out = Command::new("git")
            .args(["rev-parse", "--git-path", path])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let mut watched: Vec<String> = ["HEAD", "packed-refs"]
        .iter()
        .filter_map(|p| git_path(p))
        .collect();
    if let Some(head) = watched.first()
        && let Ok(text) = std::fs::read_to_string(head)
        && let Some(branch) = text.trim().strip_prefix("ref: ")
        && let Some(path) = git_path(branch)
    {
        watched.push(path);
    }
    for path in watched {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("PODGATE_GIT_COMMIT").ok().or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    let date = std::env::var("PODGATE_BUILD_DATE").ok().or_else(|| {
        let mut date = Command::new("date");
        date.args(["-u", "+%Y-%m-%d"]);
        if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
            date.arg(format!("--date=@{epoch}"));
        }
        let out = date.output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    println!(
        "cargo:rustc-env=PODGATE_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!(
        "cargo:rustc-env=PODGATE_BUILD_DATE={}",
        date.as_deref().unwrap_or("unknown")
    );
}
