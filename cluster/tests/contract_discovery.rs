//! The discovery contract, written once and run against every backend.
//!
//! Each `async fn` below takes a `&dyn Discovery` and states one promise of
//! the trait; the `contract!` macro instantiates it as a test per backend.
//! The etcd tests start a real etcd (and fail, never skip, if they cannot).
//! etcd-only promises — leases, outages — follow in `mod etcd_only`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use courier_cluster::discovery::etcd::EtcdDiscovery;
use courier_cluster::discovery::memory::MemoryDiscovery;
use courier_cluster::discovery::View;
use courier_cluster::{Discovery, ServiceKind};
use tokio::sync::watch;

/// How long any expected change may take to show up.
const WAIT: Duration = Duration::from_secs(15);
/// The lease TTL of etcd registrations in these tests.
const LEASE_TTL: Duration = Duration::from_secs(2);

/// Waits (bounded) until the view satisfies `condition`; returns it.
async fn wait_until(
    view: &mut watch::Receiver<View>,
    what: &str,
    condition: impl FnMut(&View) -> bool,
) -> View {
    let outcome = match tokio::time::timeout(WAIT, view.wait_for(condition)).await {
        Ok(Ok(seen)) => Some(seen.clone()),
        Ok(Err(_)) => panic!("view closed while waiting until {what}"),
        Err(_) => None,
    };
    outcome.unwrap_or_else(|| {
        panic!(
            "timed out waiting until {what}; view is {:?}",
            *view.borrow()
        )
    })
}

fn has(view: &View, id: &str, value: &str) -> bool {
    view.get(id).map(String::as_str) == Some(value)
}

