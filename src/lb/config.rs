//! Target configuration (in progress).
