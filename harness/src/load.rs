//! Finding suites on disk.
