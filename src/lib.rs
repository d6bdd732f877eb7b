//! Courier: a distributed IM push system. This package is the `courier`
//! binary and the embedded [`System`] that `courier up` and the end-to-end
//! tests run.

pub mod admin_cli;
pub mod config;
pub mod config_cli;
pub mod store_cli;
pub mod system;
pub mod telemetry;

pub use config::CourierConfig;
pub use system::System;
