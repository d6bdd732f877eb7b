//! The operator's commands as a user runs them: `courier config`,
//! `courier token`, `courier push`, `courier online` and `courier drain`
//! as processes against an embedded system, each checked by what it did
//! (a message a connected client receives, a token a comet accepts) and
//! by its exit status when it is refused.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::process::Output;
use std::time::Duration;

use support::*;

/// Longest one command may take here.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `courier ARGS` with `env`; its output.
async fn courier(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_courier"));
    cmd.args(args).kill_on_drop(true).env("RUST_BACKTRACE", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(RUN_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("courier {args:?} did not finish"))
        .expect("courier runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn config_check_names_the_key_at_fault_and_passes_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = courier(&["config", "defaults"], &[]).await;
    assert!(defaults.status.success(), "{}", stderr(&defaults));
    let sample = dir.path().join("courier.toml");
    std::fs::write(&sample, stdout(&defaults)).unwrap();
    let sample = sample.to_str().unwrap();
    let ok = courier(&["config", "check", sample, "--role", "up"], &[]).await;
    assert!(ok.status.success(), "{}", stderr(&ok));

    // The defaults have no secrets: a comet cannot start on them.
    let comet = courier(&["config", "check", sample, "--role", "comet"], &[]).await;
    assert!(!comet.status.success());
    assert!(
        stderr(&comet).contains("comet.jwt_secret"),
        "{}",
        stderr(&comet)
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[logic]\nbody_limit = \"lots\"\n").unwrap();
    let out = courier(&["config", "check", bad.to_str().unwrap()], &[]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("logic.body_limit"),
        "{}",
        stderr(&out)
    );

    // The environment is checked with the file.
    let env = [("COURIER_COMET__HEARTBEAT", "often")];
    let out = courier(&["config", "check", sample, "--role", "up"], &env).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("comet.heartbeat"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_minted_token_connects_and_pushes_reach_the_user_and_the_room() {
    let system = start(1).await;
    let server = system.logic_url();
    let key = system.api_key().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("logic.toml");
    std::fs::write(
        &file,
        format!(
            "[auth]\njwt_secret = \"{}\"\n",
            system.config.auth.jwt_secret
        ),
    )
    .unwrap();

    // A token for a user who never registered a password: the comet takes
    // it as one logic signed.
    let minted = courier(
        &[
            "token",
            "--user",
            "carol",
            "--ttl",
            "10m",
            "--config",
            file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(minted.status.success(), "{}", stderr(&minted));
    let token = stdout(&minted).trim().to_owned();
    let mut conn = courier_testkit::frames::FrameClient::connect(system.comets[0].tcp).await;
    assert_eq!(conn.auth(&token, &[]).await.uid, "carol");

    let _ = courier_client::register(&server, "dave", PASSWORD).await;
    let (_dave, mut events) = device(&system, "dave", &["ops"]).await;
    let common = ["--server", server.as_str(), "--api-key", key.as_str()];
    let pushed = courier(
        &[
            &["push", "user", "dave", "--data", r#"{"n":1}"#][..],
            &common[..],
        ]
        .concat(),
        &[],
    )
    .await;
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert!(stdout(&pushed).contains("msg_id"), "{}", stdout(&pushed));
    next_message_is(&mut events, br#"{"n":1}"#).await;

    let pushed = courier(
        &[
            &["push", "room", "ops", "--data", r#""to the room""#][..],
            &common[..],
        ]
        .concat(),
        &[],
    )
    .await;
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    next_message_is(&mut events, br#""to the room""#).await;

    // Data that is not JSON never leaves the command.
    let refused = courier(
        &[
            &["push", "user", "dave", "--data", "{not json"][..],
            &common[..],
        ]
        .concat(),
        &[],
    )
    .await;
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--data"), "{}", stderr(&refused));

    let online = courier(&[&["online"][..], &common[..]].concat(), &[]).await;
    assert!(online.status.success(), "{}", stderr(&online));
    let comet = &system.comets[0].id;
    assert!(
        stdout(&online).contains(comet.as_str()),
        "{}",
        stdout(&online)
    );

    // A wrong key, and a comet that does not exist: refused, non-zero.
    let wrong = courier(
        &[
            "online",
            "--server",
            server.as_str(),
            "--api-key",
            "not-the-key",
        ],
        &[],
    )
    .await;
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("401"), "{}", stderr(&wrong));
    let missing = courier(
        &[&["drain", "comet-nowhere"][..], &common[..]].concat(),
        &[],
    )
    .await;
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("404"), "{}", stderr(&missing));
}

#[tokio::test]
async fn token_refuses_without_a_secret_and_for_a_bad_uid() {
    let no_secret = courier(&["token", "--user", "carol"], &[]).await;
    assert!(!no_secret.status.success());
    assert!(
        stderr(&no_secret).contains("jwt_secret"),
        "{}",
        stderr(&no_secret)
    );
    let secret = [(
        "COURIER_AUTH__JWT_SECRET",
        "0123456789abcdef0123456789abcdef",
    )];
    let bad_uid = courier(&["token", "--user", "bell\u{7}"], &secret).await;
    assert!(!bad_uid.status.success());
    assert!(stderr(&bad_uid).contains("--user"), "{}", stderr(&bad_uid));
    let ok = courier(&["token", "--user", "carol"], &secret).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[tokio::test]
async fn log_format_json_writes_one_json_object_a_line() {
    use tokio::io::AsyncBufReadExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_courier"));
    cmd.arg("up")
        .env("COURIER_LOG__FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in [
        ("COMET__TCP_ADDR", "127.0.0.1:0"),
        ("COMET__WS_ADDR", "127.0.0.1:0"),
        ("COMET__GRPC_ADDR", "127.0.0.1:0"),
        ("COMET__ADMIN_ADDR", "127.0.0.1:0"),
        ("JOB__ADMIN_ADDR", "127.0.0.1:0"),
        ("LOGIC__HTTP_ADDR", "127.0.0.1:0"),
        ("LOGIC__GRPC_ADDR", "127.0.0.1:0"),
        ("LOGIC__ADMIN_ADDR", "127.0.0.1:0"),
    ] {
        cmd.env(format!("COURIER_{key}"), value);
    }
    let mut child = cmd.spawn().expect("courier up starts");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    // Every line is a JSON object with a level and the event's fields;
    // the services log their start at info.
    let mut seen = 0;
    while seen < 3 {
        let line = tokio::time::timeout(RUN_LIMIT, lines.next_line())
            .await
            .expect("courier up logs")
            .unwrap()
            .expect("courier up still running");
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(event["level"].is_string(), "{line}");
        assert!(event["fields"].is_object(), "{line}");
        assert!(event["timestamp"].is_string(), "{line}");
        seen += 1;
    }
    child.kill().await.unwrap();
}
