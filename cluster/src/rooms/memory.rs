//! In-process room rules and members: the `memory://` backend.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{check_members_per_call, JoinRule, RoomRules};
use crate::Result;

/// Room rules and members kept in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryRoomRules {
    rooms: Mutex<HashMap<String, Room>>,
}

#[derive(Debug, Default)]
struct Room {
    rule: Option<JoinRule>,
    members: BTreeSet<String>,
}

#[async_trait]
impl RoomRules for MemoryRoomRules {
    async fn set_rule(&self, room: &str, rule: JoinRule) -> Result<()> {
        self.rooms.lock().entry(room.to_owned()).or_default().rule = Some(rule);
        Ok(())
    }

    async fn rule(&self, room: &str) -> Result<Option<JoinRule>> {
        Ok(self.rooms.lock().get(room).and_then(|r| r.rule))
    }

    async fn add_members(&self, room: &str, uids: &[String]) -> Result<usize> {
        check_members_per_call("memory", uids)?;
        let mut rooms = self.rooms.lock();
        let members = &mut rooms.entry(room.to_owned()).or_default().members;
        Ok(uids
            .iter()
            .filter(|uid| members.insert((*uid).clone()))
            .count())
    }

    async fn remove_member(&self, room: &str, uid: &str) -> Result<bool> {
        Ok(self
            .rooms
            .lock()
            .get_mut(room)
            .is_some_and(|r| r.members.remove(uid)))
    }

    async fn is_member(&self, room: &str, uid: &str) -> Result<bool> {
        Ok(self
            .rooms
            .lock()
            .get(room)
            .is_some_and(|r| r.members.contains(uid)))
    }

    async fn members(&self, room: &str, after: &str, limit: usize) -> Result<Vec<String>> {
        let rooms = self.rooms.lock();
        let Some(r) = rooms.get(room) else {
            return Ok(Vec::new());
        };
        let from = match after {
            "" => Bound::Unbounded,
            after => Bound::Excluded(after.to_owned()),
        };
        Ok(r.members
            .range((from, Bound::Unbounded))
            .take(limit)
            .cloned()
            .collect())
    }
}
