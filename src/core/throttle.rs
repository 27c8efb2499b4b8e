//! Rate limiting by token bucket, per key (a source address, a token id). Pure arithmetic: the caller passes the
//! current time in milliseconds on any clock that does not go backwards by much (a step back only delays a refill).
//!
//! A bucket holds at most `burst` tokens and gains `per_minute` tokens a minute. Amounts are kept in exact integer
//! "ticks" (one token is 60,000 ticks, and one millisecond adds `per_minute` ticks), so no rounding drifts. The
//! number of keys is bounded: a key whose bucket is full is the same as an absent key and is dropped when room is
//! needed, and once the table is full of partly drained buckets, new keys share one overflow bucket, so memory stays
//! bounded under a flood of sources without letting any of them through unlimited.

use std::collections::HashMap;
use std::hash::Hash;

/// Ticks in one token.
const TICKS_PER_TOKEN: u64 = 60_000;

/// How a bucket refills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens a full bucket holds: how many requests pass at once after a quiet spell. At least 1.
    pub burst: u32,
    /// Tokens added per minute. At least 1.
    pub per_minute: u32,
}

impl Rate {
    fn capacity(self) -> u64 {
        u64::from(self.burst.max(1)) * TICKS_PER_TOKEN
    }

    fn ticks_per_ms(self) -> u64 {
        u64::from(self.per_minute.max(1))
    }
}

/// What a request gets from its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A token was taken.
    Allowed,
    /// The bucket is empty: retry after this many whole seconds (at least 1).
    Limited { retry_after_secs: u64 },
}

/// One bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    ticks: u64,
    at_ms: u64,
}

impl Bucket {
    /// A full bucket at `now_ms`.
    pub fn full(rate: Rate, now_ms: u64) -> Bucket {
        Bucket {
            ticks: rate.capacity(),
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, rate: Rate, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.ticks = self
            .ticks
            .saturating_add(elapsed.saturating_mul(rate.ticks_per_ms()))
            .min(rate.capacity());
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: Rate, now_ms: u64) -> Decision {
        self.refill(rate, now_ms);
        if self.ticks >= TICKS_PER_TOKEN {
            self.ticks -= TICKS_PER_TOKEN;
            return Decision::Allowed;
        }
        let missing = TICKS_PER_TOKEN - self.ticks;
        let ms = missing.div_ceil(rate.ticks_per_ms());
        Decision::Limited {
            retry_after_secs: ms.div_ceil(1000).max(1),
        }
    }

    /// Whether the bucket is full at `now_ms` (it then says nothing an absent bucket would not).
    pub fn is_full(&self, rate: Rate, now_ms: u64) -> bool {
        let mut b = *self;
        b.refill(rate, now_ms);
        b.ticks >= rate.capacity()
    }
}

/// Buckets per key, at most `max_keys` of them plus one shared overflow bucket.
#[derive(Debug)]
pub struct Limiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
    overflow: Bucket,
    last_prune_ms: Option<u64>,
}

/// How often (at most) a full table is scanned for full buckets to drop.
const PRUNE_EVERY_MS: u64 = 1_000;

impl<K: Eq + Hash + Clone> Limiter<K> {
    /// An empty limiter.
    pub fn new(rate: Rate, max_keys: usize) -> Limiter<K> {
        Limiter {
            rate,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
            overflow: Bucket::full(rate, 0),
            last_prune_ms: None,
        }
    }

