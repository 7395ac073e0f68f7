//! The command-line clients: `podgate weights` / `podgate migrate` and `podgate proxy` as processes.

mod proxy;
mod weights;
