//! TLS and credentials to every backend, against real servers on loopback
//! that serve TLS only with a certificate from a CA made for the test (the
//! cluster config's `backend_ca`) and require a user and password:
//! Redis (`rediss://`, single and cluster, ACL user), etcd (`etcds://`,
//! auth enabled), PostgreSQL (`sslmode`) and, as far as the test broker
//! goes, Kafka (librdkafka's `security.protocol`: the test broker, tansu,
//! serves neither TLS nor a SASL that checks passwords, so Kafka is only
//! shown to fail clearly, not to work, over TLS).
//!
//! Each backend is connected the way the services do it, through
//! [`courier_cluster::backends`] and a [`ClusterConfig`].
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use courier_cluster::backends;
use courier_cluster::{ClusterConfig, Error, ServiceKind, Session};
use courier_testkit::etcd::{EtcdSecurity, EtcdServer, AUTH_TOKEN_TTL};
use courier_testkit::kafka::KafkaBroker;
use courier_testkit::postgres::PostgresServer;
use courier_testkit::redis::{RedisCluster, RedisSecurity, RedisServer};
use courier_testkit::tls::TestCerts;

const USER: &str = "courier";
const PASSWORD: &str = "s3cret-pw";

/// How long a refused connection may take to be reported.
const REFUSAL: Duration = Duration::from_secs(30);

fn trusting(certs: &TestCerts) -> ClusterConfig {
    ClusterConfig {
        backend_ca: Some(certs.ca.clone()),
        ..ClusterConfig::default()
    }
}

fn session(uid: &str, key: &str) -> Session {
    Session {
        uid: uid.into(),
        key: key.into(),
        comet_id: "c1".into(),
        ..Session::default()
    }
}

/// The error of a connection that must fail, within [`REFUSAL`].
async fn refused<T>(
    what: &str,
    connect: impl std::future::Future<Output = Result<T, Error>>,
) -> String {
    match tokio::time::timeout(REFUSAL, connect).await {
        Ok(Ok(_)) => panic!("{what}: connected"),
        Ok(Err(e)) => {
            eprintln!("{what}: {e}");
            e.to_string()
        }
        Err(_) => panic!("{what}: still connecting after {REFUSAL:?}"),
    }
}

mod redis {
    use super::*;

    fn secured(certs: &TestCerts) -> RedisSecurity {
        RedisSecurity::default().tls(certs).user(USER, PASSWORD)
    }

    #[tokio::test]
    async fn rediss_with_an_acl_user_serves_sessions() {
        let certs = TestCerts::new().unwrap();
        let server = RedisServer::start_secured(secured(&certs)).await.unwrap();
        let url = server.url();
        assert!(url.starts_with(&format!("rediss://{USER}:{PASSWORD}@127.0.0.1:")));
        let config = ClusterConfig {
            sessions: url,
            ..trusting(&certs)
        };
        config.validate().unwrap();
        let sessions = backends::connect_sessions(&config).await.unwrap();
        sessions.add(&session("alice", "k1")).await.unwrap();
        assert_eq!(
            sessions.user_sessions("alice").await.unwrap(),
            vec![session("alice", "k1")]
        );
        assert!(sessions.check(&session("alice", "k1")).await.unwrap());
    }

    #[tokio::test]
    async fn a_wrong_password_is_refused_clearly() {
        let certs = TestCerts::new().unwrap();
        let server = RedisServer::start_secured(secured(&certs)).await.unwrap();
        let config = ClusterConfig {
            sessions: server.url().replace(PASSWORD, "wrong-pw"),
            ..trusting(&certs)
        };
        let e = refused("a wrong password", backends::connect_sessions(&config)).await;
        assert!(e.contains("redis unavailable"), "{e}");
        assert!(
            e.to_ascii_lowercase().contains("authentication failed"),
            "{e}"
        );
        assert!(e.contains(&format!("{USER}:***@")), "names the server: {e}");
        assert!(!e.contains("wrong-pw"), "no password in errors: {e}");

        // No user at all: the default user is disabled.
        let config = ClusterConfig {
            sessions: format!("rediss://127.0.0.1:{}", server.port()),
            ..trusting(&certs)
        };
        let e = refused("no user", backends::connect_sessions(&config)).await;
        assert!(e.contains("redis unavailable"), "{e}");
    }