    /// The rate every bucket refills at.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Keys with their own bucket now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key has its own bucket.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn bucket(&mut self, key: &K, now_ms: u64) -> &mut Bucket {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            let due = self
                .last_prune_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= PRUNE_EVERY_MS);
            if due {
                let rate = self.rate;
                self.buckets.retain(|_, b| !b.is_full(rate, now_ms));
                self.last_prune_ms = Some(now_ms);
            }
            if self.buckets.len() >= self.max_keys {
                return &mut self.overflow;
            }
        }
        let rate = self.rate;
        self.buckets
            .entry(key.clone())
            .or_insert_with(|| Bucket::full(rate, now_ms))
    }

    /// Takes a token from `key`'s bucket.
    pub fn take(&mut self, key: &K, now_ms: u64) -> Decision {
        let rate = self.rate;
        self.bucket(key, now_ms).take(rate, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        burst: 3,
        per_minute: 60,
    };

    #[test]
    fn a_burst_passes_then_the_bucket_refills_at_its_rate() {
        let mut b = Bucket::full(RATE, 1_000);
        for _ in 0..3 {
            assert_eq!(b.take(RATE, 1_000), Decision::Allowed);
        }
        assert_eq!(b.take(RATE, 1_000), Decision::Limited { retry_after_secs: 1 });
        // One token a second: 999 ms is not enough, 1,000 ms is.
        assert!(matches!(b.take(RATE, 1_999), Decision::Limited { .. }));
        assert_eq!(b.take(RATE, 2_000), Decision::Allowed);
        assert!(matches!(b.take(RATE, 2_000), Decision::Limited { .. }));
        // A long quiet spell fills the bucket to its burst, no more.
        assert!(b.is_full(RATE, 1_000_000));
        for _ in 0..3 {
            assert_eq!(b.take(RATE, 1_000_000), Decision::Allowed);
        }
        assert!(matches!(b.take(RATE, 1_000_000), Decision::Limited { .. }));
    }

    #[test]
    fn retry_after_rounds_the_wait_up_to_whole_seconds() {
        let slow = Rate {
            burst: 1,
            per_minute: 1,
        };
        let mut b = Bucket::full(slow, 0);
        assert_eq!(b.take(slow, 0), Decision::Allowed);
        assert_eq!(b.take(slow, 0), Decision::Limited { retry_after_secs: 60 });
        assert_eq!(b.take(slow, 30_500), Decision::Limited { retry_after_secs: 30 });
        assert_eq!(b.take(slow, 59_999), Decision::Limited { retry_after_secs: 1 });
        assert_eq!(b.take(slow, 60_000), Decision::Allowed);
    }

    #[test]
    fn a_clock_step_back_never_adds_tokens_or_panics() {
        let mut b = Bucket::full(RATE, 10_000);
        for _ in 0..3 {
            b.take(RATE, 10_000);
        }
        assert!(matches!(b.take(RATE, 0), Decision::Limited { .. }));
        assert!(matches!(b.take(RATE, 10_500), Decision::Limited { .. }));
        assert_eq!(b.take(RATE, 11_000), Decision::Allowed);
        let mut extreme = Bucket::full(RATE, 0);
        assert_eq!(extreme.take(RATE, u64::MAX), Decision::Allowed);
    }

    #[test]
    fn keys_are_limited_separately() {
        let mut l = Limiter::new(RATE, 10);
        for _ in 0..3 {
            assert_eq!(l.take(&"a", 0), Decision::Allowed);
        }
        assert!(matches!(l.take(&"a", 0), Decision::Limited { .. }));
        assert_eq!(l.take(&"b", 0), Decision::Allowed);
    }

    #[test]
    fn the_table_stays_bounded_and_new_keys_share_the_overflow_bucket_when_it_is_full() {
        let mut l = Limiter::new(RATE, 2);
        l.take(&1, 0);
        l.take(&2, 0);
        assert_eq!(l.len(), 2);
        // Table full of drained buckets: keys 3.. share one bucket (burst 3), and the table does not grow.
        for k in 3..6 {
            assert_eq!(l.take(&k, 0), Decision::Allowed);
        }
        assert!(matches!(l.take(&7, 0), Decision::Limited { .. }));
        assert_eq!(l.len(), 2);
        // Once the old buckets have refilled they are dropped, making room for new keys.
        assert_eq!(l.take(&8, 10_000), Decision::Allowed);
        assert_eq!(l.len(), 1);
        for n in 0..100_000u32 {
            l.take(&n, 20_000);
        }
        assert!(l.len() <= 2);
    }
}
