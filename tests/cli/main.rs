//! The command-line clients: `podgate weights` / `podgate migrate` and `podgate proxy` as processes.

mod conventions;
mod inspect;
mod proxy;
mod weights;

/// The `podgate` binary under test.
pub(crate) fn podgate_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_podgate"))
}
