//! The spec's rollback of a provision: of a failed run right away, of an interrupted
//! one (its journal left behind) by the `rollback` command.

use crate::archive::archive_and_remove;
use crate::caps::{Caps, Level, RunState};
use crate::family_lock::FamilyLock;
use crate::journal::Journal;
use crate::layout::LeadLayout;
use crate::registry::{self, Registry};
use crate::secret::{Secret, scrub};
use crate::sesame::{self, Sesame};
use crate::task;
use crate::wit::{CommandError, Context, FieldError, RollbackOutcome, RollbackStep};

/// What exists of a provision, so a rollback undoes exactly that.
#[derive(Default)]
pub struct Done {
    pub home_created: bool,
    pub service_installed: bool,
}

impl Done {
    /// What is actually there of `handle` (a resumed or interrupted provision).
    pub fn observe(caps: &Caps, home: &str, handle: &str) -> Self {
        Done {
            home_created: matches!(caps.files.metadata(&naming::sibling_home(home, handle)), Ok(Some(_))),
            service_installed: caps.services.status(&naming::label(handle)).is_ok_and(|s| s.state != RunState::NotInstalled),
        }
    }
}

/// What a rollback works with.
pub struct Undo<'a> {
    pub caps: &'a Caps<'a>,
    pub ctx: &'a Context,
    pub sesame: &'a Sesame<'a>,
    /// Scrubbed from every detail.
    pub secrets: &'a [Secret],
}

impl Undo<'_> {
    /// The spec's rollback, in order: stop and remove the service; archive the partial
    /// home, then remove it; member status `error`; activity `blocker`; an `error`
    /// message (`what` failed). Every action runs even when an earlier one failed, and
    /// each is reported. The journal goes last, once nothing is left to undo. Returns the
    /// actions and the archive.
    pub fn run(&self, journal: &Journal, done: &Done, what: &str) -> (Vec<RollbackStep>, Option<String>) {
        let (caps, ctx) = (self.caps, self.ctx);
        let mut steps = Vec::new();
        let mut record = |action: &str, result: Result<String, String>| {
            let (ok, detail) = match result {
                Ok(detail) => (true, detail),
                Err(detail) => (false, scrub(&detail, self.secrets)),
            };
            steps.push(RollbackStep { action: action.into(), ok, detail });
        };
        let label = &naming::label(&journal.handle);
        if done.service_installed {
            let _ = caps.services.stop(label);
            record("remove the service", self.remove_service(label));
        }
        let mut archive = None;
        if done.home_created {
            let result = archive_and_remove(caps, &ctx.home, &journal.handle, &naming::sibling_home(&ctx.home, &journal.handle));
            archive = result.as_ref().ok().map(|a| a.path.clone());
            record("archive and remove the home", result.map(|a| {
                format!(
                    "{} files, {} directories, {} bytes archived to {} ({} entries verified); home removed",
                    a.stats.files, a.stats.directories, a.stats.bytes, a.path, a.entries
                )
            }));
        }
        for call in sesame::rollback_calls(journal, what) {
            record(&call.describe(), self.sesame.send(&call).map(|_| "sent".into()).map_err(|e| e.to_string()));
        }
        if let Err(e) = journal.remove(caps.files, &LeadLayout::new(&ctx.lead_home)) {
            record("remove the journal", Err(e));
        }
        (steps, archive)
    }

    /// Removes the stopped service `label`, under the family lock (service installs and
    /// removals are serialised).
    fn remove_service(&self, label: &str) -> Result<String, String> {
        let _family = FamilyLock::take(self.caps)?;
        match self.caps.services.uninstall(label) {
            Ok(()) => Ok(format!("{label} stopped and removed")),
            Err(e) => Err(format!("{label}: {}", e.message())),
        }
    }
}

/// Undoes the interrupted provision of `handle` from its journal: whatever of its
/// service and home exists is removed (the home archived first), Sesame is told, and the
/// journal (and a registry entry, if it got that far) is removed. A provision still under
/// way in another run is not interrupted, and is refused.
pub fn rollback_interrupted(caps: &Caps, ctx: &Context, handle: &str) -> Result<RollbackOutcome, CommandError> {
    task::validate_handle(handle, &ctx.lead_handles)
        .map_err(|message| CommandError::InvalidInput(FieldError { field: "handle".into(), message }))?;
    caps.family.claim(handle).map_err(|why| CommandError::Refused(format!("{why}; it is not interrupted: wait for it to end")))?;
    let lead = LeadLayout::new(&ctx.lead_home);
    let journal = Journal::load(caps.files, &lead, handle)
        .map_err(CommandError::Refused)?
        .ok_or_else(|| CommandError::Refused(format!("there is no interrupted provision of {handle} (no journal)")))?;
    let done = Done::observe(caps, &ctx.home, handle);
    let sesame = Sesame::for_context(caps, ctx);
    let position = journal.position();
    caps.progress.emit(Level::Step, &format!("rolling back the provision of {handle}, interrupted at {position}"));
    let undo = Undo { caps, ctx, sesame: &sesame, secrets: &[] };
    let (mut steps, archive) = undo.run(&journal, &done, &format!("interrupted at {position}"));
    let registry = Registry::load(caps.files, &lead).map_err(CommandError::Refused)?;
    if registry.find(handle).is_some() {
        let (ok, detail) = match registry::update(caps, &lead, |r| {
            r.remove(handle);
        }) {
            Ok(()) => (true, format!("{handle} removed")),
            Err(d) => (false, d),
        };
        steps.push(RollbackStep { action: "remove the registry entry".into(), ok, detail });
    }
    Ok(RollbackOutcome { handle: handle.into(), interrupted_at: position, steps, archive })
}
