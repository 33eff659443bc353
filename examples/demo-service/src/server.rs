//! The accept loop, and the order of a graceful stop.
//!
//! Stop order matters for blue-green restarts on a shared port: stop
//! accepting, serve whatever already sits in the accept queue, close the
//! listener (the kernel then sends new connections only to the sibling
//! instance), close idle keep-alive connections, let requests in flight
//! finish. A connection that completes its handshake between the last
//! accept and the close is reset by Linux unless `net.ipv4.tcp_migrate_req`
//! is 1, which hands it to the sibling instead; hence the warning.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags};

use crate::connections::{Connections, Served};
use crate::listener::migrates_queued_connections;
use crate::service::Service;

/// Serves `listener` until `stop` becomes readable, then stops gracefully,
/// giving requests in flight up to `grace` to finish.
pub fn serve_until(
    listener: TcpListener,
    service: &Arc<Service>,
    stop: impl AsFd,
    grace: Duration,
) -> io::Result<Served> {
    // Non-blocking so that draining the queue ends at "nothing left"
    // instead of waiting for the next client.
    listener.set_nonblocking(true)?;
    let connections = Arc::new(Connections::default());
    loop {
        let mut fds = [
            PollFd::new(&listener, PollFlags::IN),
            PollFd::new(&stop, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if !fds[1].revents().is_empty() {
            break;
        }
        accept_queued(&listener, &connections, service)?;
    }
    if migrates_queued_connections() == Some(false) {
        eprintln!(
            "{}: warning: net.ipv4.tcp_migrate_req is 0 in this network namespace: connections \
             that reach the accept queue after the last accept are reset when the listener \
             closes instead of going to another instance on this port; set it to 1 \
             (Linux 5.14+) for restarts that drop no connection",
            service.tag()
        );
    }
    accept_queued(&listener, &connections, service)?;
    drop(listener);
    Ok(connections.stop(grace))
}

/// Accepts and serves every connection already queued, then returns.
fn accept_queued(
    listener: &TcpListener,
    connections: &Arc<Connections>,
    service: &Arc<Service>,
) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                // Accepted sockets do not inherit O_NONBLOCK on Linux;
                // said here so that no platform difference can creep in.
                stream.set_nonblocking(false)?;
                // Responses are single writes; do not hold them back.
                let _ = stream.set_nodelay(true);
                connections.serve(stream, service);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                // Out of descriptors: the connection stays queued; poll
                // would report it again at once, so pause instead of
                // spinning until a connection closes.
                eprintln!("{}: cannot accept: {e}", service.tag());
                thread::sleep(Duration::from_millis(50));
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}
