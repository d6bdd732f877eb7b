//! The session-store contract, written once and run against every backend:
//! memory (with paused time), a single Redis, a single Redis over TLS with
//! an ACL user (`rediss://user:password@...`) and a three-node Redis Cluster
//! (each test starts its own real server; a server that cannot start fails
//! the test).
//!
//! Waiting is the same everywhere: "still there" checks come after several
//! report lifetimes, and "gone" checks poll with a deadline. Under paused
//! time the sleeps advance the clock instantly.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use courier_cluster::redis::RedisConn;
use courier_cluster::sessions::memory::MemorySessions;
use courier_cluster::sessions::redis::RedisSessions;
use courier_cluster::BackendTls;
use courier_cluster::{CometReport, Online, Session, SessionOptions, Sessions};
use courier_testkit::redis::{RedisCluster, RedisSecurity, RedisServer};
use courier_testkit::tls::TestCerts;
use tokio::time::sleep;

/// Short lifetimes so real-Redis expiry tests take seconds.
fn opts() -> SessionOptions {
    SessionOptions {
        ended_ttl: Duration::from_secs(2),
        comet_ttl: Duration::from_secs(1),
    }
}

fn session(uid: &str, key: &str, comet: &str) -> Session {
    Session {
        uid: uid.into(),
        key: key.into(),
        comet_id: comet.into(),
        ..Session::default()
    }
}

fn report(connections: u32, rooms: &[(&str, u32)]) -> CometReport {
    CometReport {
        connections,
        rooms: rooms.iter().map(|(r, c)| ((*r).to_owned(), *c)).collect(),
        ..CometReport::default()
    }
}

fn part(part: u32, parts: u32, connections: u32, rooms: &[(&str, u32)]) -> CometReport {
    CometReport {
        part,
        parts,
        ..report(connections, rooms)
    }
}

async fn devices_and_ended_sessions(s: &dyn Sessions, o: SessionOptions) {
    let laptop = Session {
        device: "laptop".into(),
        ..session("alice", "k1", "c1")
    };
    s.add(&laptop).await.unwrap();
    // A session check names the connection without its device; the device
    // stays.
    assert!(s.check(&session("alice", "k1", "c1")).await.unwrap());
    assert_eq!(
        s.user_sessions("alice").await.unwrap(),
        vec![laptop.clone()]
    );

    // Ended: gone, and no late session check brings it back...
    s.end(&laptop).await.unwrap();
    assert!(s.user_sessions("alice").await.unwrap().is_empty());
    assert!(!s.check(&laptop).await.unwrap());
    assert!(!s.revive(&laptop).await.unwrap());
    assert!(s.user_sessions("alice").await.unwrap().is_empty());
    // ...until the marker lapses.
    courier_testkit::eventually_async("the ended marker to lapse", o.ended_ttl * 3, || async {
        s.revive(&laptop).await.unwrap()
    })
    .await;
    s.remove(&laptop).await.unwrap();

    // A session that was merely removed (or forgotten) can be revived.
    let phone = session("alice", "k2", "c1");
    s.add(&phone).await.unwrap();
    s.remove(&phone).await.unwrap();
    assert!(s.revive(&phone).await.unwrap());
    assert_eq!(s.user_sessions("alice").await.unwrap(), vec![phone]);
}

async fn reports_in_parts(s: &dyn Sessions, _: SessionOptions) {
    s.report_comet("c1", &part(0, 2, 7, &[("a", 3)]))
        .await
        .unwrap();
    s.report_comet("c1", &part(1, 2, 7, &[("b", 4)]))
        .await
        .unwrap();
    s.report_comet("c2", &report(1, &[("b", 1)])).await.unwrap();
    assert_eq!(s.room_online("a").await.unwrap(), 3);
    assert_eq!(s.room_online("b").await.unwrap(), 5, "both parts count");
    assert_eq!(s.room_comets("b").await.unwrap(), vec!["c1", "c2"]);
    let online = s.online().await.unwrap();
    assert_eq!(online.connections, 8, "connections counted once per comet");
    assert_eq!(online.comets, vec![("c1".into(), 7), ("c2".into(), 1)]);

    // The report shrank to one part: the old part 1 no longer counts.
    s.report_comet("c1", &part(0, 1, 3, &[("a", 3)]))
        .await
        .unwrap();
    assert_eq!(s.room_online("b").await.unwrap(), 1);
    assert_eq!(
        s.top_rooms(10).await.unwrap(),
        vec![("a".to_owned(), 3), ("b".to_owned(), 1)]
    );

    // Forgetting the comet drops every part.
    s.report_comet("c1", &part(1, 2, 3, &[("c", 9)]))
        .await
        .unwrap();
    s.forget_comet("c1").await.unwrap();
    s.report_comet("c1", &part(0, 2, 1, &[])).await.unwrap();
    assert_eq!(
        s.room_online("c").await.unwrap(),
        0,
        "forgotten part stays gone"
    );
}

