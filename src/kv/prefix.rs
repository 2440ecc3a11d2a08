//! The automatic prefix cache's bookkeeping: which token sequences still
//! have their KV cells, under which sequence id, and which one a new prompt
//! should start from.
//!
//! A finished request leaves its cells behind under a cache sequence id (a
//! `seq_cp` into it: the cells are shared, not copied, and live as long as
//! some sequence holds them). A new request copies the longest matching
//! prefix into its own sequence and computes only the rest. Entries are
//! dropped least recently used first, when their ids run out or when
//! running requests need the cells. This type only decides; the scheduler
//! moves the cells.

/// Fewest leading tokens a different prompt must share with an entry to
/// reuse it: shorter matches (a BOS, a chat template's first marker) save
/// nothing worth an entry's lookup and would make every prompt a "hit".
pub const MIN_SHARED_TOKENS: usize = 16;

/// What a lookup found, in the words of the serving reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CacheOutcome {
    /// Nothing reused.
    Miss,
    /// The whole prompt was cached.
    Hit,
    /// A leading part of the prompt was cached.
    PrefixHit,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Miss => "MISS",
            CacheOutcome::Hit => "HIT",
            CacheOutcome::PrefixHit => "PREFIX_HIT",
        }
    }
}

/// A lookup's answer: copy positions `0..reuse` of `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixMatch {
    pub seq: u32,
    /// Leading prompt tokens whose cells can be reused.
    pub reuse: usize,
    pub outcome: CacheOutcome,
}

#[derive(Debug)]
struct Entry {
    seq: u32,
    /// The tokens at positions `0..tokens.len()` of `seq`.
    tokens: Vec<u32>,
    last_used: u64,
}

/// Cached token sequences, each under its own sequence id.
#[derive(Debug)]
pub struct PrefixCache {
    entries: Vec<Entry>,
    free_ids: Vec<u32>,
    clock: u64,
}

