//! Courier in one process: logic, comets and job on shared backends.
//!
//! `courier up` runs this on the embedded `memory://` backends, and the
//! end-to-end tests run it on port 0 (and on real backends). It is the same
//! code the standalone services run: each service's `bind` + `run`, wired
//! together only through the backends, discovery and gRPC on loopback.
//!
//! Every comet and job also serves its admin endpoints (`/metrics`,
//! `/healthz`, `/readyz`) on its own listener; logic serves them on its
//! HTTP API. Extra comets and jobs shift every configured non-zero port by
//! 100·n, so the n-th of each gets the ports of a local cluster's n-th
//! process (comet 3101/3109/3103 -> 3201/3209/3203, job admin 3121 -> 3221).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use courier_cluster::{Backends, Discovery, Queue};
use courier_comet::{Comet, CometConfig, CometDeps, CometError};
use courier_job::{Job, JobConfig, JobDeps, JobError};
use courier_logic::{Logic, LogicConfig, LogicError};
use courier_runtime::shutdown::CancellationToken;
use tokio::task::JoinHandle;

use crate::config::CourierConfig;

/// Addresses of one running comet.
#[derive(Debug, Clone)]
pub struct CometInfo {
    pub id: String,
    pub tcp: SocketAddr,
    /// WebSocket clients connect to `ws://{ws}/ws`; `None` when disabled.
    pub ws: Option<SocketAddr>,
    pub grpc: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`; `None` when disabled.
    pub admin: Option<SocketAddr>,
}

/// Addresses of one running job.
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub id: String,
    /// `/metrics`, `/healthz`, `/readyz`; `None` when disabled.
    pub admin: Option<SocketAddr>,
}

/// A running embedded system.
#[derive(Debug)]
pub struct System {
    pub config: CourierConfig,
    pub backends: Backends,
    pub logic_http: SocketAddr,
    pub logic_grpc: SocketAddr,
    /// Logic's `/metrics`, `/healthz`, `/readyz`; `None` when disabled.
    pub logic_admin: Option<SocketAddr>,
    pub comets: Vec<CometInfo>,
    /// Every job started so far, in order.
    pub jobs: Vec<JobInfo>,
    comet_tasks: Vec<(CancellationToken, JoinHandle<()>)>,
    job_tasks: Vec<(CancellationToken, JoinHandle<()>)>,
    logic_task: (CancellationToken, JoinHandle<()>),
}

impl System {
    /// Starts logic, `comets` comets and one job on `config`. Empty secrets
    /// are generated. The `comet` section is the template of every comet;
    /// the n-th comet (n > 0) gets id `{id}-{n}` and, when the configured
    /// ports are not 0, ports shifted by 100·n (3101 -> 3201, as a local
    /// cluster's second comet; the admin port 3103 -> 3203).
    pub async fn start(mut config: CourierConfig, comets: usize) -> anyhow::Result<Self> {
        config.generate_missing_secrets();
        config.share_secrets();
        let backends = Backends::connect(&config.cluster)
            .await
            .context("connecting backends")?;

        let logic = bind_logic(config.logic.clone(), &backends)
            .await
            .context("starting logic")?;
        let (logic_http, logic_grpc) = (logic.http_addr(), logic.grpc_addr());
        let logic_admin = logic.admin_addr();
        let logic_task = spawn_service("logic", |t| logic.run(t));

        let mut comet_infos = Vec::new();
        let mut comet_tasks = Vec::new();
        for n in 0..comets.max(1) {
            let comet = bind_comet(nth_comet(&config.comet, n)?, backends.discovery.clone())
                .await
                .with_context(|| format!("starting comet {n}"))?;
            comet_infos.push(CometInfo {
                id: comet.id().to_owned(),
                tcp: comet.tcp_addr(),
                ws: comet.ws_addr(),
                grpc: comet.grpc_addr(),
                admin: comet.admin_addr(),
            });
            comet_tasks.push(spawn_service("comet", |t| comet.run(t)));
        }

        let (job, job_task) = start_job(&config, &backends, 0).await?;
        Ok(Self {
            config,
            backends,
            logic_http,
            logic_grpc,
            logic_admin,
            comets: comet_infos,
            jobs: vec![job],
            comet_tasks,
            job_tasks: vec![job_task],
            logic_task,
        })
    }

    /// Base URL of logic's HTTP API, e.g. `http://127.0.0.1:3111`.
    pub fn logic_url(&self) -> String {
        let scheme = if self.config.logic.tls.serves() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.logic_http)
    }

    /// The push API key.
    pub fn api_key(&self) -> &str {
        &self.config.auth.api_key
    }

    /// Starts one more job in the same consumer group. The n-th job
    /// (counting from 0) gets its configured admin port shifted by 100·n
    /// (3121 -> 3221 -> 3321) so it does not collide with the others; a port
    /// of 0 stays 0 and a disabled admin listener stays disabled.
    pub async fn add_job(&mut self) -> anyhow::Result<&JobInfo> {
        let n = self.jobs.len();
        let (job, task) = start_job(&self.config, &self.backends, n).await?;
        self.job_tasks.push(task);
        self.jobs.push(job);
        Ok(&self.jobs[n])
    }

    /// Stops every service in order: comets first (their clients are told
    /// to reconnect and logic still hears their disconnects), then jobs,
    /// then logic.
    pub async fn stop(self) {
        for tasks in [self.comet_tasks, self.job_tasks, vec![self.logic_task]] {
            for (token, _) in &tasks {
                token.cancel();
            }
            for (_, task) in tasks {
                let _ = task.await;
            }
        }
    }

    /// Waits for a shutdown signal, then stops in order.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down");
        self.stop().await;
    }
}

