//! courier-comet (to be written).
