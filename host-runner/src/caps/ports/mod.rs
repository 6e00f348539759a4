//! The `ports` capability: is a local TCP port taken? Asked only about the ports this
//! run may plan with, so it is no loopback port scanner.

use crate::record::audit::{Audit, Decision};
use crate::runtime::bindings::openclaw::provisioner::ports;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// The most distinct ports one call is answered for (the `ports` command asks about
/// every sibling's claimed ports at once: 103 each).
pub const MAX_PER_CALL: usize = 8192;
/// The most distinct ports of the search window one run is answered for, beyond the
/// claimed ranges it knows: a free base is found within them on any host but a crowded one.
pub const WINDOW_BUDGET: usize = 4096;

/// The ports a run may ask about: the claimed ranges (`naming::claimed_ports`) of the
/// bases it knows before the component runs — the task's port, the sibling's in its
/// archive record or adoption, every registered sibling's and every journal's — and, for
/// a command that searches for a free base (`--auto-port`, `--re-port`, `ports`), the
/// window from `--port-range-start` up, at most [`WINDOW_BUDGET`] ports of it.
#[derive(Clone, Debug, Default)]
pub struct PortScope {
    claimed: BTreeSet<u16>,
    window: Option<u16>,
    window_used: BTreeSet<u16>,
}

impl PortScope {
    /// The claimed ranges of `bases`, and the search window from `window` up.
    pub fn new(bases: impl IntoIterator<Item = u16>, window: Option<u16>) -> Self {
        let claimed = bases
            .into_iter()
            .flat_map(|b| naming::claimed_ports(b).into_iter().flatten())
            .filter_map(|p| u16::try_from(p).ok())
            .collect();
        Self { claimed, window, window_used: BTreeSet::new() }
    }

    /// Whether the `index`th distinct port of a call, `port`, may be probed, or why not.
    fn admit(&mut self, port: u16, index: usize) -> Result<(), String> {
        if port < 1024 {
            return Err("only ports 1024..65535 are probed".into());
        }
        if index >= MAX_PER_CALL {
            return Err(format!("at most {MAX_PER_CALL} ports are probed per call"));
        }
        if self.claimed.contains(&port) {
            return Ok(());
        }
        match self.window {
            Some(start) if port >= start && (self.window_used.contains(&port) || self.window_used.len() < WINDOW_BUDGET) => {
                self.window_used.insert(port);
                Ok(())
            }
            Some(start) if port >= start => Err(format!("the search from {start} has used its {WINDOW_BUDGET} ports")),
            _ => Err(format!("not in the claimed ranges of this run's plan ({})", self.describe())),
        }
    }

    /// `the claimed ranges 18790-18792,18801-18900 and the search window from 18790`.
    pub fn describe(&self) -> String {
        let claimed: Vec<u16> = self.claimed.iter().copied().collect();
        let claimed = if claimed.is_empty() { "no claimed range".to_string() } else { format!("claimed {}", ranges(&claimed)) };
        match self.window {
            Some(start) => format!("{claimed}; the search window from {start}, at most {WINDOW_BUDGET} ports"),
            None => claimed,
        }
    }
}

/// Local port probes for the guest, each call audited.
pub struct PortsCap {
    pub audit: Arc<Audit>,
    pub scope: PortScope,
}

impl ports::Host for PortsCap {
    fn taken(&mut self, ports: Vec<u16>) -> Vec<u16> {
        taken(&ports, &self.audit, &mut self.scope)
    }
}

/// Which of `ports` are taken on 127.0.0.1, as the capability answers within `scope`.
pub fn taken(ports: &[u16], audit: &Audit, scope: &mut PortScope) -> Vec<u16> {
    taken_by(ports, audit, scope, in_use)
}