/// Binds logic on `backends`: what `courier logic` and [`System`] both run.
pub async fn bind_logic(config: LogicConfig, backends: &Backends) -> Result<Logic, LogicError> {
    Logic::bind(config, backends.clone()).await
}

/// Binds a comet on `discovery`, the one backend it uses: what `courier
/// comet` and [`System`] both run.
pub async fn bind_comet(
    config: CometConfig,
    discovery: Arc<dyn Discovery>,
) -> Result<Comet, CometError> {
    Comet::bind(config, CometDeps { discovery }).await
}

/// Binds a job on `queue` and `discovery`: what `courier job` and
/// [`System`] both run.
pub async fn bind_job(
    config: JobConfig,
    queue: Arc<dyn Queue>,
    discovery: Arc<dyn Discovery>,
) -> Result<Job, JobError> {
    Job::bind(config, JobDeps { queue, discovery }).await
}

async fn start_job(
    config: &CourierConfig,
    backends: &Backends,
    n: usize,
) -> anyhow::Result<(JobInfo, (CancellationToken, JoinHandle<()>))> {
    let mut job_config = config.job.clone();
    job_config.admin_addr = job_config.admin_addr.map(|a| shifted(a, n)).transpose()?;
    let job = bind_job(
        job_config,
        backends.queue.clone(),
        backends.discovery.clone(),
    )
    .await
    .with_context(|| format!("starting job {n}"))?;
    let info = JobInfo {
        id: job.id().to_owned(),
        admin: job.admin_addr(),
    };
    Ok((info, spawn_service("job", |t| job.run(t))))
}

fn spawn_service<F, E>(
    name: &'static str,
    run: impl FnOnce(CancellationToken) -> F,
) -> (CancellationToken, JoinHandle<()>)
where
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let token = CancellationToken::new();
    let fut = run(token.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = fut.await {
            tracing::error!(service = name, error = %e, "service failed");
        }
    });
    (token, task)
}

/// `addr` with its port shifted by 100·n, unless it is 0 (pick any).
fn shifted(mut addr: SocketAddr, n: usize) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        let port = u16::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(100))
            .and_then(|shift| addr.port().checked_add(shift))
            .with_context(|| format!("no port left for instance {n} of {addr}"))?;
        addr.set_port(port);
    }
    Ok(addr)
}

fn nth_comet(template: &CometConfig, n: usize) -> anyhow::Result<CometConfig> {
    let mut c = template.clone();
    if n > 0 {
        c.id = format!("{}-{}", template.id, n + 1);
        c.tcp_addr = shifted(c.tcp_addr, n)?;
        c.ws_addr = c.ws_addr.map(|a| shifted(a, n)).transpose()?;
        c.grpc_addr = shifted(c.grpc_addr, n)?;
        c.admin_addr = c.admin_addr.map(|a| shifted(a, n)).transpose()?;
    }
    Ok(c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_nth_comet_shifts_every_fixed_port() {
        let template = CometConfig {
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        let second = nth_comet(&template, 1).unwrap();
        assert_eq!(second.tcp_addr.port(), 3201);
        assert_eq!(second.ws_addr.map(|a| a.port()), Some(3202));
        assert_eq!(second.grpc_addr.port(), 0, "port 0 stays 0");
        assert_eq!(second.admin_addr.map(|a| a.port()), Some(3203));
        assert_eq!(nth_comet(&template, 0).unwrap().tcp_addr.port(), 3101);
    }

    #[test]
    fn shifting_past_the_last_port_is_an_error() {
        let addr: SocketAddr = "127.0.0.1:65500".parse().unwrap();
        assert!(shifted(addr, 1).is_err());
        assert_eq!(shifted(addr, 0).unwrap(), addr);
    }
}
