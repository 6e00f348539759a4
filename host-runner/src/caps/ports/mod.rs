//! The `ports` capability: is a local TCP port taken?

use crate::record::audit::{Audit, Decision};
use crate::runtime::bindings::openclaw::provisioner::ports;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Local port probes for the guest, each call audited.
pub struct PortsCap {
    pub audit: Arc<Audit>,
}

impl ports::Host for PortsCap {
    fn taken(&mut self, ports: Vec<u16>) -> Vec<u16> {
        taken(&ports, &self.audit)
    }
}

/// Which of `ports` are taken on 127.0.0.1 (in the order given), recorded as one audit
/// line per call. Privileged ports (< 1024) are never probed and count as taken. Each
/// distinct port is probed once, so a list's length cannot stretch the probing.
pub fn taken(ports: &[u16], audit: &Audit) -> Vec<u16> {
    taken_by(ports, audit, in_use)
}

fn taken_by(ports: &[u16], audit: &Audit, mut probe: impl FnMut(u16) -> bool) -> Vec<u16> {
    let (privileged, probed): (Vec<u16>, Vec<u16>) = ports.iter().partition(|&&p| p < 1024);
    if !privileged.is_empty() {
        audit.record("ports", "taken", &ranges(&privileged), Decision::Denied, "only ports 1024..65535 are probed");
    }
    if !probed.is_empty() {
        audit.record("ports", "taken", &ranges(&probed), Decision::Allowed, "local port probe (bind test)");
    }
    let busy: BTreeSet<u16> = probed.iter().copied().collect::<BTreeSet<u16>>().into_iter().filter(|&p| probe(p)).collect();
    ports.iter().copied().filter(|p| *p < 1024 || busy.contains(p)).collect()
}

/// True when something listens on 127.0.0.1:`port` or the port cannot be bound there.
pub(crate) fn in_use(port: u16) -> bool {
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

/// `18790-18792,18801-18900` for the sorted runs of `ports`.
fn ranges(ports: &[u16]) -> String {
    let mut sorted = ports.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<(u16, u16)> = Vec::new();
    for p in sorted {
        match runs.last_mut() {
            Some((_, end)) if u32::from(*end) + 1 == u32::from(p) => *end = p,
            _ => runs.push((p, p)),
        }
    }
    runs.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_listener_and_a_free_port() {
        let audit = Audit::stderr_only();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let held = listener.local_addr().unwrap().port();
        assert_eq!(taken(&[80, held], &audit), [80, held]);

        drop(listener);
        assert_eq!(taken(&[held], &audit), [] as [u16; 0]);
    }

    #[test]
    fn each_distinct_port_is_probed_once() {
        let mut probes = Vec::new();
        let list: Vec<u16> = [5000, 80, 5001].repeat(100_000);
        let taken = taken_by(&list, &Audit::stderr_only(), |p| {
            probes.push(p);
            p == 5001
        });
        assert_eq!(probes, [5000, 5001], "never the privileged one, each other once");
        assert_eq!(taken.len(), 200_000, "80 and 5001, every time they were asked about");
    }

    #[test]
    fn one_audit_line_names_every_port_asked_about() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let audit = Audit::open(&log, false).unwrap();
        let ports: Vec<u16> = (40001..=40003).chain(40014..=40113).collect();
        taken(&ports, &audit);
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("40001-40003,40014-40113"), "{text}");
    }
}
