//! courier-logic (to be written).
