//! Time, injected: one [`Clock`] is made at start-up and passed to everything that needs the current time (the
//! keyring, the audit writer and its tallies, the checkpointer, the throttles, migrations, handlers through
//! `AppState::clock`). Nothing else reads the wall clock; the store and the pure core take times as arguments.
//!
//! [`Clock::system`] reads the system's wall clock and is the only clock the binary ever makes. [`ManualClock`]
//! stands still until a test sets or advances it, so tests make time pass without sleeping. No flag or environment
//! variable selects it: it is reachable only by code that builds a configuration in-process (tests, benchmarks).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time (the system's, or a test's).
trait TimeSource: Send + Sync + 'static {
    /// The current time in Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The clock everything that needs the time is given. Cheap to clone (clones share the source).
#[derive(Clone)]
pub struct Clock(Arc<dyn TimeSource>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Clock").field(&self.now_ms()).finish()
    }
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock(Arc::new(WallClock))
    }

    /// The current time in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
}

/// The system's wall clock.
struct WallClock;

impl TimeSource for WallClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock for tests: it stands still until set or advanced. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl TimeSource for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl ManualClock {
    /// A manual clock showing `now_ms` (Unix milliseconds).
    pub fn at(now_ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(now_ms)))
    }

    /// A manual clock showing the system's time now (so stored times look ordinary).
    pub fn starting_now() -> ManualClock {
        ManualClock::at(WallClock.now_ms())
    }

    /// The [`Clock`] to hand to the code under test; it reads this manual clock.
    pub fn clock(&self) -> Clock {
        Clock(Arc::new(self.clone()))
    }

    /// Sets the time to `now_ms`.
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| Some(t.saturating_add(ms)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let manual = ManualClock::at(1_000);
        let clock = manual.clock();
        let again = clock.clone();
        assert_eq!(clock.now_ms(), 1_000);
        manual.advance(Duration::from_millis(1_500));
        assert_eq!((clock.now_ms(), again.now_ms()), (2_500, 2_500));
        manual.set(7);
        assert_eq!(again.now_ms(), 7);
    }

    #[test]
    fn the_system_clock_reads_the_wall_clock() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
        let now = u128::try_from(Clock::system().now_ms()).unwrap();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
        assert!(before <= now && now <= after);
    }
}
