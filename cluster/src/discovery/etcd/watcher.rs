//! Following the records under one prefix in etcd (a service kind's, or
//! the store's).
//!
//! The classic list-then-watch: a prefix `get` gives the view and its
//! revision, then an etcd watch from the next revision applies puts and
//! deletes. Whenever the watch fails (etcd down, stream closed, revision
//! compacted) the published view is left as it was — a router keeps
//! routing to the last known nodes — and the task takes a fresh snapshot
//! with backoff, publishing it only if it differs, before watching again.
//!
//! The task ends when every receiver of the view is dropped.

use etcd_client::{Client, GetOptions, KeyValue, WatchOptions};
use tokio::sync::watch;

use super::{backoff, call, pause};
use crate::discovery::View;
use crate::{Error, Result};

/// The current records under `prefix` and the etcd revision they were
/// read at.
pub(super) async fn snapshot(client: &mut Client, prefix: &'static str) -> Result<(View, i64)> {
    let options = GetOptions::new().with_prefix();
    let response = call(client.get(prefix, Some(options))).await?;
    let revision = response
        .header()
        .map(|h| h.revision())
        .ok_or_else(|| Error::corrupt("etcd", "get response without header"))?;
    let view = response
        .kvs()
        .iter()
        .filter_map(|kv| record(prefix, kv))
        .collect();
    Ok((view, revision))
}

/// The watcher task: publishes every change under `prefix` through `view`,
/// starting after `revision`.
pub(super) async fn follow(
    mut client: Client,
    prefix: &'static str,
    view: watch::Sender<View>,
    mut revision: i64,
) {
    loop {
        let failure = tokio::select! {
            _ = view.closed() => return,
            failure = watch_from(&mut client, prefix, &view, revision) => failure,
        };
        tracing::warn!(prefix, error = %failure, "etcd watch failed; keeping the last view and resynchronising");
        metrics::counter!("courier_discovery_resyncs_total", "backend" => "etcd").increment(1);

        let mut delays = backoff();
        revision = loop {
            if !pause(&mut delays, view.closed()).await {
                return;
            }
            let attempt = tokio::select! {
                _ = view.closed() => return,
                attempt = snapshot(&mut client, prefix) => attempt,
            };
            match attempt {
                Ok((fresh, revision)) => {
                    view.send_if_modified(|current| {
                        let changed = *current != fresh;
                        *current = fresh;
                        changed
                    });
                    tracing::info!(prefix, "etcd watch resynchronised");
                    break revision;
                }
                Err(e) => {
                    tracing::debug!(prefix, error = %e, "etcd still unavailable")
                }
            }
        };
    }
}

/// Applies watch events after `revision` to `view` until the watch fails;
/// returns why.
async fn watch_from(
    client: &mut Client,
    prefix: &'static str,
    view: &watch::Sender<View>,
    revision: i64,
) -> Error {
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision.saturating_add(1));
    let mut stream = match call(client.watch(prefix, Some(options))).await {
        Ok(stream) => stream,
        Err(e) => return e,
    };
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return Error::unavailable("etcd", "watch stream closed"),
            Err(e) => return Error::unavailable("etcd", e),
        };
        if response.canceled() || response.compact_revision() > 0 {
            return Error::unavailable(
                "etcd",
                format!(
                    "watch cancelled (compacted at {}): {}",
                    response.compact_revision(),
                    response.cancel_reason()
                ),
            );
        }
        if response.events().is_empty() {
            continue;
        }
        view.send_if_modified(|current| {
            let mut changed = false;
            for kv in response.events().iter().filter_map(|e| e.kv()) {
                // A delete event carries the bare key with version 0; a put
                // has version >= 1. (`Event::event_type` would panic on an
                // unknown type, so it is not used on data from the wire.)
                if kv.version() == 0 {
                    if let Some(id) = id_of(prefix, kv) {
                        changed |= current.remove(id).is_some();
                    }
                } else if let Some((id, value)) = record(prefix, kv) {
                    changed |= current.get(&id) != Some(&value);
                    current.insert(id, value);
                }
            }
            changed
        });
    }
}

/// The id of a key under `prefix`.
fn id_of<'a>(prefix: &str, kv: &'a KeyValue) -> Option<&'a str> {
    let key = std::str::from_utf8(kv.key()).ok()?;
    key.strip_prefix(prefix).filter(|id| !id.is_empty())
}

/// The `(id, value)` of a record, or `None` (logged) if it is not UTF-8.
fn record(prefix: &str, kv: &KeyValue) -> Option<(String, String)> {
    let Some(id) = id_of(prefix, kv) else {
        tracing::warn!(key = ?String::from_utf8_lossy(kv.key()), "ignoring malformed discovery key");
        return None;
    };
    match std::str::from_utf8(kv.value()) {
        Ok(value) => Some((id.to_owned(), value.to_owned())),
        Err(_) => {
            tracing::warn!(%id, "ignoring non-UTF-8 discovery record");
            None
        }
    }
}
