//! Opening many TCP connections from one machine, spread over loopback
//! source addresses.
//!
//! A comet admits at most `max_connections_per_ip` connections per client
//! address, and one source address has a limited range of ephemeral ports.
//! So connection number `i` binds its local side to the `i / per_source`-th
//! address after `127.0.0.1` (127.0.0.2, 127.0.0.3, …) before connecting.
//! Every address in 127.0.0.0/8 reaches the loopback interface on Linux
//! without configuration. The numbering is global, so worker processes that
//! are handed disjoint ranges of connection numbers use disjoint addresses.
//!
//! A destination that is not on loopback is dialled without binding: a
//! loopback source cannot reach it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

/// The first source address handed out: 127.0.0.2.
const FIRST_SOURCE: u32 = u32::from_be_bytes([127, 0, 0, 2]);
/// The last address of 127.0.0.0/8 usable as a source.
const LAST_SOURCE: u32 = u32::from_be_bytes([127, 255, 255, 254]);

/// Chooses the source address of each connection.
#[derive(Debug, Clone, Copy)]
pub struct SourceSpread {
    /// Connections per source address; 0 lets the kernel choose (no bind).
    per_source: u32,
}

impl SourceSpread {
    /// `per_source` connections per loopback source address; 0 binds none.
    pub fn new(per_source: u32) -> Self {
        Self { per_source }
    }

    /// The source address of connection number `index` to `dest`, or `None`
    /// to let the kernel choose.
    pub fn source_for(&self, index: u64, dest: &SocketAddr) -> Option<IpAddr> {
        if self.per_source == 0 || !dest.ip().is_loopback() || !dest.is_ipv4() {
            return None;
        }
        let offset = u32::try_from(index / u64::from(self.per_source)).ok()?;
        let ip = FIRST_SOURCE
            .checked_add(offset)
            .filter(|ip| *ip <= LAST_SOURCE)?;
        Some(IpAddr::V4(Ipv4Addr::from(ip)))
    }

    /// Source addresses used by connection numbers `0..count`.
    pub fn sources_used(&self, count: u64) -> u64 {
        if self.per_source == 0 || count == 0 {
            0
        } else {
            count.div_ceil(u64::from(self.per_source))
        }
    }

    /// Connects connection number `index` to `dest` within `timeout`, with
    /// `TCP_NODELAY` set.
    pub async fn connect(
        &self,
        index: u64,
        dest: SocketAddr,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        let socket = if dest.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = self.source_for(index, &dest) {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = tokio::time::timeout(timeout, socket.connect(dest))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_loopback_connections_over_sources() {
        let spread = SourceSpread::new(1000);
        let dest: SocketAddr = ([127, 0, 0, 1], 3101).into();
        assert_eq!(
            spread.source_for(0, &dest),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        );
        assert_eq!(
            spread.source_for(999, &dest),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        );
        assert_eq!(
            spread.source_for(1000, &dest),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)))
        );
        assert_eq!(
            spread.source_for(254_000, &dest),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 0)))
        );
        assert_eq!(spread.sources_used(1001), 2);
        let remote: SocketAddr = ([192, 0, 2, 1], 3101).into();
        assert_eq!(spread.source_for(0, &remote), None);
        assert_eq!(SourceSpread::new(0).source_for(0, &dest), None);
    }

    #[tokio::test]
    async fn connects_from_the_chosen_source() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let dest = listener.local_addr().expect("addr");
        let spread = SourceSpread::new(1);
        let stream = spread
            .connect(3, dest, Duration::from_secs(5))
            .await
            .expect("connect");
        let (_, peer) = listener.accept().await.expect("accept");
        assert_eq!(peer.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)));
        assert_eq!(stream.local_addr().expect("local").ip(), peer.ip());
    }
}
