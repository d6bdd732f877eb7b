//! courier-client (to be written).