async fn a_registration_appears_in_the_view(discovery: &dyn Discovery) {
    let mut view = discovery.watch(ServiceKind::Comet).await.unwrap();
    assert!(view.borrow().is_empty(), "a fresh backend has no comets");

    let _registration = discovery
        .register(ServiceKind::Comet, "c1", r#"{"n":1}"#.into())
        .await
        .unwrap();
    let seen = wait_until(&mut view, "c1 is registered", |v| {
        has(v, "c1", r#"{"n":1}"#)
    })
    .await;
    assert_eq!(seen.len(), 1);

    let late = discovery.watch(ServiceKind::Comet).await.unwrap();
    assert!(
        has(&late.borrow(), "c1", r#"{"n":1}"#),
        "a watcher started later sees the record at once"
    );
}

async fn an_update_is_seen(discovery: &dyn Discovery) {
    let mut view = discovery.watch(ServiceKind::Comet).await.unwrap();
    let registration = discovery
        .register(ServiceKind::Comet, "c1", "v1".into())
        .await
        .unwrap();
    wait_until(&mut view, "v1 is seen", |v| has(v, "c1", "v1")).await;

    registration.update("v2".into());
    wait_until(&mut view, "v2 is seen", |v| has(v, "c1", "v2")).await;
    registration.update("v3".into());
    let seen = wait_until(&mut view, "v3 is seen", |v| has(v, "c1", "v3")).await;
    assert_eq!(seen.len(), 1);
}

async fn deregister_removes_the_record(discovery: &dyn Discovery) {
    let mut view = discovery.watch(ServiceKind::Logic).await.unwrap();
    let registration = discovery
        .register(ServiceKind::Logic, "l1", "v".into())
        .await
        .unwrap();
    wait_until(&mut view, "l1 is registered", |v| v.contains_key("l1")).await;

    registration.deregister().await;
    wait_until(&mut view, "l1 is gone", View::is_empty).await;
    let fresh = discovery.watch(ServiceKind::Logic).await.unwrap();
    assert!(fresh.borrow().is_empty(), "a new watcher does not see l1");
}

async fn dropping_a_registration_removes_the_record(discovery: &dyn Discovery) {
    let mut view = discovery.watch(ServiceKind::Comet).await.unwrap();
    let registration = discovery
        .register(ServiceKind::Comet, "c1", "v".into())
        .await
        .unwrap();
    wait_until(&mut view, "c1 is registered", |v| v.contains_key("c1")).await;

    drop(registration);
    wait_until(&mut view, "c1 is gone after drop", View::is_empty).await;
}

async fn two_ids_are_two_records(discovery: &dyn Discovery) {
    let mut view = discovery.watch(ServiceKind::Comet).await.unwrap();
    let first = discovery
        .register(ServiceKind::Comet, "c1", "one".into())
        .await
        .unwrap();
    let _second = discovery
        .register(ServiceKind::Comet, "c2", "two".into())
        .await
        .unwrap();
    wait_until(&mut view, "both are registered", |v| {
        has(v, "c1", "one") && has(v, "c2", "two")
    })
    .await;

    first.deregister().await;
    let seen = wait_until(&mut view, "only c2 is left", |v| !v.contains_key("c1")).await;
    assert!(
        has(&seen, "c2", "two"),
        "c2 survives c1's removal: {seen:?}"
    );
}

async fn kinds_are_separate(discovery: &dyn Discovery) {
    let mut comets = discovery.watch(ServiceKind::Comet).await.unwrap();
    let mut logics = discovery.watch(ServiceKind::Logic).await.unwrap();
    let _comet = discovery
        .register(ServiceKind::Comet, "n1", "comet".into())
        .await
        .unwrap();
    let _logic = discovery
        .register(ServiceKind::Logic, "n1", "logic".into())
        .await
        .unwrap();
    let _other = discovery
        .register(ServiceKind::Logic, "l2", "logic".into())
        .await
        .unwrap();

    let logic_view = wait_until(&mut logics, "both logics are seen", |v| v.len() == 2).await;
    assert!(has(&logic_view, "n1", "logic"), "{logic_view:?}");
    let comet_view = wait_until(&mut comets, "the comet is seen", |v| v.contains_key("n1")).await;
    assert_eq!(comet_view.len(), 1, "no logic among comets: {comet_view:?}");
    assert!(has(&comet_view, "n1", "comet"));
}

async fn re_registering_an_id_replaces_it(discovery: &dyn Discovery) {
    let mut view = discovery.watch(ServiceKind::Comet).await.unwrap();
    let old = discovery
        .register(ServiceKind::Comet, "c1", "old".into())
        .await
        .unwrap();
    let new = discovery
        .register(ServiceKind::Comet, "c1", "new".into())
        .await
        .unwrap();
    wait_until(&mut view, "the new record wins", |v| has(v, "c1", "new")).await;

    // The predecessor going away must not take its successor's record.
    old.deregister().await;
    let fresh = discovery.watch(ServiceKind::Comet).await.unwrap();
    assert!(has(&fresh.borrow(), "c1", "new"), "{:?}", *fresh.borrow());

    new.deregister().await;
    wait_until(&mut view, "c1 is gone", View::is_empty).await;
}

async fn a_revocation_is_seen_and_ends_with_its_time(discovery: &dyn Discovery) {
    let mut view = discovery.watch_revoked().await.unwrap();
    assert!(view.borrow().is_empty());
    discovery
        .revoke("t/short", "alice", Duration::from_secs(1))
        .await
        .unwrap();
    discovery
        .revoke("u/bob", "1000", Duration::from_secs(3600))
        .await
        .unwrap();
    wait_until(&mut view, "both are seen", |v| {
        has(v, "t/short", "alice") && has(v, "u/bob", "1000")
    })
    .await;
    // A later revocation of the same name replaces the value.
    discovery
        .revoke("u/bob", "2000", Duration::from_secs(3600))
        .await
        .unwrap();
    wait_until(&mut view, "the newer value", |v| has(v, "u/bob", "2000")).await;
    let late = discovery.watch_revoked().await.unwrap();
    assert!(
        has(&late.borrow(), "u/bob", "2000"),
        "a later watcher sees it"
    );
    // The short one goes when its time is up; the other stays.
    let left = wait_until(&mut view, "t/short is gone", |v| !v.contains_key("t/short")).await;
    assert!(has(&left, "u/bob", "2000"), "{left:?}");
    // Revocations are not service records.
    assert!(discovery
        .watch(ServiceKind::Comet)
        .await
        .unwrap()
        .borrow()
        .is_empty());
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&MemoryDiscovery::default()).await;
                }
            )*
        }

        mod etcd {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let server = courier_testkit::etcd::EtcdServer::start().await.unwrap();
                    let discovery = EtcdDiscovery::connect(&server.url(), LEASE_TTL).await.unwrap();
                    super::$case(&discovery).await;
                }
            )*
        }
    };
}

contract!(
    a_registration_appears_in_the_view,
    an_update_is_seen,
    deregister_removes_the_record,
    dropping_a_registration_removes_the_record,
    two_ids_are_two_records,
    kinds_are_separate,
    re_registering_an_id_replaces_it,
    a_revocation_is_seen_and_ends_with_its_time,
);

mod etcd_only {
    use courier_testkit::etcd::EtcdServer;
    use etcd_client::{Client, PutOptions};

