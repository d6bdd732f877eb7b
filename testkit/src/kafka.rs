//! Starts kafka for tests (to be written).
