//! Strait's routing engine (placeholder while being written).
