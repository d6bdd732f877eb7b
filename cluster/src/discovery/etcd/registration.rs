//! One registration's life in etcd: a key under a lease, kept alive.
//!
//! The task owns a [`Lease`] (grant + put + keep-alive stream) and loops:
//! a keep-alive every third of the TTL, a `put` under the same lease for
//! every [`Registration::update`](crate::Registration::update). When the
//! lease is lost — etcd unreachable, the stream closed, an answer with TTL
//! 0, no answer within a TTL — the record may be gone, so the task
//! publishes it again (new lease + put of the *current* value) with
//! backoff until etcd answers. Re-putting the key moves it to the new
//! lease, so an old lease that survived the outage cannot take it away.
//!
//! On cancel the task revokes its lease (which deletes the key), bounded by
//! [`REVOKE_TIMEOUT`]; if etcd does not answer the key dies with the lease.

use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{backoff, call, pause, REVOKE_TIMEOUT};
use crate::Result;

/// What a registration writes: one key under leases of one TTL.
pub(super) struct Record {
    client: Client,
    key: String,
    ttl_secs: i64,
}

/// A granted lease holding the record, with its keep-alive stream.
pub(super) struct Lease {
    id: i64,
    ttl: Duration,
    keeper: LeaseKeeper,
    answers: LeaseKeepAliveStream,
}

/// Why a [`Lease`] stopped being maintained.
enum Ended {
    /// The registration was ended: remove the record.
    Cancelled,
    /// The lease is (or may be) gone: publish again.
    Lost(String),
}

impl Record {
    pub(super) fn new(client: Client, key: String, ttl_secs: i64) -> Self {
        Self {
            client,
            key,
            ttl_secs,
        }
    }

    /// Grants a lease, writes `value` under it and opens its keep-alive.
    pub(super) async fn publish(&self, value: &str) -> Result<Lease> {
        let mut client = self.client.clone();
        let grant = call(client.lease_grant(self.ttl_secs, None)).await?;
        let id = grant.id();
        let options = PutOptions::new().with_lease(id);
        call(client.put(self.key.as_str(), value, Some(options))).await?;
        let (keeper, answers) = call(client.lease_keep_alive(id)).await?;
        let ttl_secs = u64::try_from(grant.ttl()).unwrap_or(0).max(1);
        Ok(Lease {
            id,
            ttl: Duration::from_secs(ttl_secs),
            keeper,
            answers,
        })
    }

    /// Keeps `lease` alive and writes value updates until it is lost or
    /// the registration is cancelled.
    async fn maintain(
        &self,
        lease: &mut Lease,
        value: &mut watch::Receiver<String>,
        cancel: &CancellationToken,
    ) -> Ended {
        let mut client = self.client.clone();
        let period = lease.ttl / 3;
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_answer = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ended::Cancelled,
                changed = value.changed() => {
                    if changed.is_err() {
                        return Ended::Cancelled; // the Registration is gone
                    }
                    let current = value.borrow_and_update().clone();
                    let options = PutOptions::new().with_lease(lease.id);
                    if let Err(e) = call(client.put(self.key.as_str(), current, Some(options))).await {
                        return Ended::Lost(e.to_string());
                    }
                }
                answer = lease.answers.message() => match answer {
                    Ok(Some(answer)) if answer.ttl() > 0 => last_answer = Instant::now(),
                    Ok(Some(_)) => return Ended::Lost("lease expired".into()),
                    Ok(None) => return Ended::Lost("keep-alive stream closed".into()),
                    Err(e) => return Ended::Lost(e.to_string()),
                },
                _ = ticks.tick() => {
                    if last_answer.elapsed() > lease.ttl {
                        return Ended::Lost("no keep-alive answer within the lease TTL".into());
                    }
                    if let Err(e) = lease.keeper.keep_alive().await {
                        return Ended::Lost(e.to_string());
                    }
                }
            }
        }
    }

    /// Publishes the current value again, retrying with backoff; `None` if
    /// cancelled first.
    async fn republish(
        &self,
        value: &mut watch::Receiver<String>,
        cancel: &CancellationToken,
    ) -> Option<Lease> {
        let mut delays = backoff();
        loop {
            let current = value.borrow_and_update().clone();
            let attempt = tokio::select! {
                _ = cancel.cancelled() => return None,
                attempt = self.publish(&current) => attempt,
            };
            match attempt {
                Ok(lease) => {
                    tracing::info!(key = %self.key, "discovery record re-registered in etcd");
                    return Some(lease);
                }
                Err(e) => {
                    tracing::debug!(key = %self.key, error = %e, "etcd still unavailable");
                    if !pause(&mut delays, cancel.cancelled()).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Revokes `lease_id`, deleting the key, within [`REVOKE_TIMEOUT`].
    async fn revoke(&self, lease_id: i64) {
        let mut client = self.client.clone();
        match tokio::time::timeout(REVOKE_TIMEOUT, client.lease_revoke(lease_id)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(key = %self.key, error = %e, "could not revoke etcd lease; the record expires with it");
            }
            Err(_) => {
                tracing::warn!(key = %self.key, "etcd lease revoke timed out; the record expires with the lease");
            }
        }
    }
}

/// The registration task: maintains `lease`, re-publishes after losing it,
/// and removes the record once `cancel` fires (or the value sender is
/// dropped).
pub(super) async fn keep_registered(
    record: Record,
    lease: Lease,
    mut value: watch::Receiver<String>,
    cancel: CancellationToken,
) {
    let mut last_lease_id = lease.id;
    let mut current = Some(lease);
    loop {
        let mut lease = match current.take() {
            Some(lease) => lease,
            None => match record.republish(&mut value, &cancel).await {
                Some(lease) => lease,
                None => break,
            },
        };
        last_lease_id = lease.id;
        match record.maintain(&mut lease, &mut value, &cancel).await {
            Ended::Cancelled => break,
            Ended::Lost(reason) => {
                tracing::warn!(key = %record.key, %reason, "etcd lease lost; re-registering");
                metrics::counter!("courier_discovery_reregistrations_total", "backend" => "etcd")
                    .increment(1);
            }
        }
    }
    // The last lease may still hold the key (e.g. cancelled during an
    // outage, before etcd expired it): revoke it either way.
    record.revoke(last_lease_id).await;
}