async fn sorted_sessions(s: &dyn Sessions, uid: &str) -> Vec<Session> {
    let mut v = s.user_sessions(uid).await.unwrap();
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

async fn add_lookup_remove(s: &dyn Sessions, _: SessionOptions) {
    let alice = session("alice", "k1", "c1");
    s.add(&alice).await.unwrap();
    assert_eq!(s.user_sessions("alice").await.unwrap(), vec![alice.clone()]);
    assert_eq!(s.key_session("k1").await.unwrap(), Some(alice.clone()));
    assert_eq!(s.key_session("nope").await.unwrap(), None);
    assert!(s.user_sessions("bob").await.unwrap().is_empty());

    // A disconnect reported by another comet is not this connection's.
    s.remove(&session("alice", "k1", "c9")).await.unwrap();
    assert_eq!(s.key_session("k1").await.unwrap(), Some(alice.clone()));

    s.remove(&alice).await.unwrap();
    assert!(s.user_sessions("alice").await.unwrap().is_empty());
    assert_eq!(s.key_session("k1").await.unwrap(), None);
    s.remove(&alice).await.unwrap();
    assert_eq!(s.online().await.unwrap().users, 0);
}

async fn several_devices(s: &dyn Sessions, _: SessionOptions) {
    let phone = session("alice", "k1", "c1");
    let laptop = session("alice", "k2", "c2");
    let bob = session("bob", "k3", "c1");
    for x in [&phone, &laptop, &bob] {
        s.add(x).await.unwrap();
    }
    assert_eq!(
        sorted_sessions(s, "alice").await,
        vec![phone.clone(), laptop.clone()]
    );
    assert_eq!(s.online().await.unwrap().users, 2);

    s.remove(&phone).await.unwrap();
    assert_eq!(sorted_sessions(s, "alice").await, vec![laptop.clone()]);
    assert_eq!(s.online().await.unwrap().users, 2);

    // Reconnecting a key on another comet moves it.
    let moved = session("alice", "k2", "c3");
    s.add(&moved).await.unwrap();
    assert_eq!(sorted_sessions(s, "alice").await, vec![moved.clone()]);
    assert_eq!(s.key_session("k2").await.unwrap(), Some(moved.clone()));

    s.remove(&moved).await.unwrap();
    assert_eq!(s.online().await.unwrap().users, 1);
    assert_eq!(sorted_sessions(s, "bob").await, vec![bob]);
}

async fn check_reports_presence(s: &dyn Sessions, _: SessionOptions) {
    let alice = session("alice", "k1", "c1");
    assert!(!s.check(&alice).await.unwrap(), "unknown session found");
    s.add(&alice).await.unwrap();
    assert!(s.check(&alice).await.unwrap());
    assert!(
        !s.check(&session("alice", "k1", "c2")).await.unwrap(),
        "found through the wrong comet"
    );
    s.remove(&alice).await.unwrap();
    assert!(!s.check(&alice).await.unwrap(), "removed session found");
}

/// Nothing renews a session, and nothing needs to: it stays however long
/// its connection idles, while comet reports come and go, until its comet
/// is forgotten.
async fn sessions_live_until_their_comet_is_forgotten(s: &dyn Sessions, o: SessionOptions) {
    let alice = session("alice", "k1", "c1");
    let bob = session("bob", "k2", "c1");
    let carol = session("carol", "k3", "c2");
    for x in [&alice, &bob, &carol] {
        s.add(x).await.unwrap();
    }
    s.report_comet("c1", &report(2, &[("lobby", 2)]))
        .await
        .unwrap();
    s.report_comet("c2", &report(1, &[])).await.unwrap();
    assert_eq!(s.known_comets().await.unwrap(), vec!["c1", "c2"]);

    sleep(o.comet_ttl * 3).await;
    assert!(s.online().await.unwrap().comets.is_empty(), "reports lapse");
    assert_eq!(s.key_session("k1").await.unwrap(), Some(alice.clone()));
    assert!(s.check(&bob).await.unwrap());
    assert_eq!(s.online().await.unwrap().users, 3);
    assert_eq!(
        s.online_users("", 10).await.unwrap().0,
        vec!["alice", "bob", "carol"]
    );

    s.forget_comet("c1").await.unwrap();
    assert_eq!(s.key_session("k1").await.unwrap(), None);
    assert!(s.user_sessions("alice").await.unwrap().is_empty());
    assert!(!s.check(&bob).await.unwrap());
    assert_eq!(s.user_sessions("carol").await.unwrap(), vec![carol.clone()]);
    assert_eq!(s.online().await.unwrap().users, 1);
    assert_eq!(s.online_users("", 10).await.unwrap().0, vec!["carol"]);
    assert!(s.room_comets("lobby").await.unwrap().is_empty());
    assert_eq!(s.known_comets().await.unwrap(), vec!["c2"]);

    // A forgotten comet's connection that is in fact alive comes back.
    assert!(s.revive(&alice).await.unwrap());
    assert_eq!(s.user_sessions("alice").await.unwrap(), vec![alice]);
}

/// One user with many connections (a bench, a bot farm) stays online until
/// the last goes.
async fn a_user_with_many_sessions_goes_offline_with_the_last(s: &dyn Sessions, _: SessionOptions) {
    let sessions: Vec<Session> = (0..2_000)
        .map(|i| session("busy", &format!("k{i}"), "c1"))
        .collect();
    futures::future::try_join_all(sessions.iter().map(|x| s.add(x)))
        .await
        .unwrap();
    let (last, rest) = sessions.split_last().unwrap();
    futures::future::try_join_all(rest.iter().map(|x| s.remove(x)))
        .await
        .unwrap();
    assert_eq!(s.online().await.unwrap().users, 1);
    assert_eq!(s.user_sessions("busy").await.unwrap(), vec![last.clone()]);
    s.remove(last).await.unwrap();
    assert_eq!(s.online().await.unwrap().users, 0);
    assert_eq!(s.online_users("", 10).await.unwrap(), (vec![], None));
    // And comes back with a new one.
    s.add(&sessions[7]).await.unwrap();
    assert_eq!(s.online_users("", 10).await.unwrap().0, vec!["busy"]);
}

/// A comet with more sessions than one forgetting round takes.
async fn forgetting_a_big_comet(s: &dyn Sessions, _: SessionOptions) {
    let sessions: Vec<Session> = (0..2_500)
        .map(|i| session(&format!("u{i}"), &format!("k{i}"), "big"))
        .collect();
    futures::future::try_join_all(sessions.iter().map(|x| s.add(x)))
        .await
        .unwrap();
    s.add(&session("u0", "other", "small")).await.unwrap();
    assert_eq!(s.online().await.unwrap().users, 2_500);
    s.forget_comet("big").await.unwrap();
    assert_eq!(s.online().await.unwrap().users, 1);
    assert_eq!(
        s.user_sessions("u0").await.unwrap(),
        vec![session("u0", "other", "small")]
    );
    assert_eq!(s.key_session("k2499").await.unwrap(), None);
}

async fn room_comets(s: &dyn Sessions, o: SessionOptions) {
    s.add_room_comet("lobby", "c2").await.unwrap();
    s.add_room_comet("lobby", "c1").await.unwrap();
    s.add_room_comet("lobby", "c1").await.unwrap();
    s.add_room_comet("ops", "c1").await.unwrap();
    assert_eq!(s.room_comets("lobby").await.unwrap(), vec!["c1", "c2"]);
    assert!(s.room_comets("empty").await.unwrap().is_empty());
    s.remove_room_comet("lobby", "c2").await.unwrap();
    s.remove_room_comet("lobby", "c7").await.unwrap();
    assert_eq!(s.room_comets("lobby").await.unwrap(), vec!["c1"]);

    // A comet's report registers its rooms too (healing a lost change).
    s.report_comet("c3", &report(5, &[("lobby", 5)]))
        .await
        .unwrap();
    assert_eq!(s.room_comets("lobby").await.unwrap(), vec!["c1", "c3"]);

    // However late the next report: a comet stays in a room until it says
    // it left, or it is forgotten for leaving the cluster.
    sleep(o.comet_ttl * 3).await;
    assert_eq!(s.room_comets("lobby").await.unwrap(), vec!["c1", "c3"]);
    s.forget_comet("c1").await.unwrap();
    assert_eq!(s.room_comets("lobby").await.unwrap(), vec!["c3"]);
    assert!(s.room_comets("ops").await.unwrap().is_empty());
    s.forget_comet("c3").await.unwrap();
    s.forget_comet("never-seen").await.unwrap();
    assert!(s.room_comets("lobby").await.unwrap().is_empty());
}

async fn online_counts(s: &dyn Sessions, o: SessionOptions) {
    s.report_comet("c1", &report(3, &[("a", 2), ("b", 1)]))
        .await
        .unwrap();
    s.report_comet("c2", &report(4, &[("a", 1), ("c", 3)]))
        .await
        .unwrap();
    for x in [
        session("u1", "k1", "c1"),
        session("u1", "k2", "c2"),
        session("u2", "k3", "c2"),
    ] {
        s.add(&x).await.unwrap();
    }
    assert_eq!(
        s.online().await.unwrap(),
        Online {
            connections: 7,
            users: 2,
            comets: vec![("c1".into(), 3), ("c2".into(), 4)],
        }
    );
    assert_eq!(s.room_online("a").await.unwrap(), 3);
    assert_eq!(s.room_online("c").await.unwrap(), 3);
    assert_eq!(s.room_online("nowhere").await.unwrap(), 0);
    let top = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(r, c)| ((*r).to_owned(), *c)).collect()
    };
    assert_eq!(s.top_rooms(2).await.unwrap(), top(&[("a", 3), ("c", 3)]));
    assert_eq!(
        s.top_rooms(10).await.unwrap(),
        top(&[("a", 3), ("c", 3), ("b", 1)])
    );
    assert!(s.top_rooms(0).await.unwrap().is_empty());
    let all = s.room_counts().await.unwrap();
    assert_eq!(
        all,
        HashMap::from([("a".into(), 3), ("b".into(), 1), ("c".into(), 3)]),
        "every room, summed over the comets"
    );

    // A new report replaces the comet's previous one.
    s.report_comet("c1", &report(1, &[("b", 1)])).await.unwrap();
    assert_eq!(s.online().await.unwrap().connections, 5);
    assert_eq!(s.room_online("a").await.unwrap(), 1);
    assert_eq!(
        s.top_rooms(10).await.unwrap(),
        top(&[("c", 3), ("a", 1), ("b", 1)])
    );

    // Reports lapse without renewal.
    courier_testkit::eventually_async("the reports to lapse", o.comet_ttl * 3, || async {
        s.online().await.unwrap().comets.is_empty()
    })
    .await;
    assert_eq!(s.online().await.unwrap().connections, 0);
    assert_eq!(s.room_online("c").await.unwrap(), 0);
    assert!(s.top_rooms(10).await.unwrap().is_empty());
}

