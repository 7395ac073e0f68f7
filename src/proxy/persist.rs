//! The proxy's state file (`state_file:` in `proxy.yaml`): what it holds, written after
//! every accepted batch and read at start, so a restarted proxy serves its last state at
//! once instead of 404 until a controller pushes again.
//!
//! Owns: the file's format (one batch per owner, replayed through `Store::apply` at
//! start, so a restored state passes every check a pushed one does), the atomic write
//! (temporary file, fsync, rename, fsync of the directory; mode 0600: it holds TLS
//! keys) and the writer task that coalesces batches. Must never block a request or a
//! batch: the writer runs on a blocking thread and writes the latest state once for
//! any number of batches that arrived meanwhile.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::metrics::Metrics;
use super::state::Store;
use podgate_core::model::Batch;

/// The version of the file's format; a file of another version is refused.
const FORMAT: u32 = 1;

/// What the file holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Saved {
    format: u32,
    /// The live state's generation when it was written.
    pub(crate) generation: u64,
    /// Whether it was a full state (see `Batch::complete`).
    pub(crate) complete: bool,
    /// Everything each owner registered (routes, upstreams, certificates, epoch).
    pub(crate) owners: Vec<Batch>,
}

impl Saved {
    pub(crate) fn new(generation: u64, complete: bool, owners: Vec<Batch>) -> Self {
        Self {
            format: FORMAT,
            generation,
            complete,
            owners,
        }
    }
}

/// Why a state file could not be used. The proxy starts empty then.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PersistError {
    #[error("state_file {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state_file {path}: not a podgate state file: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("state_file {path}: format {got}, this proxy reads format {FORMAT}")]
    Format { path: PathBuf, got: u32 },
    #[error("state_file {path}: refused: {reason}")]
    Refused { path: PathBuf, reason: String },
}

/// Reads `path`; `Ok(None)` when there is no file yet (a first start).
pub(crate) fn read(path: &Path) -> Result<Option<Saved>, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| PersistError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if saved.format != FORMAT {
        return Err(PersistError::Format {
            path: path.to_owned(),
            got: saved.format,
        });
    }
    Ok(Some(saved))
}

/// Restores `path` into `store` (fresh, before serving). Returns whether a state was
/// restored; a file that cannot be used is reported and leaves the store empty.
pub(crate) fn restore(store: &Store, path: &Path) -> Result<bool, PersistError> {
    let Some(saved) = read(path)? else {
        return Ok(false);
    };
    store
        .restore(saved)
        .map_err(|reason| PersistError::Refused {
            path: path.to_owned(),
            reason: reason.to_string(),
        })?;
    Ok(true)
}

/// Writes `saved` to `path` atomically: a reader (or a crash) sees the old file or the
/// new one, never a part.
pub(crate) fn write(path: &Path, saved: &Saved) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".podgate-state.")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)?;
    {
        let mut out = std::io::BufWriter::new(tmp.as_file_mut());
        serde_json::to_writer(&mut out, saved)?;
        out.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory is.
    std::fs::File::open(dir)?.sync_all()
}

/// Writes the store's state to `path` after every change until `shutdown`, at most
/// once per `interval` (measured from the start of the previous write): batches that
/// arrive meanwhile are covered by the next write. A failed write is retried every
/// second until one succeeds. At `shutdown`, a change not yet written is written. Once
/// `allowed` is cleared (a successor took over) it writes nothing more.
pub(crate) fn spawn_writer(
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    path: PathBuf,
    interval: std::time::Duration,
    allowed: Arc<std::sync::atomic::AtomicBool>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut written = store.load().generation;
        let mut last_write: Option<tokio::time::Instant> = None;
        let mut stopping = false;
        let mut changes = store.follow();
        loop {
            let generation = store.load().generation;
            if generation == written {
                if stopping {
                    return;
                }
                tokio::select! {
                    _ = changes.changed() => continue,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
            if let Some(at) = last_write
                && !stopping
            {
                tokio::select! {
                    () = tokio::time::sleep_until(at + interval) => {}
                    _ = shutdown.wait_for(|stop| *stop) => stopping = true,
                }
            }
            if !allowed.load(std::sync::atomic::Ordering::Relaxed) {
                return; // handed over: the file is the successor's
            }
            last_write = Some(tokio::time::Instant::now());
            let generation = store.load().generation;
            let result = save(Arc::clone(&store), path.clone(), Some(Arc::clone(&allowed))).await;
            match result {
                Ok(()) => {
                    written = generation;
                    metrics.state_file_write("ok");
                }
                Err(e) => {
                    metrics.state_file_write("error");
                    crate::logging::warn_limited!(
                        path = %path.display(),
                        error = %e,
                        "cannot write the state file: a restart would start from an older state"
                    );
                    if stopping {
                        return;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => {}
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    }
                }
            }
        }
    })
}

/// Writes the store's current state to `path` off the runtime's threads. Writers take
/// turns, each with the state as it is when its turn comes, so a slower writer never
/// replaces a newer file with an older state.
/// With `allowed`, nothing is written once it is cleared, checked in the writer's turn:
/// a write still waiting when a successor takes over never lands.
pub(crate) async fn save(
    store: Arc<Store>,
    path: PathBuf,
    allowed: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> std::io::Result<()> {
    static TURN: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    tokio::task::spawn_blocking(move || {
        let _turn = TURN.lock();
        if allowed.is_some_and(|a| !a.load(std::sync::atomic::Ordering::Relaxed)) {
            return Ok(());
        }
        write(&path, &store.saved())
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// How long after a failed write the next is tried.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(read(&path).unwrap().is_none(), "no file: a first start");
        for generation in [1, 2] {
            let owners = vec![Batch {
                epoch: generation,
                ..Batch::default()
            }];
            write(&path, &Saved::new(generation, true, owners)).unwrap();
            let back = read(&path).unwrap().unwrap();
            assert_eq!(
                (back.generation, back.owners[0].epoch),
                (generation, generation)
            );
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn an_unreadable_file_names_itself_and_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{\"format\": 1, \"generation\": 1, \"extra\": 1}").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("state.json") && err.contains("extra"), "{err}");
    }
}
