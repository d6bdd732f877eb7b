//! Waiting for something a test expects to happen, with a deadline.
//!
//! Every wait is bounded: a condition that never holds fails the test with
//! what it was waiting for, never hangs it. Polls run on tokio's clock, so
//! they also work under paused time.

use std::future::Future;
use std::time::Duration;

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Pause between two polls.
const POLL: Duration = Duration::from_millis(10);

/// Polls `check` until it holds; panics naming `what` after [`PATIENCE`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    until_some(what, PATIENCE, || std::future::ready(check().then_some(()))).await
}

/// Polls the async `check` until it holds; panics naming `what` after
/// `within`.
pub async fn eventually_async<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    until_some(what, within, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls the async `probe` until it returns a value; panics naming `what`
/// after `within`.
pub async fn until_some<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_until_the_condition_holds() {
        let mut polls = 0;
        eventually("three polls", || {
            polls += 1;
            polls == 3
        })
        .await;
        assert_eq!(polls, 3);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "waiting for: never")]
    async fn panics_with_what_it_waited_for() {
        eventually_async("never", Duration::from_secs(1), || async { false }).await;
    }
}