/// What storing a sequence asks the scheduler to do with the cells.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StorePlan {
    /// Copy the finished sequence's cells into this id (None: an entry
    /// already holds these tokens, nothing to keep).
    pub into: Option<u32>,
    /// Entries dropped: remove these ids' cells.
    pub dropped: Vec<u32>,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    /// A cache that may use the sequence ids in `ids`.
    pub fn new(ids: std::ops::Range<u32>) -> PrefixCache {
        PrefixCache {
            entries: Vec::new(),
            // Popped from the back: lowest ids first.
            free_ids: ids.rev().collect(),
            clock: 0,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Tokens held over all entries (shared cells counted once per entry).
    pub fn tokens(&self) -> usize {
        self.entries.iter().map(|e| e.tokens.len()).sum()
    }

    /// The entry sharing the longest prefix with `prompt`. At least one
    /// prompt token is always left to compute (its logits pick the first
    /// output token), so a fully cached prompt reuses all but its last.
    pub fn lookup(&mut self, prompt: &[u32]) -> PrefixMatch {
        let best = self
            .entries
            .iter_mut()
            .map(|e| (common_prefix(&e.tokens, prompt), e))
            .max_by_key(|(n, e)| (*n, e.last_used));
        let miss = PrefixMatch {
            seq: 0,
            reuse: 0,
            outcome: CacheOutcome::Miss,
        };
        let Some((shared, entry)) = best else {
            return miss;
        };
        let whole = shared == prompt.len();
        if !whole && shared < MIN_SHARED_TOKENS {
            return miss;
        }
        let reuse = shared.min(prompt.len().saturating_sub(1));
        if reuse == 0 {
            return miss;
        }
        self.clock += 1;
        entry.last_used = self.clock;
        PrefixMatch {
            seq: entry.seq,
            reuse,
            outcome: if whole {
                CacheOutcome::Hit
            } else {
                CacheOutcome::PrefixHit
            },
        }
    }

    /// Plans keeping `tokens` (a finished sequence's cached positions).
    /// Entries it extends are dropped (it covers them); an entry that
    /// already covers it is only marked used.
    pub fn store(&mut self, tokens: &[u32]) -> StorePlan {
        let mut plan = StorePlan::default();
        if tokens.is_empty() {
            return plan;
        }
        self.clock += 1;
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.tokens.len() >= tokens.len() && e.tokens.starts_with(tokens))
        {
            e.last_used = self.clock;
            return plan;
        }
        let mut i = 0;
        while i < self.entries.len() {
            if tokens.starts_with(&self.entries[i].tokens) {
                let e = self.entries.swap_remove(i);
                self.free_ids.push(e.seq);
                plan.dropped.push(e.seq);
            } else {
                i += 1;
            }
        }
        if self.free_ids.is_empty() {
            match self.evict_lru() {
                Some(seq) => plan.dropped.push(seq),
                // No ids at all: nothing can be kept.
                None => return plan,
            }
        }
        let Some(seq) = self.free_ids.pop() else {
            return plan;
        };
        self.entries.push(Entry {
            seq,
            tokens: tokens.to_vec(),
            last_used: self.clock,
        });
        plan.into = Some(seq);
        plan
    }

    /// Drops the least recently used entry; returns its id (its cells are
    /// the caller's to remove).
    pub fn evict_lru(&mut self) -> Option<u32> {
        let (i, _) = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.last_used)?;
        let e = self.entries.swap_remove(i);
        self.free_ids.push(e.seq);
        Some(e.seq)
    }

    /// Forgets everything (the cells are gone).
    pub fn clear(&mut self) {
        for e in self.entries.drain(..) {
            self.free_ids.push(e.seq);
        }
        self.free_ids.sort_unstable_by(|a, b| b.cmp(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(first: u32, len: usize) -> Vec<u32> {
        (first..first + len as u32).collect()
    }

    #[test]
    fn the_reports_sequence_miss_hit_miss_hit() {
        let mut c = PrefixCache::new(10..20);
        let a = prompt(0, 40);
        let b = prompt(1000, 40);
        assert_eq!(c.lookup(&a).outcome, CacheOutcome::Miss);
        // A finished request leaves prompt + output behind.
        let mut a_done = a.clone();
        a_done.extend([7, 8, 9]);
        assert_eq!(c.store(&a_done).into, Some(10));
        let hit = c.lookup(&a);
        assert_eq!(
            (hit.outcome, hit.seq, hit.reuse),
            (CacheOutcome::Hit, 10, 39)
        );
        assert_eq!(c.lookup(&b).outcome, CacheOutcome::Miss);
        assert_eq!(c.store(&b).into, Some(11));
        assert_eq!(c.lookup(&a).outcome, CacheOutcome::Hit);
    }

    #[test]
    fn a_shared_system_prompt_is_a_prefix_hit_and_short_matches_are_misses() {
        let mut c = PrefixCache::new(0..4);
        let system = prompt(0, 256);
        let mut first = system.clone();
        first.extend([900, 901]);
        c.store(&first);
        let mut second = system.clone();
        second.extend([500, 501, 502]);
        let m = c.lookup(&second);
        assert_eq!((m.outcome, m.reuse), (CacheOutcome::PrefixHit, 256));
        let mut short = prompt(0, MIN_SHARED_TOKENS - 1);
        short.push(77);
        assert_eq!(c.lookup(&short).outcome, CacheOutcome::Miss);
    }

    #[test]
    fn extending_an_entry_replaces_it_and_covered_ones_are_not_stored() {
        let mut c = PrefixCache::new(0..4);
        let a = prompt(0, 20);
        assert_eq!(c.store(&a).into, Some(0));
        let longer = prompt(0, 30);
        let plan = c.store(&longer);
        assert_eq!(plan.dropped, vec![0]);
        assert!(plan.into.is_some());
        assert_eq!(c.len(), 1);
        // Already covered: keep nothing new.
        assert_eq!(c.store(&a), StorePlan::default());
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn ids_running_out_evict_the_least_recently_used() {
        let mut c = PrefixCache::new(0..2);
        let (a, b, d) = (prompt(0, 20), prompt(100, 20), prompt(200, 20));
        c.store(&a);
        c.store(&b);
        // `a` used again: `b` is now the oldest.
        assert_eq!(c.lookup(&a).outcome, CacheOutcome::Hit);
        let plan = c.store(&d);
        assert_eq!(plan.dropped, vec![1]);
        assert_eq!(plan.into, Some(1));
        assert_eq!(c.lookup(&b).outcome, CacheOutcome::Miss);
        assert_eq!(c.evict_lru(), Some(0));
        assert_eq!(c.evict_lru(), Some(1));
        assert_eq!(c.evict_lru(), None);
        assert!(c.is_empty());
        // No ids at all: nothing is kept, nothing fails.
        assert_eq!(PrefixCache::new(0..0).store(&a), StorePlan::default());
    }
}