    #[tokio::test]
    async fn a_certificate_from_an_untrusted_ca_is_refused() {
        let certs = TestCerts::new().unwrap();
        let server = RedisServer::start_secured(secured(&certs)).await.unwrap();
        // No backend_ca: the system's roots, which never signed the test CA.
        let config = ClusterConfig {
            sessions: server.url(),
            ..ClusterConfig::default()
        };
        let e = refused("an untrusted CA", backends::connect_sessions(&config)).await;
        assert!(e.contains("redis unavailable"), "{e}");
        assert!(
            e.to_ascii_lowercase().contains("certificate"),
            "says it is the certificate: {e}"
        );
        assert!(!e.contains(PASSWORD), "no password in errors: {e}");

        // A backend_ca that is not a certificate is refused as such.
        let dir = tempfile::tempdir().unwrap();
        let bogus = dir.path().join("ca.pem");
        std::fs::write(&bogus, "not a certificate").unwrap();
        let config = ClusterConfig {
            sessions: server.url(),
            backend_ca: Some(bogus),
            ..ClusterConfig::default()
        };
        let e = refused("a bogus CA file", backends::connect_sessions(&config)).await;
        assert!(e.contains("backend_ca") && e.contains("ca.pem"), "{e}");
    }

    #[tokio::test]
    async fn an_acl_user_without_tls() {
        let server = RedisServer::start_secured(RedisSecurity::default().user(USER, PASSWORD))
            .await
            .unwrap();
        let config = ClusterConfig {
            sessions: server.url(),
            ..ClusterConfig::default()
        };
        assert!(config.sessions.starts_with("redis://"));
        let sessions = backends::connect_sessions(&config).await.unwrap();
        sessions.add(&session("bob", "k2")).await.unwrap();
        assert_eq!(sessions.user_sessions("bob").await.unwrap().len(), 1);

        let config = ClusterConfig {
            sessions: server.url().replace(PASSWORD, "wrong-pw"),
            ..ClusterConfig::default()
        };
        let e = refused("a wrong password", backends::connect_sessions(&config)).await;
        assert!(!e.contains("wrong-pw"), "{e}");
    }

    #[tokio::test]
    async fn rediss_cluster_with_an_acl_user_serves_sessions() {
        let certs = TestCerts::new().unwrap();
        let cluster = RedisCluster::start_secured(secured(&certs)).await.unwrap();
        let url = cluster.url();
        assert!(url.starts_with(&format!("rediss+cluster://{USER}:{PASSWORD}@127.0.0.1:")));
        let config = ClusterConfig {
            sessions: url.clone(),
            ..trusting(&certs)
        };
        config.validate().unwrap();
        let sessions = backends::connect_sessions(&config).await.unwrap();
        // Users spread over the slots, so every node is reached.
        for i in 0..20 {
            let uid = format!("user-{i}");
            sessions
                .add(&session(&uid, &format!("k{i}")))
                .await
                .unwrap();
        }
        for i in 0..20 {
            let uid = format!("user-{i}");
            assert_eq!(sessions.user_sessions(&uid).await.unwrap().len(), 1);
        }

        let config = ClusterConfig {
            sessions: url.replace(PASSWORD, "wrong-pw"),
            ..trusting(&certs)
        };
        let e = refused("a wrong password", backends::connect_sessions(&config)).await;
        assert!(e.contains("redis unavailable"), "{e}");
        assert!(!e.contains("wrong-pw"), "{e}");
    }
}

mod etcd {
    use super::*;

    fn secured(certs: &TestCerts) -> EtcdSecurity {
        EtcdSecurity::default().tls(certs).root_password(PASSWORD)
    }

