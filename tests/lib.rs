//! End-to-end tests live in this package's test targets (`http.rs`, ...);
//! the library is empty. Shared helpers are in `strait-test-support`.
