//! Port planning. A current OpenClaw gateway on port `base` also claims `base+1` (MCP
//! Apps), `base+2` (browser control) and `base+11..=base+110` (browser debugging), so two
//! siblings collide unless their claimed sets are disjoint — consecutive ports do not work.
//!
//! A base is claimed by every registered sibling and by every provision under way or
//! interrupted (its journal), so concurrent provisions never pick overlapping ranges.

use crate::caps::Ports;
use crate::journal::Journal;
use crate::registry::Registry;
use std::collections::BTreeMap;

pub use naming::{MAX_BASE, claimed_ports as claimed};

fn overlaps(a: u16, b: u16) -> bool {
    naming::claims_overlap(a, b)
}

/// A gateway base some sibling holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub handle: String,
    pub base: u16,
    /// Held by the journal of a provision under way or interrupted, not the registry.
    pub pending: bool,
}

/// The claims of the registered siblings and of the journals of provisions under way or
/// interrupted (a handle in both counts once, as registered).
pub fn claims(registry: &Registry, journals: &[Journal]) -> Vec<Claim> {
    let mut claims: Vec<Claim> = registry.siblings.iter().map(|m| Claim { handle: m.handle.clone(), base: m.port, pending: false }).collect();
    let pending = journals.iter().filter(|j| registry.find(&j.handle).is_none());
    claims.extend(pending.map(|j| Claim { handle: j.handle.clone(), base: j.port, pending: true }));
    claims
}

/// Why a base port cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// Something already listens on this port (one the new gateway would claim).
    Listening { port: u16 },
    /// A sibling's claimed ports overlap the new gateway's (`pending`: a provision of it
    /// is under way or was interrupted).
    Sibling { handle: String, base: u16, pending: bool },
}

impl Conflict {
    pub fn describe(&self, base: u16) -> String {
        match self {
            Conflict::Listening { port } if *port == base => format!("port {port} is already in use"),
            Conflict::Listening { port } => {
                format!("port {port}, which a gateway on {base} also claims, is already in use")
            }
            Conflict::Sibling { handle, base: theirs, pending } => format!(
                "{}'s gateway on {theirs} claims {}; a gateway on {base} claims {} (OpenClaw gateways need their claimed ports disjoint)",
                if *pending { format!("the provision of {handle} (under way or interrupted: its journal holds the claim)") } else { format!("sibling {handle}") },
                describe_claim(*theirs),
                describe_claim(base)
            ),
        }
    }
}

/// `18790-18792, 18801-18900`.
pub fn describe_claim(base: u16) -> String {
    claimed(base).iter().map(|r| format!("{}-{}", r.start(), r.end())).collect::<Vec<_>>().join(", ")
}

/// Everything that keeps `base` from being used by `handle` (its own claim, if any, does
/// not count).
pub fn conflicts(base: u16, handle: &str, claims: &[Claim], ports: &dyn Ports) -> Vec<Conflict> {
    let mut found: Vec<Conflict> = claims
        .iter()
        .filter(|c| c.handle != handle && overlaps(c.base, base))
        .map(|c| Conflict::Sibling { handle: c.handle.clone(), base: c.base, pending: c.pending })
        .collect();
    if base > MAX_BASE {
        return found;
    }
    let all: Vec<u16> = claimed(base).into_iter().flatten().map(|p| p as u16).collect();
    found.extend(ports.taken(&all).into_iter().map(|port| Conflict::Listening { port }));
    found
}

