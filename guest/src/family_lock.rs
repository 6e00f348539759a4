//! The lead's family lock as a guard: held from [`FamilyLock::take`] until it is dropped,
//! so every path out of a locked section (`?`, an early return, a panic) releases it.
//!
//! What runs under it is the component's own bookkeeping that concurrent runs for one
//! lead must not interleave: admission (the journal and registry checks, the port choice)
//! together with writing the journal that claims the port, service installs and removals,
//! and registry updates. Never the slow parts: file writes into a new home, the vault,
//! the health wait, reporting to Sesame.

use crate::caps::Caps;

/// The family lock, held while this lives.
#[must_use = "the lock is released when the guard is dropped"]
pub struct FamilyLock<'a> {
    caps: &'a Caps<'a>,
}

impl<'a> FamilyLock<'a> {
    /// Takes the lock (waiting as long as the host allows); `Err` says why it could not.
    pub fn take(caps: &'a Caps<'a>) -> Result<Self, String> {
        caps.family.lock().map_err(|why| format!("cannot take the family lock: {why}"))?;
        Ok(Self { caps })
    }
}

impl Drop for FamilyLock<'_> {
    fn drop(&mut self) {
        self.caps.family.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{World, sesame_and_gateways};

    #[test]
    fn every_path_out_releases_the_lock() {
        let world = World::new(sesame_and_gateways(&[], &[]));
        let caps = world.caps();
        let early = |fail: bool| -> Result<(), String> {
            let _family = FamilyLock::take(&caps)?;
            if fail {
                return Err("bail".into());
            }
            Ok(())
        };
        assert!(early(true).is_err());
        early(false).unwrap();
        assert_eq!(world.timeline.entries(), ["lock", "unlock", "lock", "unlock"]);
        assert_eq!(world.family.depth.get(), 0);
    }

    #[test]
    fn a_lock_the_host_refuses_is_an_error_and_nothing_to_release() {
        let world = World::new(sesame_and_gateways(&[], &[]));
        *world.family.refuse.borrow_mut() = Some("another run (pid 7) still holds it after 600 s".into());
        let caps = world.caps();
        let err = FamilyLock::take(&caps).err().expect("refused");
        assert!(err.contains("pid 7"), "{err}");
        assert!(world.timeline.entries().is_empty(), "{:?}", world.timeline.entries());
    }
}
