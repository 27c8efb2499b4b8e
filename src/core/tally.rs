//! Tallies of repeated events (failed authentications) per key and time window, so a flood of them costs one audit
//! record per key and window instead of one per event — with every event counted. Pure: the caller passes the time
//! (Unix milliseconds) and writes the closed windows wherever it likes.
//!
//! A window opens at a key's first event and closes `window_ms` later; a closed window yields one [`Tally`] with the
//! number of events, the count per reason, and the first target seen, cut to [`MAX_TARGET_BYTES`]. At most
//! `max_keys` windows are open at once: an event for a new key beyond that closes every open window early (the
//! caller writes them at once), so memory stays bounded and nothing is dropped.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// The most of a target (a request path) a tally keeps, in bytes.
pub const MAX_TARGET_BYTES: usize = 256;

/// The mark appended to a cut target.
pub const CUT_MARK: &str = "…";

/// `text` cut to at most `max` bytes on a character boundary, with [`CUT_MARK`] appended when it was cut (so the
/// result may exceed `max` by the mark's 3 bytes); the flag says whether it was cut.
pub fn cap_text(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_owned(), false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (format!("{}{CUT_MARK}", &text[..end]), true)
}

/// One closed window of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally<K> {
    /// Whose events (a source address).
    pub key: K,
    /// When the window opened (its first event) and when it closed.
    pub start_ms: i64,
    pub end_ms: i64,
    /// Events in the window; the sum of `reasons`.
    pub count: u64,
    /// Events per reason.
    pub reasons: BTreeMap<String, u64>,
    /// The first event's target, cut to [`MAX_TARGET_BYTES`].
    pub target: String,
    /// The first target's length in bytes before cutting (equal to `target.len()` when it was not cut).
    pub target_bytes: usize,
    /// Whether any event's target was cut.
    pub any_cut: bool,
}

#[derive(Debug)]
struct Open {
    start_ms: i64,
    count: u64,
    reasons: BTreeMap<String, u64>,
    target: String,
    target_bytes: usize,
    any_cut: bool,
}

/// Open windows per key.
#[derive(Debug)]
pub struct Tallies<K> {
    window_ms: i64,
    max_keys: usize,
    max_reasons: usize,
    open: HashMap<K, Open>,
}

/// The reason recorded once a window has `max_reasons` distinct reasons already.
pub const OTHER_REASON: &str = "other";

impl<K: Eq + Hash + Clone> Tallies<K> {
    /// No open windows; windows last `window_ms` (at least 1 ms); at most `max_keys` are open at once.
    pub fn new(window_ms: i64, max_keys: usize) -> Tallies<K> {
        Tallies {
            window_ms: window_ms.max(1),
            max_keys: max_keys.max(1),
            max_reasons: 16,
            open: HashMap::new(),
        }
    }

    /// Windows open now.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Counts one event of `key` at `now_ms`. Returns the windows that must be written now: `key`'s previous window
    /// if it has closed, or every open window when the table was full.
    pub fn record(&mut self, key: &K, target: &str, reason: &str, now_ms: i64) -> Vec<Tally<K>> {
        let mut out = Vec::new();
        if let Some(open) = self.open.get(key)
            && now_ms >= open.start_ms.saturating_add(self.window_ms)
            && let Some(open) = self.open.remove(key)
        {
            out.push(close(key.clone(), open, now_ms));
        }
        if !self.open.contains_key(key) && self.open.len() >= self.max_keys {
            out.extend(self.take_all(now_ms));
        }
        let max_reasons = self.max_reasons;
        let open = self.open.entry(key.clone()).or_insert_with(|| {
            let (cut, _) = cap_text(target, MAX_TARGET_BYTES);
            Open {
                start_ms: now_ms,
                count: 0,
                reasons: BTreeMap::new(),
                target: cut,
                target_bytes: target.len(),
                any_cut: false,
            }
        });
        open.count += 1;
        open.any_cut |= target.len() > MAX_TARGET_BYTES;
        let reason = if open.reasons.contains_key(reason) || open.reasons.len() < max_reasons {
            reason
        } else {
            OTHER_REASON
        };
        *open.reasons.entry(reason.to_owned()).or_default() += 1;
        out
    }

