//! A recorder for the fakes tests put in place of a service: each call is
//! recorded, and a test waits until the calls it expects have arrived.

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::wait::PATIENCE;

/// Calls received so far, in order.
#[derive(Debug)]
pub struct CallLog<T> {
    calls: Mutex<Vec<T>>,
    arrived: Notify,
}

impl<T> Default for CallLog<T> {
    fn default() -> Self {
        Self {
            calls: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        }
    }
}

impl<T: Clone + std::fmt::Debug> CallLog<T> {
    /// Records one call and wakes whoever waits.
    pub fn record(&self, call: T) {
        self.calls.lock().push(call);
        self.arrived.notify_waiters();
    }

    /// Every call so far.
    pub fn all(&self) -> Vec<T> {
        self.calls.lock().clone()
    }

    /// How many calls so far match `f`.
    pub fn count(&self, f: impl Fn(&T) -> bool) -> usize {
        self.calls.lock().iter().filter(|c| f(c)).count()
    }

    /// Waits (up to [`PATIENCE`]) until `found` finds something in the calls
    /// so far; panics naming what was `expected`, with the calls, otherwise.
    pub async fn wait_until<R>(&self, expected: &str, found: impl Fn(&[T]) -> Option<R>) -> R {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            // Registered before looking, so a call recorded in between
            // still wakes us.
            let arrived = self.arrived.notified();
            if let Some(found) = found(&self.calls.lock()) {
                return found;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("never received {expected}: {:?}", self.calls.lock());
            }
        }
    }

    /// Waits for the first call `f` maps to something.
    pub async fn wait_for<R>(&self, f: impl Fn(&T) -> Option<R>) -> R {
        self.wait_until("the expected call", |calls| calls.iter().find_map(&f))
            .await
    }

    /// Waits until `n` calls match `f`.
    pub async fn wait_count(&self, f: impl Fn(&T) -> bool, n: usize) {
        self.wait_until(&format!("{n} matching calls"), |calls| {
            (calls.iter().filter(|c| f(c)).count() >= n).then_some(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_waiter_wakes_when_the_call_arrives() {
        let log = Arc::new(CallLog::default());
        let waiter = tokio::spawn({
            let log = log.clone();
            async move { log.wait_for(|c: &u32| (*c > 1).then_some(*c)).await }
        });
        log.record(1);
        log.record(2);
        assert_eq!(waiter.await.expect("the waiter finishes"), 2);
        assert_eq!(log.count(|_| true), 2);
        log.wait_count(|c| *c >= 1, 2).await;
    }
}
