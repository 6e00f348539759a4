//! When the supervisor restarts a gateway that ended, and when it gives up: pure
//! bookkeeping over the times of the failures, no clock and no sleeping of its own.
//!
//! Every end of a gateway the supervisor did not ask for is a failure (an exit with any
//! code, a signal, or a start that did not happen). The next start waits 1 s, doubled
//! for each earlier failure still inside the window (1, 2, 4, 8 s); the failure that
//! makes `limit` of them within the window gives up. A run that stayed up for the whole
//! window leaves no earlier failure inside it, so after it the count starts again.

use std::time::Duration;

/// The restart rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The wait before the first restart; doubled for each earlier recent failure.
    pub first_delay: Duration,
    /// How far back failures count.
    pub window: Duration,
    /// The number of failures within the window that gives up.
    pub limit: usize,
}

impl Policy {
    /// The rules of the direct backend: 1 s doubling, five failures within two minutes
    /// give up (so the longest wait is 8 s, and a gateway that cannot start at all is
    /// given up on after 15 s of waiting).
    pub const DEFAULT: Policy = Policy { first_delay: Duration::from_secs(1), window: Duration::from_secs(120), limit: 5 };

    /// The rules in words, for the reason a supervisor gave up.
    pub fn describe(&self) -> String {
        format!("{} failures within {} s", self.limit, self.window.as_secs())
    }
}

/// What to do after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    RestartAfter(Duration),
    GiveUp,
}

/// The failures of one supervisor, by time (any monotonic clock, as a duration since a
/// fixed start).
#[derive(Clone, Debug, Default)]
pub struct Restarts {
    failures: Vec<Duration>,
}

impl Restarts {
    /// Records a failure at `now` and says what follows.
    pub fn failed(&mut self, policy: &Policy, now: Duration) -> Next {
        self.failures.retain(|at| now.saturating_sub(*at) < policy.window);
        self.failures.push(now);
        let recent = self.failures.len();
        if recent >= policy.limit {
            return Next::GiveUp;
        }
        Next::RestartAfter(policy.first_delay.saturating_mul(1 << (recent - 1).min(16)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy::DEFAULT;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_gateway_that_dies_at_once_is_restarted_after_1_2_4_8_s_then_given_up() {
        let mut r = Restarts::default();
        let mut now = Duration::ZERO;
        let mut waits = Vec::new();
        while let Next::RestartAfter(wait) = r.failed(&P, now) {
            waits.push(wait.as_secs());
            now += wait;
        }
        assert_eq!(waits, [1, 2, 4, 8]);
        assert_eq!(now, secs(15), "given up at the fifth failure, 15 s in");
        assert_eq!(P.describe(), "5 failures within 120 s");
    }

    #[test]
    fn a_run_that_stayed_up_for_the_window_starts_the_count_again() {
        let mut r = Restarts::default();
        for at in [0, 1, 3, 7] {
            assert!(matches!(r.failed(&P, secs(at)), Next::RestartAfter(_)));
        }
        // The fifth run stays up two minutes: the four earlier failures no longer count.
        assert_eq!(r.failed(&P, secs(7 + 8 + 120)), Next::RestartAfter(secs(1)));
        assert_eq!(r.failed(&P, secs(136)), Next::RestartAfter(secs(2)));
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_give_up() {
        let mut r = Restarts::default();
        // A gateway that crashes every 31 s: at most four failures are ever within 120 s.
        let mut now = Duration::ZERO;
        for _ in 0..50 {
            match r.failed(&P, now) {
                Next::RestartAfter(wait) => now += wait + secs(31),
                Next::GiveUp => panic!("gave up at {now:?}"),
            }
        }
    }

    #[test]
    fn failures_packed_into_the_window_give_up_whatever_the_waits() {
        let mut r = Restarts::default();
        // Runs of 20 s each: five failures fall within 120 s.
        let outcomes: Vec<Next> = [20, 41, 63, 87, 115].iter().map(|&at| r.failed(&P, secs(at))).collect();
        assert_eq!(outcomes.last(), Some(&Next::GiveUp), "{outcomes:?}");
        assert!(outcomes[..4].iter().all(|n| matches!(n, Next::RestartAfter(_))));
    }
}
