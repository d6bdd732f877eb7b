//! Job's configuration: plain data with safe defaults, passed in by the
//! binary (or built directly by tests), never read from the environment here.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a job consumes the queue and delivers to comets.
///
/// Every field has a default, so an empty config section is a working job.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct JobConfig {
    /// This job's name in logs and traces. Default: `job-` and a short random
    /// suffix.
    pub id: String,
    /// The consumer group every job of the cluster joins. Default
    /// `courier-job`.
    pub group: String,
    /// Most room messages sent in one `PushRoom` call. Default 32.
    pub room_batch_max: usize,
    /// Most message bytes sent in one `PushRoom` call (default 1 MiB, a
    /// quarter of gRPC's message limit).
    pub room_batch_bytes: usize,
    /// Longest time the first message of a room batch waits for others before
    /// the batch is sent. Default 5 ms.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub room_batch_wait: Duration,
    /// Capacity of each comet worker's ordered queue. When it is full the
    /// consumer waits (backpressure), it never grows memory. Default 1024.
    pub comet_queue: usize,
    /// Longest wait for room in a comet's full queue. Past it the comet is
    /// behind: its pushes are skipped (left to the inbox) without waiting
    /// until its queue drains to half, so a stuck comet stalls no other.
    /// Default 200 ms.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub comet_queue_wait: Duration,
    /// Time limit of one RPC attempt to a comet. Also bounds how long shutdown
    /// waits for queued pushes to finish. Default 5 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub push_timeout: Duration,
    /// Deliveries consumed but not yet committed before the job stops pulling
    /// from the queue. Default 10 000.
    pub max_in_flight: usize,
    /// Where `/metrics`, `/healthz` and `/readyz` are served. Default
    /// `127.0.0.1:3121`; port 0 picks one; `None` (`""` in a config file)
    /// serves none of them.
    #[serde(with = "courier_runtime::net::optional_addr")]
    #[schemars(with = "Option<String>")]
    pub admin_addr: Option<SocketAddr>,
    /// The secret every call between Courier's services carries: comets
    /// refuse pushes without it. Required.
    pub cluster_secret: String,
    /// TLS of the calls to comets: `ca` verifies them. Empty: plaintext.
    /// (Job serves no TLS listener: its admin listener stays plain.)
    pub tls: courier_runtime::TlsConfig,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            id: format!("job-{:08x}", rand::random::<u32>()),
            group: "courier-job".to_owned(),
            room_batch_max: 32,
            room_batch_bytes: 1024 * 1024,
            room_batch_wait: Duration::from_millis(5),
            comet_queue: 1024,
            comet_queue_wait: Duration::from_millis(200),
            push_timeout: Duration::from_secs(5),
            max_in_flight: 10_000,
            admin_addr: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 3121))),
            cluster_secret: String::new(),
            tls: courier_runtime::TlsConfig::default(),
        }
    }
}

impl JobConfig {
    /// Checks the values the job cannot start without: the cluster secret
    /// and the TLS files (what [`crate::Job::bind`] checks too).
    pub fn validate(&self) -> Result<(), String> {
        courier_runtime::ClusterSecret::new(&self.cluster_secret)
            .map_err(|e| format!("cluster_secret: {e}"))?;
        self.tls.validate().map_err(|e| format!("tls: {e}"))?;
        if self.group.is_empty() {
            return Err("group must not be empty".into());
        }
        Ok(())
    }

    /// The config with every zero limit raised to 1, so a careless value
    /// degrades throughput instead of deadlocking (a zero-capacity queue or a
    /// zero-permit semaphore would never move).
    pub(crate) fn sanitized(mut self) -> Self {
        self.room_batch_max = self.room_batch_max.max(1);
        self.comet_queue = self.comet_queue.max(1);
        self.max_in_flight = self.max_in_flight.max(1);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_json_is_the_default_and_durations_are_human() {
        let c: JobConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c.group, "courier-job");
        assert!(c.id.starts_with("job-"));
        assert_eq!(c.room_batch_max, 32);
        assert_eq!(c.room_batch_wait, Duration::from_millis(5));
        assert_eq!(c.admin_addr.map(|a| a.port()), Some(3121));
        let c: JobConfig =
            serde_json::from_str(r#"{"push_timeout":"250ms","room_batch_wait":"1s"}"#).unwrap();
        assert_eq!(c.push_timeout, Duration::from_millis(250));
        assert_eq!(c.room_batch_wait, Duration::from_secs(1));
        let c: JobConfig = serde_json::from_str(r#"{"admin_addr":""}"#).unwrap();
        assert_eq!(c.admin_addr, None);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<JobConfig>(r#"{"grup":"x"}"#).is_err());
    }

    #[test]
    fn zero_limits_are_raised() {
        let c = JobConfig {
            room_batch_max: 0,
            comet_queue: 0,
            max_in_flight: 0,
            ..JobConfig::default()
        }
        .sanitized();
        assert_eq!(
            (c.room_batch_max, c.comet_queue, c.max_in_flight),
            (1, 1, 1)
        );
    }
}
