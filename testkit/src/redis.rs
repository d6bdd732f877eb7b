//! Starts redis for tests (to be written).
