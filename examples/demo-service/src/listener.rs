//! A listening socket another instance can share: SO_REUSEPORT.
//!
//! Blue-green restarts start the new release on the port the old one still
//! serves; SO_REUSEPORT lets both listen at once (the kernel spreads new
//! connections over them) so that no connection is refused while the old
//! one stops. SO_REUSEADDR lets a restart bind while the previous
//! instance's connections sit in TIME_WAIT.

use std::io;
use std::net::{SocketAddr, TcpListener};

use rustix::net::{sockopt, AddressFamily, SocketType};

/// Room for the connections that arrive while the old instance hands over:
/// the kernel caps it at net.core.somaxconn anyway.
const BACKLOG: i32 = 1024;

/// Binds `addr` with SO_REUSEADDR and SO_REUSEPORT and listens.
pub fn bind_shared(addr: SocketAddr) -> io::Result<TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let socket = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_socket_reuseaddr(&socket, true)?;
    sockopt::set_socket_reuseport(&socket, true)?;
    rustix::net::bind(&socket, &addr)?;
    rustix::net::listen(&socket, BACKLOG)?;
    Ok(TcpListener::from(socket))
}

/// Whether the kernel hands a closing SO_REUSEPORT listener's queued
/// connections to a sibling (`net.ipv4.tcp_migrate_req`, Linux 5.14+, per
/// network namespace). `None` if the sysctl does not exist.
pub fn migrates_queued_connections() -> Option<bool> {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")
        .ok()
        .map(|value| value.trim() != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_listeners_share_one_port() {
        let first = bind_shared("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let second = bind_shared(addr).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        // Without SO_REUSEPORT on both, the second bind would fail.
        assert!(TcpListener::bind(addr).is_err());
    }
}
