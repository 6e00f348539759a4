//! The command's deadline (`--deadline`), which bounds host calls as well as guest code.
//!
//! The guest is interrupted by epochs and async HTTP by a timeout, but a host call runs
//! synchronously: each one that waits on something outside the process (a service
//! manager command, a gateway stopping) takes its wait from [`bound`], and a watchdog
//! ends the process shortly after the deadline if a host call still has not returned.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// When the command must be over.
static DEADLINE: OnceLock<Instant> = OnceLock::new();

/// How long after the deadline the watchdog waits for the runtime to end the command
/// itself (it stops a guest 1 s after the deadline).
const GRACE: Duration = Duration::from_millis(2500);

/// Sets the deadline `limit` from now (once per process) and starts the watchdog, which
/// calls `expired` (with the limit) if the process is still running `GRACE` after it.
pub fn start(limit: Duration, expired: impl FnOnce(Duration) + Send + 'static) {
    let at = Instant::now() + limit;
    if DEADLINE.set(at).is_err() {
        return;
    }
    std::thread::spawn(move || {
        let until = at + GRACE;
        while Instant::now() < until {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        expired(limit);
    });
}

/// What is left of the deadline (unbounded when none is set).
pub fn remaining() -> Duration {
    DEADLINE.get().map_or(Duration::MAX, |at| at.saturating_duration_since(Instant::now()))
}

/// `wait`, shortened to what is left of the deadline.
pub fn bound(wait: Duration) -> Duration {
    wait.min(remaining())
}