    use super::*;

    async fn start() -> (EtcdServer, EtcdDiscovery) {
        let server = EtcdServer::start().await.unwrap();
        let discovery = EtcdDiscovery::connect(&server.url(), LEASE_TTL)
            .await
            .unwrap();
        (server, discovery)
    }

    #[tokio::test]
    async fn a_live_registration_outlives_its_lease_ttl() {
        let (_server, discovery) = start().await;
        let mut view = discovery.watch(ServiceKind::Comet).await.unwrap();
        let _registration = discovery
            .register(ServiceKind::Comet, "c1", "v".into())
            .await
            .unwrap();
        wait_until(&mut view, "c1 is registered", |v| v.contains_key("c1")).await;

        // Time passing is the point: without keep-alives the lease expires.
        tokio::time::sleep(LEASE_TTL * 3).await;
        assert!(view.borrow().contains_key("c1"), "kept alive past 3 TTLs");
    }

    #[tokio::test]
    async fn a_record_whose_owner_died_disappears_within_its_lease() {
        let (server, discovery) = start().await;
        let mut view = discovery.watch(ServiceKind::Comet).await.unwrap();

        // A process that registered and died: a lease nobody keeps alive.
        let mut raw = Client::connect([format!("http://{}", server.addr())], None)
            .await
            .unwrap();
        let lease = raw.lease_grant(2, None).await.unwrap();
        raw.put(
            format!("{}ghost", ServiceKind::Comet.prefix()),
            "boo",
            Some(PutOptions::new().with_lease(lease.id())),
        )
        .await
        .unwrap();
        wait_until(&mut view, "the ghost is seen", |v| has(v, "ghost", "boo")).await;

        // Gone from the view (within the wait, far longer than the lease)...
        wait_until(&mut view, "the ghost is gone", View::is_empty).await;
        // ...because its lease ended: etcd answers -1 for an expired lease.
        let left = raw.lease_time_to_live(lease.id(), None).await.unwrap();
        assert_eq!(left.ttl(), -1, "the lease expired");
    }

    #[tokio::test]
    async fn registrations_and_watchers_survive_an_etcd_outage() {
        let (mut server, discovery) = start().await;
        let mut view = discovery.watch(ServiceKind::Comet).await.unwrap();
        let registration = discovery
            .register(ServiceKind::Comet, "c1", "before".into())
            .await
            .unwrap();
        wait_until(&mut view, "c1 is registered", |v| has(v, "c1", "before")).await;

        server.stop();
        registration.update("during".into());
        // Longer than the lease: nothing must be forgotten meanwhile.
        tokio::time::sleep(LEASE_TTL + Duration::from_secs(1)).await;
        assert!(
            has(&view.borrow(), "c1", "before"),
            "the last view is kept while etcd is down: {:?}",
            *view.borrow()
        );

        server.restart().await.unwrap();
        // Only a re-registration can write the value set during the outage.
        wait_until(
            &mut view,
            "c1 is re-registered with its latest value",
            |v| has(v, "c1", "during"),
        )
        .await;
        let fresh = discovery.watch(ServiceKind::Comet).await.unwrap();
        assert!(has(&fresh.borrow(), "c1", "during"));

        // The pre-outage lease, restored by etcd, expires without taking
        // the record with it; and the new lease is kept alive.
        tokio::time::sleep(LEASE_TTL * 2).await;
        assert!(has(&view.borrow(), "c1", "during"), "{:?}", *view.borrow());

        registration.deregister().await;
        wait_until(&mut view, "c1 is gone", View::is_empty).await;
    }

    #[tokio::test]
    async fn deregister_during_an_outage_returns_promptly() {
        let (mut server, discovery) = start().await;
        let registration = discovery
            .register(ServiceKind::Logic, "l1", "v".into())
            .await
            .unwrap();
        server.stop();
        tokio::time::timeout(Duration::from_secs(10), registration.deregister())
            .await
            .expect("deregister is bounded while etcd is down");
    }

    #[tokio::test]
    async fn connecting_to_nothing_is_unavailable() {
        let port = courier_testkit::free_port().unwrap();
        let url = format!("etcd://127.0.0.1:{port}");
        let result = tokio::time::timeout(WAIT, EtcdDiscovery::connect(&url, LEASE_TTL))
            .await
            .expect("connect gives up in bounded time");
        assert!(
            matches!(
                result,
                Err(courier_cluster::Error::Unavailable {
                    backend: "etcd",
                    ..
                })
            ),
            "{result:?}"
        );
    }
}