async fn online_users_paging(s: &dyn Sessions, _: SessionOptions) {
    for (uid, key) in [
        ("u05", "k5"),
        ("u00", "k0"),
        ("u02", "k2a"),
        ("u02", "k2b"),
        ("u03", "k3"),
        ("u01", "k1"),
        ("u04", "k4"),
    ] {
        s.add(&session(uid, key, "c1")).await.unwrap();
    }
    s.remove(&session("u03", "k3", "c1")).await.unwrap();
    let page = |v: &[&str], next: Option<&str>| {
        (
            v.iter().map(|u| (*u).to_owned()).collect::<Vec<_>>(),
            next.map(str::to_owned),
        )
    };
    assert_eq!(
        s.online_users("", 2).await.unwrap(),
        page(&["u00", "u01"], Some("u01"))
    );
    assert_eq!(
        s.online_users("u01", 2).await.unwrap(),
        page(&["u02", "u04"], Some("u04"))
    );
    assert_eq!(
        s.online_users("u04", 2).await.unwrap(),
        page(&["u05"], None)
    );
    // A page that ends exactly at the last user has no next cursor.
    assert_eq!(
        s.online_users("", 5).await.unwrap(),
        page(&["u00", "u01", "u02", "u04", "u05"], None)
    );
    // The cursor need not be an online uid.
    assert_eq!(
        s.online_users("u03", 10).await.unwrap(),
        page(&["u04", "u05"], None)
    );
    assert_eq!(s.online_users("u05", 10).await.unwrap(), page(&[], None));
}

