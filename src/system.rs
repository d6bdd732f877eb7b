//! Courier in one process: logic, comets and job on shared backends.
//!
//! `courier up` runs this on the embedded `memory://` backends, and the
//! end-to-end tests run it on port 0 (and on real backends). It is the same
//! code the standalone services run: each service's `bind` + `run`, wired
//! together only through the backends, discovery and gRPC on loopback.

use std::net::SocketAddr;

use anyhow::Context;
use courier_cluster::shutdown::CancellationToken;
use courier_cluster::Backends;
use courier_comet::{Comet, CometDeps};
use courier_job::JobDeps;
use courier_logic::Logic;
use tokio::task::JoinHandle;

use crate::config::{generate_secret, CourierConfig};

/// Addresses of one running comet.
#[derive(Debug, Clone)]
pub struct CometInfo {
    pub id: String,
    pub tcp: SocketAddr,
    pub grpc: SocketAddr,
}

/// A running embedded system.
#[derive(Debug)]
pub struct System {
    pub config: CourierConfig,
    pub backends: Backends,
    pub logic_http: SocketAddr,
    pub logic_grpc: SocketAddr,
    pub comets: Vec<CometInfo>,
    comet_tasks: Vec<(CancellationToken, JoinHandle<()>)>,
    job_tasks: Vec<(CancellationToken, JoinHandle<()>)>,
    logic_task: (CancellationToken, JoinHandle<()>),
}

impl System {
    /// Starts logic, `comets` comets and one job on `config`. Empty secrets
    /// are generated. The `comet` section is the template of every comet;
    /// the n-th comet (n > 0) gets id `{id}-{n}` and, when the configured
    /// ports are not 0, ports shifted by 100·n (3101 -> 3201, as a local
    /// cluster's second comet).
    pub async fn start(mut config: CourierConfig, comets: usize) -> anyhow::Result<Self> {
        if config.auth.jwt_secret.is_empty() {
            config.auth.jwt_secret = generate_secret();
        }
        if config.auth.api_key.is_empty() {
            config.auth.api_key = generate_secret();
        }
        config.share_secrets();
        let backends = Backends::connect(&config.cluster)
            .await
            .context("connecting backends")?;

        let logic = Logic::bind(config.logic.clone(), backends.clone())
            .await
            .context("starting logic")?;
        let (logic_http, logic_grpc) = (logic.http_addr(), logic.grpc_addr());
        let logic_task = spawn_service("logic", |t| logic.run(t));

        let mut comet_infos = Vec::new();
        let mut comet_tasks = Vec::new();
        for n in 0..comets.max(1) {
            let comet_config = nth_comet(&config.comet, n);
            let deps = CometDeps {
                discovery: backends.discovery.clone(),
            };
            let comet = Comet::bind(comet_config, deps)
                .await
                .with_context(|| format!("starting comet {n}"))?;
            comet_infos.push(CometInfo {
                id: comet.id().to_owned(),
                tcp: comet.tcp_addr(),
                grpc: comet.grpc_addr(),
            });
            comet_tasks.push(spawn_service("comet", |t| comet.run(t)));
        }

        let job = add_job(&config, &backends);
        Ok(Self {
            config,
            backends,
            logic_http,
            logic_grpc,
            comets: comet_infos,
            comet_tasks,
            job_tasks: vec![job],
            logic_task,
        })
    }

    /// Base URL of logic's HTTP API, e.g. `http://127.0.0.1:3111`.
    pub fn logic_url(&self) -> String {
        format!("http://{}", self.logic_http)
    }

    /// The push API key.
    pub fn api_key(&self) -> &str {
        &self.config.auth.api_key
    }

    /// Starts one more job in the same consumer group.
    pub fn add_job(&mut self) {
        let job = add_job(&self.config, &self.backends);
        self.job_tasks.push(job);
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

fn add_job(config: &CourierConfig, backends: &Backends) -> (CancellationToken, JoinHandle<()>) {
    let deps = JobDeps {
        queue: backends.queue.clone(),
        discovery: backends.discovery.clone(),
    };
    let job_config = config.job.clone();
    spawn_service("job", |t| courier_job::serve(job_config, deps, t))
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

fn nth_comet(template: &courier_comet::CometConfig, n: usize) -> courier_comet::CometConfig {
    let mut c = template.clone();
    if n > 0 {
        c.id = format!("{}-{}", template.id, n + 1);
        let shift = |mut a: SocketAddr| {
            if a.port() != 0 {
                a.set_port(a.port() + 100 * n as u16);
            }
            a
        };
        c.tcp_addr = shift(c.tcp_addr);
        c.grpc_addr = shift(c.grpc_addr);
    }
    c
}
