//! The comets a new client may connect to, kept up to date from discovery.
//!
//! Login and `GET /nodes` are hot, and discovery records are JSON. Rather than
//! decoding and ranking on every request, one task follows the discovery
//! watch and publishes the decoded, ranked list behind a `watch` channel:
//! a request only clones an `Arc`. The task ends when the discovery watch
//! closes or when every [`CometView`] is dropped.

use std::sync::Arc;

use courier_cluster::discovery::{decode_view, rank_comets};
use courier_cluster::{CometNode, Discovery, ServiceKind};
use tokio::sync::watch;

/// Comets ranked for a new client (draining and weight-0 ones excluded),
/// and every registered comet.
#[derive(Debug, Clone)]
pub(crate) struct CometView {
    ranked: watch::Receiver<Arc<Vec<CometNode>>>,
    all: watch::Receiver<Arc<Vec<CometNode>>>,
}

impl CometView {
    /// Starts following discovery's comet records.
    pub(crate) async fn follow(discovery: &dyn Discovery) -> courier_cluster::Result<Self> {
        let mut source = discovery.watch(ServiceKind::Comet).await?;
        let first: Vec<CometNode> = decode_view(&source.borrow_and_update());
        let (all_tx, all) = watch::channel(Arc::new(first.clone()));
        let (tx, ranked) = watch::channel(Arc::new(rank_comets(first)));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = source.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let nodes: Vec<CometNode> = decode_view(&source.borrow_and_update());
                        all_tx.send_replace(Arc::new(nodes.clone()));
                        tx.send_replace(Arc::new(rank_comets(nodes)));
                    }
                    () = tx.closed() => break,
                }
            }
        });
        Ok(Self { ranked, all })
    }

    /// The registered comet `id`, serving or draining.
    pub(crate) fn find(&self, id: &str) -> Option<CometNode> {
        self.all.borrow().iter().find(|c| c.id == id).cloned()
    }

    /// Every registered comet, serving or draining.
    pub(crate) fn all(&self) -> Arc<Vec<CometNode>> {
        self.all.borrow().clone()
    }

    /// A view that never changes (tests).
    #[cfg(test)]
    pub(crate) fn fixed(comets: Vec<CometNode>) -> Self {
        let (_all_tx, all) = watch::channel(Arc::new(comets.clone()));
        let (_tx, ranked) = watch::channel(Arc::new(rank_comets(comets)));
        Self { ranked, all }
    }

    /// The current ranking, best first.
    pub(crate) fn ranked(&self) -> Arc<Vec<CometNode>> {
        self.ranked.borrow().clone()
    }
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
