//! The whole configuration of one `courier` process, as one TOML document.
//!
//! Precedence, lowest first: built-in defaults, the `--config` TOML file,
//! `COURIER_*` environment variables (`__` between levels, e.g.
//! `COURIER_COMET__TCP_ADDR=0.0.0.0:3101`). The only flag that sets a value
//! is `courier up --api-key` (variable `COURIER_API_KEY`, kept out of the
//! settings). Every section is optional; `courier config defaults` prints
//! every key with its doc (`deploy/config/courier.toml` is that output).

use std::path::Path;

use courier_cluster::ClusterConfig;
use courier_comet::CometConfig;
use courier_job::JobConfig;
use courier_logic::LogicConfig;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Secrets shared by several services.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret logic signs login tokens with and comets verify them
    /// with. `courier up` generates one when empty.
    pub jwt_secret: String,
    /// Bearer key of the push and admin HTTP routes. `courier up` generates
    /// one when empty.
    pub api_key: String,
    /// The secret every gRPC call between the services carries (comets,
    /// logics and jobs of one cluster share it). `courier up` generates one
    /// when empty.
    pub cluster_secret: String,
}

/// How log lines are written (to standard error).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One human-readable line per event, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`,
    /// `spans`), for a log collector.
    Json,
}

/// What is logged and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter (e.g. `info` or `info,courier_comet=debug`);
    /// `RUST_LOG` overrides it.
    pub filter: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `[log]` as a table, or as the filter alone (`log = "debug"`, the form
/// before there was a format to choose).
fn log_config<'de, D: serde::Deserializer<'de>>(d: D) -> Result<LogConfig, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Filter(String),
        Table(LogConfig),
    }
    Ok(match Either::deserialize(d)? {
        Either::Filter(filter) => LogConfig {
            filter,
            ..LogConfig::default()
        },
        Either::Table(config) => config,
    })
}

/// Everything one `courier` process may run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CourierConfig {
    /// What is logged and how. `log = "debug"` (the filter alone) is
    /// accepted too.
    #[serde(deserialize_with = "log_config")]
    pub log: LogConfig,
    pub auth: AuthConfig,
    /// TLS files shared by every service of the process (see
    /// docs/security.md); a service's own `tls` section wins.
    pub tls: courier_runtime::TlsConfig,
    pub cluster: ClusterConfig,
    pub comet: CometConfig,
    pub logic: LogicConfig,
    pub job: JobConfig,
}

/// The `COURIER_` variables that are flags of the command line (clap reads
/// them), not settings: `COURIER_API_KEY` is `courier up --api-key`.
const FLAG_VARIABLES: &[&str] = &["api_key"];

/// Settings from `COURIER_<SECTION>__<KEY>` variables.
fn environment() -> Env {
    Env::prefixed("COURIER_").ignore(FLAG_VARIABLES).split("__")
}

impl CourierConfig {
    /// Defaults, then `file`, then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment.merge(environment()).extract().map_err(explain)
    }

    /// Fills every empty `[auth]` secret with a random one, as `courier up`
    /// does: one process needs no configured secret.
    pub fn generate_missing_secrets(&mut self) {
        for secret in [
            &mut self.auth.jwt_secret,
            &mut self.auth.api_key,
            &mut self.auth.cluster_secret,
        ] {
            if secret.is_empty() {
                *secret = generate_secret();
            }
        }
    }

    /// Copies the shared `[auth]` secrets and `[tls]` files into every
    /// service section that does not set its own.
    pub fn share_secrets(&mut self) {
        if self.comet.jwt_secret.is_empty() {
            self.comet.jwt_secret = self.auth.jwt_secret.clone();
        }
        if self.logic.jwt_secret.is_empty() {
            self.logic.jwt_secret = self.auth.jwt_secret.clone();
        }
        if self.logic.api_key.is_empty() {
            self.logic.api_key = self.auth.api_key.clone();
        }
        for tls in [&mut self.comet.tls, &mut self.logic.tls, &mut self.job.tls] {
            if *tls == courier_runtime::TlsConfig::default() {
                tls.clone_from(&self.tls);
            }
        }
        for secret in [
            &mut self.comet.cluster_secret,
            &mut self.logic.cluster_secret,
            &mut self.job.cluster_secret,
        ] {
            if secret.is_empty() {
                secret.clone_from(&self.auth.cluster_secret);
            }
        }
    }
}

/// figment's errors as one line each: the key at fault first, then what
/// is wrong with it and where the value came from.
fn explain(error: figment::Error) -> anyhow::Error {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(source) => format!(" (in {source})"),
                    None => format!(" (in {})", m.name),
                })
                .unwrap_or_default();
            if e.path.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("{}: {}{source}", e.path.join("."), e.kind)
            }
        })
        .collect();
    anyhow::anyhow!(lines.join("\n"))
}

/// A random secret of 32 hex digits.
pub fn generate_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The closure's error type is figment's, not ours.
    #[allow(clippy::result_large_err)]
    fn log_is_a_table_or_the_filter_alone() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("old.toml", "log = \"debug\"\n")?;
            jail.create_file("new.toml", "[log]\nformat = \"json\"\n")?;
            let old =
                CourierConfig::load(Some(Path::new("old.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(old.log.filter, "debug");
            assert_eq!(old.log.format, LogFormat::Text);
            let new =
                CourierConfig::load(Some(Path::new("new.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(new.log.filter, "info");
            assert_eq!(new.log.format, LogFormat::Json);
            jail.set_env("COURIER_LOG__FORMAT", "json");
            let env = CourierConfig::load(None).map_err(|e| e.to_string())?;
            assert_eq!(env.log.format, LogFormat::Json);
            Ok(())
        });
    }

    #[test]
    // The closure's error type is figment's, not ours.
    #[allow(clippy::result_large_err)]
    fn a_flag_variable_is_not_taken_for_a_setting() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("COURIER_API_KEY", "from-the-flag");
            jail.set_env("COURIER_LOGIC__USER_READS_PER_MINUTE", "7");
            let config = CourierConfig::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.logic.user_reads_per_minute, 7);
            assert!(config.auth.api_key.is_empty(), "a flag, not [auth]");
            Ok(())
        });
    }
}
