//! The `ports` capability: is a local TCP port taken?

use crate::audit::{Audit, Decision};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// True when something listens on 127.0.0.1:`port` (or the port cannot be bound there).
/// Privileged ports (< 1024) are never probed and count as taken.
pub fn in_use(port: u16, audit: &Audit) -> bool {
    if port < 1024 {
        audit.record("ports", "in-use", &port.to_string(), Decision::Denied, "only ports 1024..65535 are probed");
        return true;
    }
    audit.record("ports", "in-use", &port.to_string(), Decision::Allowed, "local port probe (bind test)");
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpListener::bind(address) {
        Err(_) => true,
        // Bound: nobody holds 127.0.0.1:port, but a listener on another address (say
        // [::]) may still answer there.
        Ok(listener) => {
            drop(listener);
            TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_listener_and_a_free_port() {
        let audit = Audit::stderr_only(vec![]);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken = listener.local_addr().unwrap().port();
        assert!(in_use(taken, &audit));
        drop(listener);
        assert!(!in_use(taken, &audit));
        assert!(in_use(80, &audit));
    }
}