    #[tokio::test]
    async fn etcds_with_a_user_serves_discovery() {
        let certs = TestCerts::new().unwrap();
        let server = EtcdServer::start_secured(secured(&certs)).await.unwrap();
        let url = server.url();
        assert!(url.starts_with(&format!("etcds://root:{PASSWORD}@127.0.0.1:")));
        let config = ClusterConfig {
            discovery: url,
            lease_ttl: Duration::from_secs(2),
            ..trusting(&certs)
        };
        config.validate().unwrap();
        let discovery = backends::connect_discovery(&config).await.unwrap();
        let mut logics = discovery.watch(ServiceKind::Logic).await.unwrap();
        let registration = discovery
            .register(ServiceKind::Logic, "l1", "{}".into())
            .await
            .unwrap();
        let seen = |view: &courier_cluster::discovery::View, value: &str| {
            view.get("l1").is_some_and(|v| v == value)
        };
        tokio::time::timeout(REFUSAL, logics.wait_for(|v| seen(v, "{}")))
            .await
            .unwrap()
            .unwrap();

        // Past the server's token lifetime, calls, the lease's keep-alive
        // and the watch go on: the client renews its token.
        tokio::time::sleep(AUTH_TOKEN_TTL * 3).await;
        assert!(discovery.swap_store("main", None, "v1").await.unwrap());
        registration.update(r#"{"n":2}"#.into());
        tokio::time::timeout(REFUSAL, logics.wait_for(|v| seen(v, r#"{"n":2}"#)))
            .await
            .unwrap()
            .unwrap();
        let store = discovery.watch_store().await.unwrap();
        assert_eq!(store.borrow().get("main").map(String::as_str), Some("v1"));
    }

    #[tokio::test]
    async fn a_wrong_password_is_refused_clearly() {
        let certs = TestCerts::new().unwrap();
        let server = EtcdServer::start_secured(secured(&certs)).await.unwrap();
        let config = ClusterConfig {
            discovery: server.url().replace(PASSWORD, "wrong-pw"),
            ..trusting(&certs)
        };
        let e = refused("a wrong password", backends::connect_discovery(&config)).await;
        assert!(e.contains("etcd unavailable"), "{e}");
        assert!(e.contains("authentication failed"), "{e}");
        assert!(e.contains("root:***@"), "names the server: {e}");
        assert!(!e.contains("wrong-pw"), "no password in errors: {e}");

        // No user: every request is refused, the first one at start-up.
        let config = ClusterConfig {
            discovery: format!("etcds://{}", server.addr()),
            ..trusting(&certs)
        };
        let discovery = backends::connect_discovery(&config).await;
        let e = match discovery {
            Err(e) => e.to_string(),
            Ok(d) => refused("no user", d.watch(ServiceKind::Comet)).await,
        };
        assert!(e.contains("etcd unavailable"), "{e}");
    }

    #[tokio::test]
    async fn a_certificate_from_an_untrusted_ca_is_refused() {
        let certs = TestCerts::new().unwrap();
        let server = EtcdServer::start_secured(secured(&certs)).await.unwrap();
        let config = ClusterConfig {
            discovery: server.url(),
            ..ClusterConfig::default()
        };
        let e = refused("an untrusted CA", backends::connect_discovery(&config)).await;
        assert!(e.contains("etcd unavailable"), "{e}");
        assert!(!e.contains(PASSWORD), "no password in errors: {e}");

        // Plain etcd:// to a TLS-only server.
        let config = ClusterConfig {
            discovery: server.url().replace("etcds://", "etcd://"),
            ..trusting(&certs)
        };
        let e = refused("plain to TLS", backends::connect_discovery(&config)).await;
        assert!(e.contains("etcd unavailable"), "{e}");
    }
}

mod postgres {
    use std::sync::Arc;

    use courier_cluster::accounts::Account;
    use courier_cluster::backends::Store;
    use courier_cluster::discovery::memory::MemoryDiscovery;

    use super::*;

    async fn store(config: &ClusterConfig) -> Result<Store, Error> {
        backends::connect_store(config, Arc::new(MemoryDiscovery::default())).await
    }

    fn account(uid: &str) -> Account {
        Account {
            uid: uid.into(),
            password_hash: "hash".into(),
            created_at_ms: 1,
        }
    }

    /// An account written and read back through `store`.
    async fn works(store: &Store, uid: &str) {
        assert!(store.accounts.create(&account(uid)).await.unwrap());
        assert_eq!(
            store.accounts.get(uid).await.unwrap().map(|a| a.uid),
            Some(uid.to_owned())
        );
    }

    #[tokio::test]
    async fn verify_full_against_a_tls_only_server() {
        let certs = TestCerts::new().unwrap();
        let server = PostgresServer::start_tls(&certs).await.unwrap();
        let url = server.url();
        assert!(url.ends_with("?sslmode=verify-full"), "{url}");
        let config = ClusterConfig {
            store: url.clone(),
            ..trusting(&certs)
        };
        config.validate().unwrap();
        works(&store(&config).await.unwrap(), "alice").await;

        // `require` encrypts without checking the certificate: no CA needed.
        let config = ClusterConfig {
            store: url.replace("verify-full", "require"),
            ..ClusterConfig::default()
        };
        works(&store(&config).await.unwrap(), "bob").await;

        // Without TLS the server's pg_hba.conf has no line for us.
        let config = ClusterConfig {
            store: url.replace("verify-full", "disable"),
            ..ClusterConfig::default()
        };
        let e = refused("no TLS", store(&config)).await;
        assert!(e.contains("no encryption"), "{e}");
    }

    #[tokio::test]
    async fn a_certificate_from_an_untrusted_ca_is_refused() {
        let certs = TestCerts::new().unwrap();
        let server = PostgresServer::start_tls(&certs).await.unwrap();
        let config = ClusterConfig {
            store: server.url(),
            ..ClusterConfig::default()
        };
        let e = refused("an untrusted CA", store(&config)).await;
        assert!(e.contains("postgres unavailable"), "{e}");
        assert!(e.contains("UnknownIssuer"), "{e}");
        assert!(e.contains("shard `main`"), "names the shard: {e}");
    }

    #[tokio::test]
    async fn verify_ca_checks_the_chain_and_verify_full_the_name_too() {
        // A certificate for another name than the address connected to.
        let certs = TestCerts::for_names(&["db.courier.test"]).unwrap();
        let server = PostgresServer::start_tls(&certs).await.unwrap();
        let config = ClusterConfig {
            store: server.url(),
            ..trusting(&certs)
        };
        let e = refused("a certificate for another name", store(&config)).await;
        assert!(e.contains("not valid for name"), "{e}");

        let config = ClusterConfig {
            store: server.url().replace("verify-full", "verify-ca"),
            ..trusting(&certs)
        };
        works(&store(&config).await.unwrap(), "carol").await;

        // verify-ca still wants the chain.
        let other = TestCerts::for_names(&["db.courier.test"]).unwrap();
        let config = ClusterConfig {
            store: server.url().replace("verify-full", "verify-ca"),
            ..trusting(&other)
        };
        let e = refused("another CA", store(&config)).await;
        assert!(
            e.contains("UnknownIssuer") || e.contains("BadSignature"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn require_against_a_server_without_tls_fails_clearly() {
        let server = PostgresServer::start().await.unwrap();
        let config = ClusterConfig {
            store: format!("{}?sslmode=require", server.url()),
            ..ClusterConfig::default()
        };
        let e = refused("require without TLS", store(&config)).await;
        assert!(e.contains("postgres unavailable"), "{e}");
        assert!(e.contains("server does not support TLS"), "{e}");

        // `prefer`, the default, goes on without TLS.
        let config = ClusterConfig {
            store: server.url(),
            ..ClusterConfig::default()
        };
        works(&store(&config).await.unwrap(), "dave").await;

        let config = ClusterConfig {
            store: format!("{}?sslmode=allow", server.url()),
            ..ClusterConfig::default()
        };
        let e = refused("an unknown sslmode", store(&config)).await;
        assert!(e.contains("sslmode `allow`"), "{e}");
    }
}

mod kafka {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// librdkafka is built with TLS and SASL (SCRAM needs OpenSSL): a
    /// client configured for them is made, and against a broker that
    /// speaks neither it fails within the admin timeout, saying why.
    #[tokio::test]
    async fn tls_to_a_plain_broker_fails_clearly() {
        let certs = TestCerts::new().unwrap();
        let broker = KafkaBroker::start().await.unwrap();
        for (protocol, sasl) in [
            ("SSL", &[][..]),
            (
                "SASL_SSL",
                &[
                    ("sasl.mechanism", "SCRAM-SHA-512"),
                    ("sasl.username", USER),
                    ("sasl.password", PASSWORD),
                ][..],
            ),
        ] {
            let mut kafka = settings(&[("security.protocol", protocol)]);
            kafka.extend(settings(sasl));
            let config = ClusterConfig {
                queue: broker.url("tls"),
                kafka,
                ..trusting(&certs)
            };
            let e = refused(protocol, backends::connect_queue(&config)).await;
            assert!(e.contains("kafka unavailable"), "{protocol}: {e}");
            assert!(e.contains("creating topic tls"), "{protocol}: {e}");
            assert!(
                e.contains("Connection setup timed out in state SSL_HANDSHAKE"),
                "says why: {e}"
            );
            assert!(
                !e.contains("OpenSSL") && !e.contains("not supported"),
                "built with TLS and SASL: {e}"
            );
            assert!(!e.contains(PASSWORD), "no password in errors: {e}");
        }
    }

    /// A CA that is not a file librdkafka can read fails at once.
    #[tokio::test]
    async fn a_missing_ca_file_fails_at_once() {
        let broker = KafkaBroker::start().await.unwrap();
        let config = ClusterConfig {
            queue: broker.url("tls"),
            kafka: settings(&[("security.protocol", "SSL")]),
            backend_ca: Some("/nonexistent/ca.pem".into()),
            ..ClusterConfig::default()
        };
        let e = refused("a missing CA", backends::connect_queue(&config)).await;
        assert!(e.contains("ca.pem"), "{e}");
    }
}
