//! The controller: configuration, wiring and admin view.

pub mod config;
