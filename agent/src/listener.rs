//! Binding the listening socket.
//!
//! Three lessons of the original socket tutorial live here:
//! - SO_REUSEADDR, so an agent restarted at once binds its port even while connections of the
//!   previous process sit in TIME_WAIT (no "address already in use"). SO_REUSEPORT is *not*
//!   set: it would let a second agent silently share the port.
//! - A `[::]` address accepts IPv4 too (IPV6_V6ONLY off), so the default serves both.
//! - A backlog of 1024 instead of tokio's 128: a controller fanning out to a room opens
//!   hundreds of connections at once, and an overflowing queue drops SYNs that are only
//!   retried after a second (measured: `shared/notes/tls-floor.md`).

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Listen backlog.
pub const BACKLOG: i32 = 1024;

/// Binds `addr` with the options above.
///
/// # Errors
/// The address cannot be bound (in use by another process, not local, no permission).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Binds `[::]:port`, falling back to `0.0.0.0:port` on hosts without IPv6.
///
/// # Errors
/// Neither address can be bound.
pub fn bind_any(port: u16) -> std::io::Result<TcpListener> {
    bind(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)))
        .or_else(|_| bind(SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rebinding_right_after_close_works() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        // Leave a connection behind so the port has TIME_WAIT state when we close.
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server_side, _) = first.accept().await.unwrap();
        drop(server_side);
        drop(client);
        drop(first);
        let again = bind(addr).expect("rebind at once");
        assert_eq!(again.local_addr().unwrap(), addr);
    }

    #[tokio::test]
    async fn a_second_listener_on_a_live_port_is_refused() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let err = bind(first.local_addr().unwrap()).expect_err("port in use");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}
