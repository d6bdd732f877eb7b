//! Starts etcd for tests (to be written).
