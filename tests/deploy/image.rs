//! The container image: deploy/image/build.sh builds it with buildah from the release
//! binary (`PODGATE_IMAGE_BIN`, which `.ci/run` builds; else this test's own binary),
//! and `podgate --version` runs inside it (podman where it can start containers, else
//! a chroot into the image's filesystem), as a non-root user, with no debug info.

use std::process::Command;

use super::{output, root, text, tool};

#[test]
fn the_image_builds_from_scratch_and_runs_podgate_version_as_non_root() {
    let Some(buildah) = tool("buildah", "`apt-get install -y buildah podman`") else {
        return;
    };
    let Some(readelf) = tool("readelf", "`apt-get install -y binutils`") else {
        return;
    };
    let binary = std::env::var("PODGATE_IMAGE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_podgate").to_owned());
    let tag = format!("localhost/podgate:test-{}", std::process::id());
    let storage = std::env::var("BUILDAH_STORAGE").unwrap_or_else(|_| "vfs".to_owned());
    let built = output(
        Command::new(root().join("deploy/image/build.sh"))
            .arg(&tag)
            .env("PODGATE_BIN", &binary)
            .env("BUILDAH_STORAGE", &storage),
    );
    assert!(built.status.success(), "{}", text(&built.stderr));

    let ran = output(
        Command::new(root().join("deploy/image/run-version.sh"))
            .arg(&tag)
            .env("BUILDAH_STORAGE", &storage),
    );
    let (stdout, stderr) = (text(&ran.stdout), text(&ran.stderr));
    eprintln!("{stderr}");
    assert!(ran.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("podgate {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );

    let user = output(Command::new(&buildah).args([
        "--storage-driver",
        &storage,
        "inspect",
        "--format",
        "{{.OCIv1.Config.User}}",
        &tag,
    ]));
    assert_eq!(text(&user.stdout).trim(), "65532:65532");

    // No debug sections in the binary the image holds.
    let container = text(
        &output(Command::new(&buildah).args(["--storage-driver", &storage, "from", &tag])).stdout,
    )
    .trim()
    .to_owned();
    let mount = text(
        &output(Command::new(&buildah).args(["--storage-driver", &storage, "mount", &container]))
            .stdout,
    )
    .trim()
    .to_owned();
    let sections = output(
        Command::new(&readelf)
            .args(["-S", "-W"])
            .arg(format!("{mount}/usr/local/bin/podgate")),
    );
    let files: Vec<String> = walk(std::path::Path::new(&mount));
    output(Command::new(&buildah).args(["--storage-driver", &storage, "rm", &container]));
    output(Command::new(&buildah).args(["--storage-driver", &storage, "rmi", &tag]));
    assert!(sections.status.success(), "{}", text(&sections.stderr));
    let sections = text(&sections.stdout);
    assert!(sections.contains(".text"), "{sections}");
    // (`.debug_gdb_scripts` only names GDB's pretty printers; it is not debug info.)
    for debug_info in [".debug_info", ".debug_line", ".debug_str", ".debug_abbrev"] {
        assert!(
            !sections.contains(debug_info),
            "debug info in the image: {sections}"
        );
    }
    // Nothing but the binary, its libraries, users and trust roots.
    assert!(
        files.iter().all(|f| f.starts_with("/usr/local/bin/podgate")
            || f.starts_with("/lib")
            || f.starts_with("/etc/")),
        "{files:?}"
    );
}

/// Every file under `dir`, as a path inside it.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path.strip_prefix(dir).map_or_else(
                    |_| path.display().to_string(),
                    |p| format!("/{}", p.display()),
                ));
            }
        }
    }
    files
}