/// `reject_new`'s step: recorded only while no other client of the user is.
async fn a_lone_login_is_recorded_alone(s: &dyn Sessions, _: SessionOptions) {
    let on = |device: &str, key: &str| Session {
        device: device.into(),
        ..session("bob", key, "c1")
    };
    // Ten logins at once, each its own device: exactly one gets in.
    let logins: Vec<Session> = (0..10)
        .map(|i| on(&format!("d{i}"), &format!("k{i}")))
        .collect();
    let results = futures::future::join_all(logins.iter().map(|l| s.add_alone(l))).await;
    let admitted: Vec<&Session> = logins
        .iter()
        .zip(&results)
        .filter(|(_, r)| *r.as_ref().unwrap())
        .map(|(l, _)| l)
        .collect();
    assert_eq!(admitted.len(), 1, "{results:?}");
    let first = admitted[0].clone();
    assert_eq!(
        sorted_sessions(s, "bob").await,
        std::slice::from_ref(&first)
    );
    // Its own key again, and another connection of its device, get in; a
    // client without a device, or with another one, does not.
    assert!(s.add_alone(&first).await.unwrap());
    let again = on(&first.device, "k-again");
    assert!(s.add_alone(&again).await.unwrap());
    assert!(!s.add_alone(&on("", "k-none")).await.unwrap());
    assert!(!s.add_alone(&on("other", "k-other")).await.unwrap());
    // Alone again once the others are gone; never an ended connection.
    s.remove(&first).await.unwrap();
    s.end(&again).await.unwrap();
    assert!(!s.add_alone(&again).await.unwrap(), "ended");
    assert!(s.add_alone(&on("", "k-none")).await.unwrap());
    // Another user is not affected.
    assert!(s.add_alone(&session("carol", "kc", "c2")).await.unwrap());
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    let s = MemorySessions::new(opts());
                    super::$name(&s, opts()).await;
                }
            )*
        }

        mod redis_single {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let server = RedisServer::start().await.unwrap();
                    let conn = RedisConn::connect(&server.url()).await.unwrap();
                    super::$name(&RedisSessions::new(conn, opts()), opts()).await;
                }
            )*
        }

        mod redis_tls_acl {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let certs = TestCerts::new().unwrap();
                    let security = RedisSecurity::default().tls(&certs).user("courier", "pw");
                    let server = RedisServer::start_secured(security).await.unwrap();
                    let tls = BackendTls::new(Some(certs.ca.clone()));
                    let conn = RedisConn::connect_tls(&server.url(), &tls).await.unwrap();
                    super::$name(&RedisSessions::new(conn, opts()), opts()).await;
                }
            )*
        }

        mod redis_cluster {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let cluster = RedisCluster::start().await.unwrap();
                    let conn = RedisConn::connect(&cluster.url()).await.unwrap();
                    super::$name(&RedisSessions::new(conn, opts()), opts()).await;
                }
            )*
        }
    };
}