/// Which of `ports` are taken on 127.0.0.1 (in the order given), recorded as one audit
/// line per call and per reason a port was refused. A port outside `scope` is never
/// probed and counts as taken. Each distinct port is probed once, so a list's length
/// cannot stretch the probing.
fn taken_by(ports: &[u16], audit: &Audit, scope: &mut PortScope, mut probe: impl FnMut(u16) -> bool) -> Vec<u16> {
    let mut refused: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    let mut probed = Vec::new();
    for (index, port) in ports.iter().copied().collect::<BTreeSet<u16>>().into_iter().enumerate() {
        match scope.admit(port, index) {
            Ok(()) => probed.push(port),
            Err(why) => refused.entry(why).or_default().push(port),
        }
    }
    for (why, ports) in &refused {
        audit.record("ports", "taken", &ranges(ports), Decision::Denied, why);
    }
    if !probed.is_empty() {
        audit.record("ports", "taken", &ranges(&probed), Decision::Allowed, "local port probe (bind test) in the run's claimed ranges");
    }
    let busy: BTreeSet<u16> = probed.into_iter().filter(|&p| probe(p)).collect();
    let refused: BTreeSet<u16> = refused.into_values().flatten().collect();
    ports.iter().copied().filter(|p| refused.contains(p) || busy.contains(p)).collect()
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

    fn anywhere_from(start: u16) -> PortScope {
        PortScope::new([], Some(start))
    }

    #[test]
    fn sees_a_listener_and_a_free_port() {
        let audit = Audit::stderr_only();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let held = listener.local_addr().unwrap().port();
        let mut scope = anywhere_from(1024);
        assert_eq!(taken_by(&[80, held], &audit, &mut scope, in_use), [80, held]);

        drop(listener);
        assert_eq!(taken_by(&[held], &audit, &mut scope, in_use), [] as [u16; 0]);
    }

    #[test]
    fn each_distinct_port_is_probed_once() {
        let mut probes = Vec::new();
        let list: Vec<u16> = [5000, 80, 5001].repeat(100_000);
        let taken = taken_by(&list, &Audit::stderr_only(), &mut anywhere_from(1024), |p| {
            probes.push(p);
            p == 5001
        });
        assert_eq!(probes, [5000, 5001], "never the privileged one, each other once");
        assert_eq!(taken.len(), 200_000, "80 and 5001, every time they were asked about");
    }

    #[test]
    fn only_the_claimed_ranges_of_the_plan_and_the_search_window_are_probed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let audit = Audit::open(&log, false).unwrap();
        let mut probes = Vec::new();
        let mut scope = PortScope::new([18790], None);
        let asked = [22, 5432, 6379, 18790, 18792, 18793, 18801, 18900, 18901, 27017];
        let taken = taken_by(&asked, &audit, &mut scope, |p| {
            probes.push(p);
            false
        });
        assert_eq!(probes, [18790, 18792, 18801, 18900], "only the claimed ports of the task's base");
        assert_eq!(taken, [22, 5432, 6379, 18793, 18901, 27017], "the others count as taken, never probed");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("not in the claimed ranges of this run's plan (claimed 18790-18792,18801-18900)"), "{text}");
        assert!(text.contains("5432,6379,18793,18901,27017") && text.contains("only ports 1024..65535"), "{text}");

        let mut scope = PortScope::new([], Some(30000));
        let window: Vec<u16> = (30000..30000 + WINDOW_BUDGET as u16 + 10).collect();
        let mut probed = 0;
        let taken = taken_by(&window, &audit, &mut scope, |_| {
            probed += 1;
            false
        });
        assert_eq!((probed, taken.len()), (WINDOW_BUDGET, 10), "the search window has a budget per run");
        assert_eq!(taken_by(&[30000, 29999], &audit, &mut scope, |_| false), [29999], "a port already probed is asked again freely");
        assert!(std::fs::read_to_string(&log).unwrap().contains("the search from 30000 has used its 4096 ports"));
    }

    #[test]
    fn a_call_is_answered_for_at_most_so_many_ports() {
        let all: Vec<u16> = (1024..=u16::MAX).collect();
        let mut probed = 0;
        let mut scope = PortScope { claimed: all.iter().copied().collect(), ..PortScope::default() };
        let taken = taken_by(&all, &Audit::stderr_only(), &mut scope, |_| {
            probed += 1;
            false
        });
        assert_eq!(probed, MAX_PER_CALL);
        assert_eq!(taken.len(), all.len() - MAX_PER_CALL);
    }

    #[test]
    fn one_audit_line_names_every_port_asked_about() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let audit = Audit::open(&log, false).unwrap();
        let ports: Vec<u16> = (40001..=40003).chain(40012..=40111).collect();
        taken_by(&ports, &audit, &mut PortScope::new([40001], None), in_use);
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("40001-40003,40012-40111"), "{text}");
    }
}
