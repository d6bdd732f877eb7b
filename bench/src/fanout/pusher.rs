//! The HTTP side of the fan-out bench: room pushes sent open loop at a
//! fixed rate, with a bounded number in flight.
//!
//! Open loop: the send times are fixed by the rate, not by when the
//! previous push returned, so a slow server shows as latency rather than as
//! a politely lowered load. Only the in-flight bound can hold sends back
//! (each in-flight request holds one pooled keep-alive connection, so the
//! bound is also the most connections logic sees); when it does, the
//! achieved send rate falls below the offered one and the report says so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::member::unix_micros;

/// `op` of every bench push.
pub(crate) const BENCH_OP: u32 = 1001;
/// One push request may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What to send and how fast.
#[derive(Debug, Clone)]
pub(crate) struct PushPlan {
    /// `…/api/v1/push/rooms/{room}`.
    pub(crate) url: String,
    pub(crate) api_key: String,
    pub(crate) pushes: u64,
    /// Pushes started per second; 0 = as fast as `in_flight` allows.
    pub(crate) rate: u64,
    pub(crate) in_flight: usize,
    /// Bytes of each push's `data` JSON text (at least its fixed part).
    pub(crate) payload: usize,
    /// No push is started after this.
    pub(crate) deadline: Instant,
}

/// What happened to the pushes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sent {
    /// Answered `202 Accepted`.
    pub(crate) accepted: u64,
    /// Not accepted, by HTTP status or transport error.
    pub(crate) rejected: BTreeMap<String, u64>,
    /// Unix µs just before the first request was sent.
    pub(crate) first_us: u64,
    /// Unix µs just before the last request was sent.
    pub(crate) last_us: u64,
}

impl Sent {
    /// Pushes started per second, first to last.
    pub(crate) fn send_rate(&self, pushes: u64) -> f64 {
        let secs = self.last_us.saturating_sub(self.first_us) as f64 / 1e6;
        if pushes < 2 || secs <= 0.0 {
            return 0.0;
        }
        (pushes - 1) as f64 / secs
    }
}

/// Sends `plan.pushes` room pushes (fewer if `plan.deadline` comes first)
/// and waits for every answer.
pub(crate) async fn send_pushes(plan: PushPlan) -> anyhow::Result<Sent> {
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(plan.in_flight)
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let permits = Arc::new(Semaphore::new(plan.in_flight.max(1)));
    let mut ticker = (plan.rate > 0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate as f64));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let mut answers = JoinSet::new();
    let mut sent = Sent::default();
    for i in 0..plan.pushes {
        let ready = async {
            if let Some(t) = ticker.as_mut() {
                t.tick().await;
            }
            permits.clone().acquire_owned().await
        };
        let Ok(permit) = tokio::time::timeout_at(plan.deadline, ready).await else {
            break;
        };
        let permit = permit?;
        let now = unix_micros();
        if i == 0 {
            sent.first_us = now;
        }
        sent.last_us = now;
        let request = http
            .post(&plan.url)
            .bearer_auth(&plan.api_key)
            .header(CONTENT_TYPE, "application/json")
            .body(push_body(now, plan.payload));
        answers.spawn(async move {
            let answer = match request.send().await {
                Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => None,
                Ok(r) => Some(format!("HTTP {}", r.status().as_u16())),
                Err(e) if e.is_timeout() => Some("timeout".to_owned()),
                Err(e) if e.is_connect() => Some("connect error".to_owned()),
                Err(_) => Some("request error".to_owned()),
            };
            drop(permit);
            answer
        });
        // Collect finished answers as we go so the set stays small.
        while let Some(done) = answers.try_join_next() {
            tally(&mut sent, done);
        }
    }
    while let Some(done) = answers.join_next().await {
        tally(&mut sent, done);
    }
    Ok(sent)
}

fn tally(sent: &mut Sent, done: Result<Option<String>, tokio::task::JoinError>) {
    match done {
        Ok(None) => sent.accepted += 1,
        Ok(Some(why)) => *sent.rejected.entry(why).or_default() += 1,
        Err(_) => *sent.rejected.entry("task failed".into()).or_default() += 1,
    }
}

/// The JSON body of one bench push:
/// `{"op":1001,"data":{"t":<t_us>,"p":"xxx…"}}`, padded so the `data` JSON
/// text is `payload` bytes long (or its fixed part, if that is longer).
pub(crate) fn push_body(t_us: u64, payload: usize) -> String {
    let fixed = data_json(t_us, "").len();
    let padding = "x".repeat(payload.saturating_sub(fixed));
    format!(
        r#"{{"op":{BENCH_OP},"data":{}}}"#,
        data_json(t_us, &padding)
    )
}

fn data_json(t_us: u64, padding: &str) -> String {
    format!(r#"{{"t":{t_us},"p":"{padding}"}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::sent_at_us;

    /// The `data` text as logic carries it: re-serialized from the parsed
    /// value (serde_json orders keys, so `p` comes first).
    fn data_as_delivered(body: &str) -> Vec<u8> {
        let v: serde_json::Value = serde_json::from_str(body).expect("body is JSON");
        assert_eq!(v["op"], BENCH_OP);
        serde_json::to_vec(&v["data"]).expect("re-encodes")
    }

    #[test]
    fn pads_data_to_the_payload_size() {
        let t = 1_750_000_000_123_456;
        for payload in [64, 100, 1024, 16 * 1024] {
            let data = data_as_delivered(&push_body(t, payload));
            assert_eq!(data.len(), payload, "payload {payload}");
            assert_eq!(sent_at_us(&data), Some(t));
        }
    }

    #[test]
    fn small_payloads_keep_the_timestamp() {
        let t = 1_750_000_000_123_456;
        let data = data_as_delivered(&push_body(t, 1));
        assert_eq!(data, br#"{"p":"","t":1750000000123456}"#.to_vec());
        assert_eq!(sent_at_us(&data), Some(t));
    }

    #[test]
    fn send_rate_counts_intervals() {
        let sent = Sent {
            first_us: 0,
            last_us: 1_000_000,
            ..Sent::default()
        };
        assert!((sent.send_rate(1001) - 1000.0).abs() < 1e-9);
        assert_eq!(sent.send_rate(1), 0.0);
    }
}
