//! A real program a test drives, found on `PATH`: missing, the test is skipped loudly —
//! and fails with `CI=true`, where CI installs everything. Included by the test binaries
//! that need it (`#[path]`), so there is one copy.

use std::path::PathBuf;

/// `name` on `PATH`, or `None` after saying loudly that the test is skipped (a failure
/// with `CI=true`). `install` says how to get it.
pub(crate) fn tool(name: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let message = format!(
            "!!!!!!!! `{name}` is not installed: this test is SKIPPED. Install it with {install}. !!!!!!!!"
        );
        assert!(
            std::env::var("CI").is_err(),
            "{message}\n(CI=true: missing programs are a failure)"
        );
        eprintln!("{message}");
    }
    found
}