/// The first base from `start` up whose claimed ports are clear of every claim and every
/// listening socket.
///
/// Each port is probed at most once (a candidate's not yet probed ports in one host call),
/// and a busy port moves the search straight to the first base that does not claim it —
/// so a crowded range (say, the ephemeral ports of a busy host) costs each port one probe,
/// not one per candidate that claims it.
pub fn next_free(start: u16, handle: &str, claims: &[Claim], ports: &dyn Ports) -> Option<u16> {
    let mut probed: BTreeMap<u32, bool> = BTreeMap::new();
    let mut base = u32::from(start.max(1024));
    while base <= u32::from(MAX_BASE) {
        let candidate = base as u16;
        // Cheap registry test first; sockets only for candidates that pass it.
        if claims.iter().any(|c| c.handle != handle && overlaps(c.base, candidate)) {
            base += 1;
            continue;
        }
        let fresh: Vec<u16> = claimed(candidate).into_iter().flatten().filter(|p| !probed.contains_key(p)).map(|p| p as u16).collect();
        let taken = ports.taken(&fresh);
        probed.extend(fresh.iter().map(|&p| (u32::from(p), taken.contains(&p))));
        let busy = claimed(candidate).into_iter().flatten().find(|p| probed[p]);
        match busy {
            None => return Some(candidate),
            // Bases in busy-110..=busy-11 claim it in their upper range, busy-2..=busy in
            // their lower one: the next base that does not is busy-10 or busy+1.
            Some(busy) if busy >= base + 11 => base = busy - 10,
            Some(busy) => base = busy + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::member;
    use crate::testing::FakePorts;
    use std::collections::BTreeSet;

    fn registry(members: &[(&str, u16)]) -> Vec<Claim> {
        let registry = Registry { version: 1, siblings: members.iter().map(|(h, p)| member(h, *p)).collect() };
        claims(&registry, &[])
    }

    #[test]
    fn claimed_ports_follow_openclaw() {
        assert_eq!(describe_claim(18790), "18790-18792, 18801-18900");
    }

    #[test]
    fn consecutive_ports_collide_with_a_sibling() {
        let ports = FakePorts::default();
        let r = registry(&[("amy", 18790)]);
        let found = conflicts(18791, "new", &r, &ports);
        assert_eq!(found, [Conflict::Sibling { handle: "amy".into(), base: 18790, pending: false }]);
        assert!(found[0].describe(18791).contains("18790-18792, 18801-18900"));
        assert!(conflicts(18791, "amy", &r, &ports).is_empty(), "a sibling never conflicts with itself");
    }

    #[test]
    fn auto_port_keeps_clear_of_every_claimed_range() {
        let ports = FakePorts::default();
        let r = registry(&[("amy", 18790)]);
        assert_eq!(next_free(18790, "new", &r, &ports), Some(18901));
        let r = registry(&[("amy", 18790), ("bob", 18901)]);
        assert_eq!(next_free(18790, "new", &r, &ports), Some(19012));
    }

    #[test]
    fn a_journal_claims_its_range_like_a_registered_sibling() {
        let ports = FakePorts::default();
        let registry = Registry { version: 1, siblings: vec![member("amy", 18790)] };
        let journal = |handle: &str, port| Journal {
            handle: handle.into(),
            principal_id: "p".into(),
            family_id: "f".into(),
            port,
            task_id: None,
            onboarding_channel_id: None,
            vault_id: None,
            started_at: String::new(),
            done: vec![],
            current: None,
            reported: vec![],
        };
        let all = claims(&registry, &[journal("bob", 18901), journal("amy", 18790)]);
        assert_eq!(all.iter().map(|c| (c.handle.as_str(), c.pending)).collect::<Vec<_>>(), [("amy", false), ("bob", true)], "amy counts once");
        assert_eq!(next_free(18790, "new", &all, &ports), Some(19012));
        let found = conflicts(18905, "new", &all, &ports);
        assert_eq!(found, [Conflict::Sibling { handle: "bob".into(), base: 18901, pending: true }]);
        assert!(found[0].describe(18905).starts_with("the provision of bob (under way or interrupted"), "{}", found[0].describe(18905));
        assert!(conflicts(18901, "bob", &all, &ports).is_empty(), "its own journal is no conflict");
    }

    #[test]
    fn listening_sockets_count_on_every_claimed_port() {
        let ports = FakePorts::default();
        ports.used.borrow_mut().insert(18850);
        let found = conflicts(18790, "new", &registry(&[]), &ports);
        assert_eq!(found, [Conflict::Listening { port: 18850 }]);
        assert!(found[0].describe(18790).starts_with("port 18850, which a gateway on 18790 also claims"));
        assert_eq!(next_free(18790, "new", &registry(&[]), &ports), Some(18840));
    }

    #[test]
    fn a_crowded_range_is_searched_with_each_port_probed_once() {
        let ports = FakePorts::default();
        // Every third port busy from 32768 to 40000, as on a host with many connections.
        ports.used.borrow_mut().extend((32768..40000).step_by(3));
        let free = next_free(32768, "new", &registry(&[]), &ports).unwrap();
        let probes = ports.probes.borrow().clone();
        let first_clear = (32768..).find(|&b| conflicts(b, "new", &registry(&[]), &ports).is_empty());
        assert_eq!(Some(free), first_clear, "the first base whose claimed ports are all clear");
        assert_eq!(free, 39999);
        let distinct: BTreeSet<u16> = probes.iter().copied().collect();
        assert_eq!(probes.len(), distinct.len(), "no port probed twice");
        assert!(probes.len() < 8000, "{} probes", probes.len());
    }

    #[test]
    fn the_search_agrees_with_trying_every_base() {
        let mut x: u32 = 0x2545_f491;
        let mut next = move |n: u32| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x % n
        };
        for _ in 0..50 {
            let start = 20000 + next(2000) as u16;
            let ports = FakePorts::default();
            ports.used.borrow_mut().extend((0..next(60)).map(|_| start + next(1500) as u16));
            let members: Vec<(String, u16)> = (0..next(6)).map(|i| (format!("s{i}"), start + next(1200) as u16)).collect();
            let r = registry(&members.iter().map(|(h, p)| (h.as_str(), *p)).collect::<Vec<_>>());
            let brute = (start..=MAX_BASE).find(|&b| conflicts(b, "new", &r, &ports).is_empty());
            assert_eq!(next_free(start, "new", &r, &ports), brute, "start {start}, busy {:?}, siblings {members:?}", ports.used.borrow());
        }
    }

    #[test]
    fn no_base_fits_above_the_top() {
        let ports = FakePorts::default();
        assert_eq!(next_free(MAX_BASE + 1, "new", &registry(&[]), &ports), None);
    }
}
