//! Caddy adapter (in progress).
