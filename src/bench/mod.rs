//! `courier bench`: load generators whose numbers go in the README.

mod e2e;

pub use e2e::{e2e, E2eArgs};
