//! The account-store contract, written once and run against memory and
//! PostgreSQL (one shard, and two: accounts live in their user's bucket).
//! Plus what only PostgreSQL can show: concurrent registrations of one uid
//! have one winner, and a stopped server is `Unavailable`, not a panic.
#![allow(clippy::unwrap_used)]

mod pg;

use courier_cluster::accounts::memory::MemoryAccounts;
use courier_cluster::inbox::InboxOptions;
use courier_cluster::{Account, Accounts, Error};

fn account(uid: &str, hash: &str) -> Account {
    Account {
        uid: uid.into(),
        password_hash: hash.into(),
        created_at_ms: 1_700_000_000_000,
    }
}

async fn create_once_then_get(a: &dyn Accounts) {
    assert_eq!(a.get("alice").await.unwrap(), None);
    let first = account("alice", "$argon2id$v=19$first");
    assert!(a.create(&first).await.unwrap());
    assert!(
        !a.create(&account("alice", "$argon2id$v=19$second"))
            .await
            .unwrap(),
        "uid taken twice"
    );
    assert_eq!(a.get("alice").await.unwrap(), Some(first));
    assert_eq!(a.get("bob").await.unwrap(), None);

    let bob = account("bob", "$argon2id$v=19$bob");
    assert!(a.create(&bob).await.unwrap());
    assert_eq!(a.get("bob").await.unwrap(), Some(bob));
    // A new password replaces the hash of that account only.
    assert!(a.set_password("bob", "$argon2id$v=19$new").await.unwrap());
    assert_eq!(
        a.get("bob").await.unwrap().map(|b| b.password_hash),
        Some("$argon2id$v=19$new".to_owned())
    );
    assert_eq!(
        a.get("alice").await.unwrap().map(|a| a.password_hash),
        Some("$argon2id$v=19$first".to_owned())
    );
    assert!(
        !a.set_password("nobody", "h").await.unwrap(),
        "no such account"
    );
    assert_eq!(a.get("nobody").await.unwrap(), None);
    // Many users, over every shard.
    for i in 0..50 {
        let uid = format!("user{i}");
        assert!(a.create(&account(&uid, "h")).await.unwrap());
        assert_eq!(a.get(&uid).await.unwrap().map(|a| a.uid), Some(uid));
    }
}

async fn concurrent_registrations_have_one_winner(a: &dyn Accounts) {
    let tries =
        (0..8).map(|i| async move { a.create(&account("carol", &format!("h{i}"))).await.unwrap() });
    let won = futures::future::join_all(tries).await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1);
}

#[tokio::test]
async fn memory_create_once_then_get() {
    create_once_then_get(&MemoryAccounts::default()).await;
}

#[tokio::test]
async fn memory_concurrent_registrations_have_one_winner() {
    concurrent_registrations_have_one_winner(&MemoryAccounts::default()).await;
}

#[tokio::test]
async fn postgres_single_create_once_then_get() {
    let (_server, store) = pg::single(InboxOptions::default()).await;
    create_once_then_get(store.as_ref()).await;
}

#[tokio::test]
async fn postgres_sharded_create_once_then_get() {
    let (_server, store) = pg::sharded(InboxOptions::default()).await;
    create_once_then_get(store.as_ref()).await;
}

#[tokio::test]
async fn postgres_concurrent_registrations_have_one_winner() {
    let (_server, store) = pg::sharded(InboxOptions::default()).await;
    concurrent_registrations_have_one_winner(store.as_ref()).await;
}

#[tokio::test]
async fn postgres_stopped_server_is_unavailable() {
    let (mut server, store) = pg::single(InboxOptions::default()).await;
    server.kill();
    let err = store.get("alice").await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    // And back once the server is.
    server.restart().await.unwrap();
    courier_testkit::eventually_async(
        "the store answers again",
        courier_testkit::PATIENCE,
        || async { store.get("alice").await.is_ok() },
    )
    .await;
}
