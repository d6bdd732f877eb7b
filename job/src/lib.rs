//! courier-job (to be written).
