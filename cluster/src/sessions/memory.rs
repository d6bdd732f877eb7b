//! STUB: in-process session store (to be implemented).
use async_trait::async_trait;
use super::{CometReport, Online, Session, SessionOptions, Sessions};
use crate::{Error, Result};
/// In-process session store.
#[derive(Debug)]
pub struct MemorySessions { _opts: SessionOptions }
impl MemorySessions { /// New empty store.
    pub fn new(opts: SessionOptions) -> Self { Self { _opts: opts } } }
#[async_trait]
impl Sessions for MemorySessions {
    async fn add(&self, _: &Session) -> Result<()> { Err(Error::Closed) }
    async fn renew(&self, _: &Session) -> Result<bool> { Err(Error::Closed) }
    async fn remove(&self, _: &Session) -> Result<()> { Err(Error::Closed) }
    async fn user_sessions(&self, _: &str) -> Result<Vec<Session>> { Err(Error::Closed) }
    async fn key_session(&self, _: &str) -> Result<Option<Session>> { Err(Error::Closed) }
    async fn add_room_comet(&self, _: &str, _: &str) -> Result<()> { Err(Error::Closed) }
    async fn remove_room_comet(&self, _: &str, _: &str) -> Result<()> { Err(Error::Closed) }
    async fn room_comets(&self, _: &str) -> Result<Vec<String>> { Err(Error::Closed) }
    async fn report_comet(&self, _: &str, _: &CometReport) -> Result<()> { Err(Error::Closed) }
    async fn online(&self) -> Result<Online> { Err(Error::Closed) }
    async fn room_online(&self, _: &str) -> Result<u64> { Err(Error::Closed) }
    async fn top_rooms(&self, _: usize) -> Result<Vec<(String, u64)>> { Err(Error::Closed) }
    async fn online_users(&self, _: &str, _: usize) -> Result<(Vec<String>, Option<String>)> { Err(Error::Closed) }
}
