//! Listeners and the addresses other services see them at.
//!
//! A service binds a listener (often to `0.0.0.0` or port 0), learns the
//! address it really got, and registers in discovery the address peers
//! should dial. Comet and logic both do exactly this, so it lives here once:
//! the configured advertise host wins, an unspecified bind address becomes
//! loopback, and an IPv6 host is bracketed.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use tokio::net::TcpListener;

/// Listen backlog asked of the kernel, which caps it at
/// `net.core.somaxconn`: as deep as the host allows, so a reconnect storm
/// queues SYNs instead of dropping them.
pub const LISTEN_BACKLOG: u32 = 65_535;

/// Binds `addr` (address reuse on, backlog [`LISTEN_BACKLOG`]) and returns
/// the listener with the address it actually got (so port 0 resolves to the
/// real port before anything is served).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(LISTEN_BACKLOG)?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// `host:port` other services should dial for a listener bound to `bound`.
///
/// `host` is the configured advertise host; `None` or an empty string means
/// "use the bound IP", with an unspecified IP (`0.0.0.0`, `::`) replaced by
/// `127.0.0.1` so the record is dialable on a single machine.
pub fn advertised(bound: SocketAddr, host: Option<&str>) -> String {
    let port = bound.port();
    match host.filter(|h| !h.is_empty()) {
        Some(h) if h.contains(':') && !h.starts_with('[') => format!("[{h}]:{port}"),
        Some(h) => format!("{h}:{port}"),
        None if bound.ip().is_unspecified() => format!("127.0.0.1:{port}"),
        None => bound.to_string(),
    }
}

/// Serde for an optional listener address in config files, where TOML has
/// no `null`: an empty string (or `off`) means "not served", anything else
/// must parse as a socket address. Use with
/// `#[serde(with = "courier_runtime::net::optional_addr")]`.
pub mod optional_addr {
    use std::net::SocketAddr;

    use serde::{de, Deserialize, Deserializer, Serializer};

    /// Writes `None` as `""`, so a written config reads back the same.
    pub fn serialize<S: Serializer>(
        addr: &Option<SocketAddr>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match addr {
            Some(addr) => serializer.collect_str(addr),
            None => serializer.serialize_str(""),
        }
    }

    /// Reads `null`, `""` or `off` as `None`, else a socket address.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        let text: Option<String> = Option::deserialize(deserializer)?;
        match text.as_deref().map(str::trim) {
            None | Some("") | Some("off") => Ok(None),
            Some(addr) => addr.parse().map(Some).map_err(|_| {
                de::Error::invalid_value(
                    de::Unexpected::Str(addr),
                    &"a socket address such as 127.0.0.1:3103, or \"\" to disable",
                )
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::advertised;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Admin {
        #[serde(with = "super::optional_addr")]
        addr: Option<std::net::SocketAddr>,
    }

    #[test]
    fn optional_addresses_parse_and_empty_disables() {
        let parse = |json: &str| serde_json::from_str::<Admin>(json).map(|a| a.addr);
        assert_eq!(
            parse(r#"{"addr":"127.0.0.1:3103"}"#).unwrap(),
            Some("127.0.0.1:3103".parse().unwrap())
        );
        assert_eq!(parse(r#"{"addr":""}"#).unwrap(), None);
        assert_eq!(parse(r#"{"addr":"off"}"#).unwrap(), None);
        assert_eq!(parse(r#"{"addr":null}"#).unwrap(), None);
        assert!(parse(r#"{"addr":"localhost"}"#).is_err());
        let written = serde_json::to_string(&Admin { addr: None }).unwrap();
        assert_eq!(parse(&written).unwrap(), None);
    }

    #[test]
    fn unspecified_ips_become_loopback() {
        assert_eq!(
            advertised("0.0.0.0:7".parse().unwrap(), None),
            "127.0.0.1:7"
        );
        assert_eq!(
            advertised("0.0.0.0:3119".parse().unwrap(), None),
            "127.0.0.1:3119"
        );
        assert_eq!(advertised("[::]:7".parse().unwrap(), None), "127.0.0.1:7");
    }

    #[test]
    fn a_specific_bound_ip_is_kept() {
        assert_eq!(
            advertised("10.0.0.2:7".parse().unwrap(), None),
            "10.0.0.2:7"
        );
        assert_eq!(
            advertised("127.0.0.2:1".parse().unwrap(), None),
            "127.0.0.2:1"
        );
        assert_eq!(advertised("[::1]:7".parse().unwrap(), None), "[::1]:7");
    }

    #[test]
    fn the_advertise_host_wins() {
        let any = "0.0.0.0:3119".parse().unwrap();
        assert_eq!(advertised(any, Some("comet.example")), "comet.example:3119");
        assert_eq!(advertised(any, Some("logic.local")), "logic.local:3119");
        assert_eq!(advertised(any, Some("::1")), "[::1]:3119");
        assert_eq!(advertised(any, Some("[::1]")), "[::1]:3119");
        assert_eq!(advertised(any, Some("")), "127.0.0.1:3119");
    }
}

/// The unit one client is counted by in per-address limits: an IPv4
/// address as is (also when mapped into IPv6), an IPv6 address's /64 (one
/// host on IPv6 typically holds a whole /64, so counting single addresses
/// would let it pass any limit).
pub fn client_net(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod client_net_tests {
    use super::client_net;

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_client_its_address() {
        let net = |ip: &str| client_net(ip.parse().unwrap());
        assert_eq!(net("2001:db8:1:2::1"), net("2001:db8:1:2:ffff::9"));
        assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
        assert_eq!(net("::ffff:10.0.0.1"), net("10.0.0.1"));
        assert_ne!(net("10.0.0.1"), net("10.0.0.2"));
    }
}
