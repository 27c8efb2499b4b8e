//! Aggregated auditing of high-rate calls (the stack secrets API): instead of one audit record per call, one record
//! per principal, source, target, operation and outcome per window of [`WINDOW_MS`], carrying the counts. Every
//! call lands in exactly one window, so the counts of a chain's records add up to the calls made.
//!
//! Pure: the caller passes the time in and keeps the tally (behind a lock) at the edge; closed windows come out as
//! ordinary [`AuditEvent`]s for the audit writer.

use std::collections::{BTreeMap, HashMap};

use super::audit::{AuditAction, AuditEvent, Outcome};

/// The length of a window: at most one record per key per second.
pub const WINDOW_MS: i64 = 1_000;

/// What a tallied call is grouped by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey {
    /// The org id whose chain receives the record.
    pub chain: String,
    /// `user:NAME` or `token:ID`.
    pub actor: String,
    /// The client address.
    pub source: String,
    /// [`AuditAction::StackEncrypt`] or [`AuditAction::StackDecrypt`].
    pub action: AuditAction,
    /// `org/project/stack`.
    pub target: String,
    /// `ok`, `failed` (refused input, undecryptable) or `error` (the server failed).
    pub outcome: Outcome,
}

/// The counts of one key in one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallCount {
    /// Values encrypted or decrypted (a batch counts each of its values).
    pub values: u64,
    /// HTTP requests (a batch counts once).
    pub requests: u64,
}

/// Open windows: window index → key → counts.
#[derive(Debug, Default)]
pub struct CallTally {
    windows: BTreeMap<i64, HashMap<CallKey, CallCount>>,
}

impl CallTally {
    /// Counts one request of `values` values at `now_ms`.
    pub fn add(&mut self, now_ms: i64, key: CallKey, values: u64) {
        let count = self
            .windows
            .entry(now_ms.div_euclid(WINDOW_MS))
            .or_default()
            .entry(key)
            .or_default();
        count.values = count.values.saturating_add(values);
        count.requests = count.requests.saturating_add(1);
    }

    /// Removes the windows that closed before `now_ms` and returns their records, oldest window first.
    pub fn take_closed(&mut self, now_ms: i64) -> Vec<AuditEvent> {
        let open = self.windows.split_off(&now_ms.div_euclid(WINDOW_MS));
        let closed = std::mem::replace(&mut self.windows, open);
        events(closed)
    }

    /// Removes every window, open ones included (a graceful stop), and returns their records.
    pub fn take_all(&mut self) -> Vec<AuditEvent> {
        events(std::mem::take(&mut self.windows))
    }

    /// Whether nothing is tallied.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

fn events(windows: BTreeMap<i64, HashMap<CallKey, CallCount>>) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    for (window, keys) in windows {
        let mut keys: Vec<_> = keys.into_iter().collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, c) in keys {
            out.push(
                AuditEvent::new(
                    k.chain,
                    window.saturating_mul(WINDOW_MS),
                    k.actor,
                    k.source,
                    k.action,
                    k.target,
                )
                .outcome(k.outcome)
                .detail(format!(
                    "values={} requests={} window_ms={WINDOW_MS}",
                    c.values, c.requests
                )),
            );
        }
    }
    out
}

/// The counts a tallied record's detail carries, or `None` when it is not one.
pub fn counts_of(detail: &str) -> Option<CallCount> {
    let mut values = None;
    let mut requests = None;
    for part in detail.split(' ') {
        match part.split_once('=') {
            Some(("values", v)) => values = v.parse().ok(),
            Some(("requests", v)) => requests = v.parse().ok(),
            _ => {}
        }
    }
    Some(CallCount {
        values: values?,
        requests: requests?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(actor: &str, action: &str, outcome: &str) -> CallKey {
        let action = *AuditAction::ALL.iter().find(|a| a.as_str() == action).unwrap();
        let outcome = [Outcome::Ok, Outcome::Failed, Outcome::Error]
            .into_iter()
            .find(|o| o.as_str() == outcome)
            .unwrap();
        CallKey {
            chain: "org".into(),
            actor: actor.into(),
            source: "127.0.0.1".into(),
            action,
            target: "acme/app/prod".into(),
            outcome,
        }
    }

    #[test]
    fn calls_are_grouped_per_key_and_window_and_every_one_is_counted() {
        let mut t = CallTally::default();
        t.add(10_000, key("user:a", "stack.encrypt", "ok"), 1);
        t.add(10_999, key("user:a", "stack.encrypt", "ok"), 5);
        t.add(10_500, key("user:b", "stack.encrypt", "ok"), 1);
        t.add(10_500, key("user:a", "stack.decrypt", "failed"), 1);
        t.add(11_000, key("user:a", "stack.encrypt", "ok"), 2);
        // Window 10 is still open at 10_999: nothing comes out.
        assert!(t.take_closed(10_999).is_empty());
        let closed = t.take_closed(11_000);
        assert_eq!(closed.len(), 3, "{closed:?}");
        let a = closed
            .iter()
            .find(|e| e.actor == "user:a" && e.action == "stack.encrypt")
            .unwrap();
        assert_eq!(a.time_ms, 10_000);
        assert_eq!(counts_of(&a.detail), Some(CallCount { values: 6, requests: 2 }));
        assert!(closed.iter().any(|e| e.outcome == "failed"));
        // The later window stays until it closes or everything is taken.
        assert!(!t.is_empty());
        let rest = t.take_all();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].time_ms, 11_000);
        assert_eq!(counts_of(&rest[0].detail), Some(CallCount { values: 2, requests: 1 }));
        assert!(t.is_empty() && t.take_all().is_empty());
    }

    #[test]
    fn times_before_the_epoch_and_huge_counts_do_not_panic() {
        let mut t = CallTally::default();
        t.add(-1, key("user:a", "stack.encrypt", "ok"), u64::MAX);
        t.add(-1, key("user:a", "stack.encrypt", "ok"), 1);
        let out = t.take_closed(0);
        assert_eq!(out[0].time_ms, -1_000);
        assert_eq!(counts_of(&out[0].detail).unwrap().values, u64::MAX);
        assert_eq!(counts_of("values=x requests=1"), None);
        assert_eq!(counts_of(""), None);
    }
}