    /// Closes and returns the windows whose time is up at `now_ms`.
    pub fn take_closed(&mut self, now_ms: i64) -> Vec<Tally<K>> {
        let window = self.window_ms;
        let due: Vec<K> = self
            .open
            .iter()
            .filter(|(_, o)| now_ms >= o.start_ms.saturating_add(window))
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .filter_map(|k| self.open.remove(&k).map(|o| close(k, o, now_ms)))
            .collect()
    }

    /// Closes and returns every open window (at shutdown, or before the log is read).
    pub fn take_all(&mut self, now_ms: i64) -> Vec<Tally<K>> {
        self.open.drain().map(|(k, o)| close(k, o, now_ms)).collect()
    }
}

fn close<K>(key: K, open: Open, now_ms: i64) -> Tally<K> {
    Tally {
        key,
        start_ms: open.start_ms,
        end_ms: now_ms.max(open.start_ms),
        count: open.count,
        reasons: open.reasons,
        target: open.target,
        target_bytes: open.target_bytes,
        any_cut: open.any_cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutting_keeps_whole_characters_and_marks_the_cut() {
        assert_eq!(cap_text("abc", 3), ("abc".into(), false));
        assert_eq!(cap_text("abcd", 3), (format!("abc{CUT_MARK}"), true));
        // "é" is two bytes: a cut in its middle moves back before it.
        assert_eq!(cap_text("aé", 2), (format!("a{CUT_MARK}"), true));
        assert_eq!(cap_text("€€", 4), (format!("€{CUT_MARK}"), true));
        assert_eq!(cap_text("€", 0), (CUT_MARK.to_owned(), true));
        let long = "/".repeat(60_000);
        let (cut, was) = cap_text(&long, MAX_TARGET_BYTES);
        assert!(was && cut.len() == MAX_TARGET_BYTES + CUT_MARK.len());
    }

    #[test]
    fn one_tally_per_key_and_window_and_the_counts_add_up() {
        let mut t = Tallies::new(60_000, 100);
        let long = format!("/api/{}", "x".repeat(60_000));
        let mut written = Vec::new();
        for i in 0..1_000i64 {
            let key = if i % 2 == 0 { "10.0.0.1" } else { "10.0.0.2" };
            let reason = if i % 3 == 0 { "missing header" } else { "invalid token" };
            written.extend(t.record(&key, &long, reason, i * 100));
        }
        // 1,000 events over 100 s: each key's window closed once (at 60 s), and two are open.
        assert_eq!(written.len(), 2);
        assert_eq!(t.open_windows(), 2);
        written.extend(t.take_all(100_000));
        assert_eq!(written.len(), 4);
        assert_eq!(written.iter().map(|w| w.count).sum::<u64>(), 1_000);
        for w in &written {
            assert_eq!(w.reasons.values().sum::<u64>(), w.count);
            assert!(w.any_cut && w.target.len() <= MAX_TARGET_BYTES + CUT_MARK.len());
            assert_eq!(w.target_bytes, long.len());
            assert!(w.end_ms >= w.start_ms);
        }
        assert!(t.take_all(200_000).is_empty());
    }

    #[test]
    fn windows_close_on_time() {
        let mut t = Tallies::new(1_000, 10);
        assert!(t.record(&"a", "/p", "r", 0).is_empty());
        assert!(t.record(&"b", "/p", "r", 500).is_empty());
        assert!(t.take_closed(999).is_empty());
        let closed = t.take_closed(1_000);
        assert_eq!((closed.len(), closed[0].key, closed[0].count), (1, "a", 1));
        assert_eq!(t.take_closed(1_500).len(), 1);
        assert_eq!(t.open_windows(), 0);
    }

    #[test]
    fn a_full_table_closes_every_window_early_and_loses_nothing() {
        let mut t = Tallies::new(60_000, 3);
        let mut written = Vec::new();
        for i in 0..10_000u32 {
            written.extend(t.record(&i, "/p", "r", 0));
            assert!(t.open_windows() <= 3);
        }
        written.extend(t.take_all(1));
        assert_eq!(written.iter().map(|w| w.count).sum::<u64>(), 10_000);
    }

    #[test]
    fn distinct_reasons_are_bounded() {
        let mut t = Tallies::new(60_000, 3);
        for i in 0..100 {
            t.record(&"a", "/p", &format!("reason {i}"), 0);
        }
        let w = t.take_all(1).remove(0);
        assert_eq!(w.reasons.len(), 17);
        assert_eq!(w.reasons[OTHER_REASON], 84);
        assert_eq!(w.reasons.values().sum::<u64>(), 100);
    }
}
