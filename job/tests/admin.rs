//! The job's admin listener: probes over real HTTP on 127.0.0.1:0, readiness
//! across the job's life, and a bind failure surfacing from `serve`.

#![allow(clippy::unwrap_used)]

mod support;

use courier_job::{Job, JobDeps, JobError};
use courier_testkit::http_get as get;
use support::*;
use tokio_util::sync::CancellationToken;

fn deps(cluster: &Cluster) -> JobDeps {
    JobDeps {
        queue: cluster.queue.clone(),
        discovery: cluster.discovery.clone(),
    }
}

#[tokio::test]
async fn probes_answer_while_the_job_runs_and_stop_with_it() {
    let cluster = Cluster::new();
    let job = Job::bind(config("admin"), deps(&cluster)).await.unwrap();
    let admin = job.admin_addr().expect("admin listener bound");
    assert_ne!(admin.port(), 0, "the real port is known before running");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(job.run(shutdown.clone()));

    courier_testkit::eventually_async("the job is ready", PATIENCE, || async {
        match get(admin, "/readyz").await.unwrap() {
            (200, body) => body == "ready",
            (503, body) => {
                assert_eq!(body, "not ready");
                false
            }
            other => panic!("unexpected /readyz answer {other:?}"),
        }
    })
    .await;
    assert_eq!(get(admin, "/healthz").await.unwrap(), (200, "ok".into()));
    // This test binary installs no recorder.
    assert_eq!(get(admin, "/metrics").await.unwrap().0, 404);

    shutdown.cancel();
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("job stops")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "the admin listener closes with the job"
    );
}

#[tokio::test]
async fn an_admin_address_in_use_fails_serve() {
    let cluster = Cluster::new();
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let mut job_config = config("admin-taken");
    job_config.admin_addr = Some(addr);
    let result = tokio::time::timeout(
        PATIENCE,
        courier_job::serve(job_config, deps(&cluster), CancellationToken::new()),
    )
    .await
    .expect("serve returns at once");
    assert!(
        matches!(result, Err(JobError::Bind { addr: a, .. }) if a == addr),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_disabled_admin_address_binds_nothing() {
    let cluster = Cluster::new();
    let mut job_config = config("admin-off");
    job_config.admin_addr = None;
    let job = Job::bind(job_config, deps(&cluster)).await.unwrap();
    assert_eq!(job.admin_addr(), None);
}
