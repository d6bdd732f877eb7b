//! The web chat in a real browser: Debian's `chromium` driven by
//! `playwright-core` (tests/browser/chat.mjs) against a real cluster
//! (see `support::cluster`). Two pages chat in a room and privately, a
//! backend push reaches both, and one page survives a restart of its comet
//! and shows what it missed; when every comet they knew of is gone and a
//! new one serves elsewhere, both pages find it through `/nodes`. Then a room of 120 messages is read back by
//! scrolling up, to its first message, and a page told a room's head
//! unasked (a `HeartbeatReply` with `rooms`, injected by a WebSocket route)
//! reads the message that never reached it.
//!
//! Needs `chromium` and `npm ci --prefix tests/browser` (scripts/test.sh
//! does both); fails, never skips, without them. `COURIER_SCREENSHOTS=dir`
//! keeps the pages' screenshots (the README's come from there).

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::cluster::{RealCluster, API_KEY};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// Longest the whole browser run may take.
const RUN_LIMIT: Duration = Duration::from_secs(240);

#[tokio::test]
async fn two_people_chat_in_chromium_and_a_page_survives_a_comet_restart() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium is installed (apt-get install chromium)");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is installed (npm ci --prefix tests/browser)"
    );
    let mut cluster = RealCluster::start().await;

    let mut node = Command::new("node");
    node.arg(dir.join("chat.mjs"))
        .env("LOGIC_URL", cluster.logic_url())
        .env("API_KEY", API_KEY)
        .env("CHROMIUM", chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Ok(shots) = std::env::var("COURIER_SCREENSHOTS") {
        node.env("SCREENSHOTS", shots);
    }
    let mut node = node.spawn().expect("node runs");
    let mut to_node = node.stdin.take().unwrap();
    let mut from_node = BufReader::new(node.stdout.take().unwrap()).lines();

    let run = async {
        while let Some(line) = from_node.next_line().await.unwrap() {
            if let Some(id) = line.strip_prefix("restart ") {
                let i = cluster
                    .comets
                    .iter()
                    .position(|c| c.id == id)
                    .unwrap_or_else(|| panic!("no comet {id}"));
                cluster.comets[i].kill().await;
                cluster.comets[i] = cluster.spawn("comet", id).await;
                to_node.write_all(b"restarted\n").await.unwrap();
                to_node.flush().await.unwrap();
            } else if line == "move" {
                // Every comet the pages know of from their login goes; one
                // new comet, on new ports, is all there is.
                for comet in &mut cluster.comets {
                    comet.kill().await;
                }
                let moved = cluster.spawn("comet", "comet-moved").await;
                cluster.comets = vec![moved];
                to_node.write_all(b"moved\n").await.unwrap();
                to_node.flush().await.unwrap();
            } else if line == "ok" {
                return true;
            } else {
                println!("chat.mjs: {line}");
            }
        }
        false
    };
    let finished = tokio::time::timeout(RUN_LIMIT, run)
        .await
        .expect("the browser run finishes");
    let status = node.wait().await.unwrap();
    assert!(finished && status.success(), "chat.mjs failed: {status}");
}
