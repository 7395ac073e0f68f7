//! The command-line clients: `podgate weights` / `podgate migrate` and `podgate proxy` as processes.

mod conventions;
mod proxy;
mod weights;
