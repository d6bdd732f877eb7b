//! The rooms one connection is in, as its reader keeps them.

/// The rooms one connection is in: a short list (at most `max_rooms`,
/// usually one or two), so a vector searched in order costs less memory
/// than a hash set and no more time.
#[derive(Debug, Default)]
pub(super) struct RoomSet(Vec<Box<str>>);

impl RoomSet {
    pub(super) fn contains(&self, room: &str) -> bool {
        self.0.iter().any(|r| **r == *room)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds `room`; `false` if it was there already.
    pub(super) fn insert(&mut self, room: String) -> bool {
        if self.contains(&room) {
            return false;
        }
        self.0.push(room.into_boxed_str());
        true
    }

    /// Removes `room`; `false` if it was not there.
    pub(super) fn remove(&mut self, room: &str) -> bool {
        match self.0.iter().position(|r| **r == *room) {
            Some(i) => {
                self.0.swap_remove(i);
                true
            }
            None => false,
        }
    }

    pub(super) fn drain(&mut self) -> impl Iterator<Item = Box<str>> + '_ {
        self.0.drain(..)
    }
}