async fn the_mark_only_goes_up_while_nothing_is_lost(s: &dyn Sessions, _: SessionOptions) {
    let mut last = s.mark().await.unwrap();
    for _ in 0..5 {
        let mark = s.mark().await.unwrap();
        assert!(mark > last, "{mark} after {last}");
        last = mark;
    }
}

contract!(
    the_mark_only_goes_up_while_nothing_is_lost,
    add_lookup_remove,
    several_devices,
    check_reports_presence,
    sessions_live_until_their_comet_is_forgotten,
    forgetting_a_big_comet,
    a_user_with_many_sessions_goes_offline_with_the_last,
    room_comets,
    online_counts,
    online_users_paging,
    reports_in_parts,
    devices_and_ended_sessions,
    a_lone_login_is_recorded_alone,
);

/// A flushed Redis (or one restarted without persistence) lost every
/// session: the mark goes back, which is how logic notices.
#[tokio::test]
async fn a_flushed_redis_takes_the_mark_back() {
    let server = RedisServer::start().await.unwrap();
    let conn = RedisConn::connect(&server.url()).await.unwrap();
    let s = RedisSessions::new(conn.clone(), opts());
    let mut before = 0;
    for _ in 0..3 {
        before = s.mark().await.unwrap();
    }
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn.clone())
        .await
        .unwrap();
    let after = s.mark().await.unwrap();
    assert!(after <= before, "{after} after {before}");
}

/// Reports keep their per-room counts exactly (no rounding through JSON).
#[tokio::test]
async fn redis_report_round_trips_counts() {
    let server = RedisServer::start().await.unwrap();
    let conn = RedisConn::connect(&server.url()).await.unwrap();
    let s = RedisSessions::new(conn, opts());
    let rooms: HashMap<String, u32> = [("big".to_owned(), u32::MAX)].into();
    s.report_comet(
        "c1",
        &CometReport {
            connections: u32::MAX,
            rooms,
            ..CometReport::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(s.room_online("big").await.unwrap(), u64::from(u32::MAX));
    assert_eq!(s.online().await.unwrap().connections, u64::from(u32::MAX));
}
