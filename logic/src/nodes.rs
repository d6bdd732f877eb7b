//! The comets a new client may connect to, kept up to date from discovery.
//!
//! Login and `GET /nodes` are hot, and discovery records are JSON. Rather than
//! decoding and ranking on every request, one task follows the discovery
//! watch and publishes the decoded, ranked list behind a `watch` channel:
//! a request only clones an `Arc`. The task ends when the discovery watch
//! closes or when every [`CometView`] is dropped.

use std::sync::Arc;

use courier_cluster::discovery::{decode_view, rank_comets, View};
use courier_cluster::{CometNode, Discovery, ServiceKind};
use tokio::sync::watch;

/// Comets ranked for a new client (draining and weight-0 ones excluded).
#[derive(Debug, Clone)]
pub(crate) struct CometView {
    ranked: watch::Receiver<Arc<Vec<CometNode>>>,
}

impl CometView {
    /// Starts following discovery's comet records.
    pub(crate) async fn follow(discovery: &dyn Discovery) -> courier_cluster::Result<Self> {
        let mut source = discovery.watch(ServiceKind::Comet).await?;
        let first = rank(&source.borrow_and_update());
        let (tx, ranked) = watch::channel(first);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = source.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let next = rank(&source.borrow_and_update());
                        tx.send_replace(next);
                    }
                    () = tx.closed() => break,
                }
            }
        });
        Ok(Self { ranked })
    }

    /// A view that never changes (tests).
    #[cfg(test)]
    pub(crate) fn fixed(comets: Vec<CometNode>) -> Self {
        let (_tx, ranked) = watch::channel(Arc::new(rank_comets(comets)));
        Self { ranked }
    }

    /// The current ranking, best first.
    pub(crate) fn ranked(&self) -> Arc<Vec<CometNode>> {
        self.ranked.borrow().clone()
    }
}

fn rank(view: &View) -> Arc<Vec<CometNode>> {
    Arc::new(rank_comets(decode_view(view)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use courier_cluster::NodeState;

    fn comet(id: &str, connections: u32, state: NodeState) -> CometNode {
        CometNode {
            id: id.into(),
            tcp: format!("{id}:1"),
            ws: String::new(),
            grpc: format!("{id}:2"),
            weight: 1,
            connections,
            state,
        }
    }

    #[test]
    fn fixed_view_is_ranked() {
        let view = CometView::fixed(vec![
            comet("b", 5, NodeState::Serving),
            comet("a", 9, NodeState::Serving),
            comet("c", 0, NodeState::Draining),
        ]);
        let ids: Vec<_> = view.ranked().iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids, ["b", "a"]);
    }
}
