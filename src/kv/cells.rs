//! The KV cell table: which position and which sequences each cache cell
//! holds. It is the single source of truth for what a token may attend to.

use super::KvError;

/// Highest number of sequences one cache can serve at once.
pub const MAX_SEQS: usize = 256;

/// A set of sequence ids (0..MAX_SEQS), as a fixed bitset: cheap to copy and
/// to intersect while building masks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SeqSet([u64; MAX_SEQS / 64]);

impl SeqSet {
    pub const EMPTY: SeqSet = SeqSet([0; MAX_SEQS / 64]);

    pub fn one(seq: u32) -> Result<SeqSet, KvError> {
        let mut s = SeqSet::EMPTY;
        s.insert(seq)?;
        Ok(s)
    }

    pub fn from_ids(ids: &[u32]) -> Result<SeqSet, KvError> {
        let mut s = SeqSet::EMPTY;
        for &id in ids {
            s.insert(id)?;
        }
        Ok(s)
    }

    pub fn insert(&mut self, seq: u32) -> Result<(), KvError> {
        let i = seq as usize;
        if i >= MAX_SEQS {
            return Err(KvError::SeqOutOfRange { seq, max: MAX_SEQS });
        }
        self.0[i / 64] |= 1 << (i % 64);
        Ok(())
    }

    pub fn remove(&mut self, seq: u32) {
        let i = seq as usize;
        if i < MAX_SEQS {
            self.0[i / 64] &= !(1 << (i % 64));
        }
    }

    pub fn contains(&self, seq: u32) -> bool {
        let i = seq as usize;
        i < MAX_SEQS && self.0[i / 64] & (1 << (i % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    pub fn intersects(&self, other: &SeqSet) -> bool {
        self.0.iter().zip(other.0.iter()).any(|(a, b)| a & b != 0)
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..MAX_SEQS as u32).filter(|s| self.contains(*s))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    pub pos: i32,
    pub seqs: SeqSet,
}

impl Cell {
    const EMPTY: Cell = Cell {
        pos: -1,
        seqs: SeqSet::EMPTY,
    };

    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }
}

/// What one token of a ubatch needs from the table: where it sits and who it belongs to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenPlace {
    pub pos: i32,
    pub seqs: SeqSet,
}

/// Occupancy of the cache's cells.
#[derive(Clone, Debug)]
pub struct CellTable {
    cells: Vec<Cell>,
    used: usize,
}

impl CellTable {
    pub fn new(n_ctx: usize) -> CellTable {
        CellTable {
            cells: vec![Cell::EMPTY; n_ctx],
            used: 0,
        }
    }

    pub fn n_ctx(&self) -> usize {
        self.cells.len()
    }

    pub fn n_used(&self) -> usize {
        self.used
    }

    pub fn cell(&self, i: usize) -> Option<&Cell> {
        self.cells.get(i)
    }

    pub fn clear(&mut self) {
        self.cells.fill(Cell::EMPTY);
        self.used = 0;
    }

    /// Reserves one free cell per token and records the tokens in them.
    ///
    /// A token goes into the lowest free cell above every cell its
    /// sequences already hold, so each sequence's cells stay in position
    /// order: attention then visits them in the same order whatever else
    /// the cache holds or held (a reused prefix, holes left by finished
    /// sequences), which batch-invariant results depend on. Only when no
    /// cell above is free does it take the lowest free one.
    pub fn place(&mut self, tokens: &[TokenPlace]) -> Result<Vec<u32>, KvError> {
        let mut slots = Vec::with_capacity(tokens.len());
        self.place_into(tokens, &mut slots)?;
        Ok(slots)
    }

    /// [`place`](Self::place), appending the cells to `slots`. On an error
    /// the cells taken so far are in `slots` too, for the caller to free.
    pub fn place_into(
        &mut self,
        tokens: &[TokenPlace],
        slots: &mut Vec<u32>,
    ) -> Result<(), KvError> {
        let free = self.n_ctx() - self.used;
        if tokens.len() > free {
            return Err(KvError::Full {
                needed: tokens.len(),
                free,
                n_ctx: self.n_ctx(),
            });
        }
        // Per sequence: one past its highest cell.
        let mut above = [0usize; MAX_SEQS];
        let top = self
            .cells
            .iter()
            .rposition(|c| !c.is_empty())
            .map_or(0, |i| i + 1);
        let mut pending = SeqSet::EMPTY;
        for t in tokens {
            for (w, word) in pending.0.iter_mut().zip(t.seqs.0) {
                *w |= word;
            }
        }
        for (i, c) in self.cells[..top].iter().enumerate().rev() {
            if pending.is_empty() {
                break;
            }
            if c.seqs.intersects(&pending) {
                for s in c.seqs.iter() {
                    if pending.contains(s) {
                        above[s as usize] = i + 1;
                        pending.remove(s);
                    }
                }
            }
        }
        for t in tokens {
            if t.seqs.is_empty() {
                return Err(KvError::NoSequence);
            }
            let start = t.seqs.iter().map(|s| above[s as usize]).max().unwrap_or(0);
            let next = match self.cells[start..].iter().position(Cell::is_empty) {
                Some(i) => start + i,
                // Some cell is free: `used` counts fewer than n_ctx.
                None => self
                    .cells
                    .iter()
                    .position(Cell::is_empty)
                    .ok_or(KvError::Full {
                        needed: tokens.len(),
                        free: 0,
                        n_ctx: self.n_ctx(),
                    })?,
            };
            self.cells[next] = Cell {
                pos: t.pos,
                seqs: t.seqs,
            };
            self.used += 1;
            for s in t.seqs.iter() {
                above[s as usize] = above[s as usize].max(next + 1);
            }
            slots.push(next as u32);
        }
        Ok(())
    }

    /// Frees cells placed by a ubatch that then failed.
    pub fn free(&mut self, slots: &[u32]) {
        for &s in slots {
            if let Some(c) = self.cells.get_mut(s as usize) {
                if !c.is_empty() {
                    *c = Cell::EMPTY;
                    self.used -= 1;
                }
            }
        }
    }

    /// Forgets positions `[p0, p1)` of `seq` (all of them with `..`); cells no
    /// longer used by any sequence become free.
    pub fn seq_rm(&mut self, seq: u32, p0: i32, p1: i32) {
        for c in &mut self.cells {
            if c.seqs.contains(seq) && c.pos >= p0 && c.pos < p1 {
                c.seqs.remove(seq);
                if c.seqs.is_empty() {
                    *c = Cell::EMPTY;
                    self.used -= 1;
                }
            }
        }
    }

    /// Lets `dst` see the cells of `src` in `[p0, p1)` (a shared prefix is
    /// computed once and then belongs to every sequence that starts with it).
    pub fn seq_cp(&mut self, src: u32, dst: u32, p0: i32, p1: i32) -> Result<(), KvError> {
        SeqSet::one(dst)?;
        for c in &mut self.cells {
            if c.seqs.contains(src) && c.pos >= p0 && c.pos < p1 {
                c.seqs.insert(dst)?;
            }
        }
        Ok(())
    }

    /// Largest position held for `seq`, if any.
    pub fn seq_pos_max(&self, seq: u32) -> Option<i32> {
        self.cells
            .iter()
            .filter(|c| c.seqs.contains(seq))
            .map(|c| c.pos)
            .max()
    }

    /// Cells that only sequences in `ids` hold.
    pub fn cells_held_only_by(&self, ids: std::ops::Range<u32>) -> usize {
        let mut others = SeqSet::EMPTY;
        for s in (0..MAX_SEQS as u32).filter(|s| !ids.contains(s)) {
            // In range by construction.
            let _ = others.insert(s);
        }
        self.cells
            .iter()
            .filter(|c| !c.is_empty() && !c.seqs.intersects(&others))
            .count()
    }

    /// Cells held by `seq`.
    pub fn seq_cells(&self, seq: u32) -> usize {
        self.cells.iter().filter(|c| c.seqs.contains(seq)).count()
    }

    /// How many leading cells attention must look at: one past the highest
    /// used cell, rounded up to `pad` (fewer distinct graph shapes), capped at n_ctx.
    pub fn n_kv(&self, pad: usize) -> usize {
        let last = self
            .cells
            .iter()
            .rposition(|c| !c.is_empty())
            .map_or(0, |i| i + 1);
        let pad = pad.max(1);
        (last.div_ceil(pad) * pad).clamp(1.min(self.n_ctx()), self.n_ctx())
    }

    /// Whether token `t` may attend to cell `c`: same sequence, not in the
    /// future, and inside the sliding window when the layer has one.
    #[inline]
    pub fn visible(cell: &Cell, t: &TokenPlace, window: Option<u32>) -> bool {
        if !cell.seqs.intersects(&t.seqs) || cell.pos > t.pos {
            return false;
        }
        match window {
            Some(w) => (t.pos - cell.pos) < w as i32,
            None => true,
        }
    }

    /// Fills an attention mask of `n_kv` columns per token row: 0 where the
    /// token may attend, -inf elsewhere. Rows past `tokens.len()` (padding) are fully masked.
    pub fn fill_mask(
        &self,
        tokens: &[TokenPlace],
        n_kv: usize,
        window: Option<u32>,
        mask: &mut [half::f16],
    ) {
        let n_kv = n_kv.min(self.n_ctx());
        for (row, chunk) in mask.chunks_exact_mut(n_kv).enumerate() {
            match tokens.get(row) {
                Some(t) => {
                    for (m, cell) in chunk.iter_mut().zip(&self.cells[..n_kv]) {
                        *m = if Self::visible(cell, t, window) {
                            half::f16::ZERO
                        } else {
                            half::f16::NEG_INFINITY
                        };
                    }
                }
                None => chunk.fill(half::f16::NEG_INFINITY),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(pos: i32, seq: u32) -> TokenPlace {
        TokenPlace {
            pos,
            seqs: SeqSet::one(seq).unwrap(),
        }
    }

    #[test]
    fn seqset_basics() {
        let mut s = SeqSet::one(3).unwrap();
        s.insert(200).unwrap();
        assert!(s.contains(3) && s.contains(200) && !s.contains(4));
        assert_eq!(s.len(), 2);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![3, 200]);
        assert!(SeqSet::one(256).is_err());
        s.remove(3);
        s.remove(200);
        assert!(s.is_empty());
    }

    #[test]
    fn mask_is_causal_within_a_sequence_and_blind_across() {
        let mut t = CellTable::new(8);
        let toks = [tok(0, 0), tok(1, 0), tok(0, 1), tok(2, 0)];
        let slots = t.place(&toks).unwrap();
        assert_eq!(slots, vec![0, 1, 2, 3]);
        let n_kv = t.n_kv(1);
        assert_eq!(n_kv, 4);
        let mut m = vec![half::f16::ZERO; n_kv * 5];
        t.fill_mask(&toks, n_kv, None, &mut m);
        let ok = |r: usize, c: usize| m[r * n_kv + c] == half::f16::ZERO;
        // token (pos 1, seq 0) sees cells 0 and 1 only
        assert!(ok(1, 0) && ok(1, 1) && !ok(1, 2) && !ok(1, 3));
        // seq 1 sees only its own cell
        assert!(!ok(2, 0) && ok(2, 2) && !ok(2, 3));
        // (pos 2, seq 0) sees 0, 1, 3
        assert!(ok(3, 0) && ok(3, 1) && !ok(3, 2) && ok(3, 3));
        // padding row fully masked
        assert!((0..n_kv).all(|c| !ok(4, c)));
    }

    #[test]
    fn sliding_window_hides_old_positions() {
        let mut t = CellTable::new(16);
        let toks: Vec<_> = (0..10).map(|p| tok(p, 0)).collect();
        t.place(&toks).unwrap();
        let mut m = vec![half::f16::ZERO; 10 * 10];
        t.fill_mask(&toks, 10, Some(4), &mut m);
        let ok = |r: usize, c: usize| m[r * 10 + c] == half::f16::ZERO;
        assert!(ok(9, 9) && ok(9, 6) && !ok(9, 5) && !ok(9, 0));
        assert!(ok(3, 0) && ok(3, 3));
    }

    #[test]
    fn removal_frees_cells_and_shared_cells_survive() {
        let mut t = CellTable::new(4);
        t.place(&[tok(0, 0), tok(1, 0)]).unwrap();
        t.seq_cp(0, 1, 0, i32::MAX).unwrap();
        t.place(&[tok(2, 1)]).unwrap();
        assert_eq!(t.n_used(), 3);
        assert_eq!(t.seq_cells(1), 3);
        t.seq_rm(0, 0, i32::MAX);
        // the prefix still belongs to sequence 1
        assert_eq!(t.n_used(), 3);
        t.seq_rm(1, 0, i32::MAX);
        assert_eq!(t.n_used(), 0);
        // an empty table still attends to one (masked) cell
        assert_eq!(t.n_kv(256), 1);
    }

    #[test]
    fn a_sequence_grows_above_its_own_cells_and_new_ones_fill_holes() {
        let mut t = CellTable::new(8);
        t.place(&[tok(0, 0), tok(0, 1), tok(1, 1), tok(1, 0)])
            .unwrap();
        // Sequence 1 ends: cells 1 and 2 become holes below sequence 0's last cell.
        t.seq_rm(1, 0, i32::MAX);
        assert_eq!(t.place(&[tok(2, 0)]).unwrap(), vec![4]);
        // A new sequence has no cells yet: it starts in the lowest hole.
        assert_eq!(t.place(&[tok(0, 2), tok(1, 2)]).unwrap(), vec![1, 2]);
        // A sequence that shares cells (a copied prefix) continues above them.
        t.seq_cp(0, 3, 0, 2).unwrap();
        assert_eq!(t.place(&[tok(2, 3)]).unwrap(), vec![5]);
        // No free cell above: the lowest free one rather than an error.
        t.place(&[tok(3, 0), tok(4, 0)]).unwrap();
        t.seq_rm(2, 0, i32::MAX);
        assert_eq!(t.place(&[tok(5, 0)]).unwrap(), vec![1]);
    }

    #[test]
    fn full_cache_is_an_error_naming_the_numbers() {
        let mut t = CellTable::new(2);
        let err = t.place(&[tok(0, 0), tok(1, 0), tok(2, 0)]).unwrap_err();
        assert!(
            err.to_string().contains('3') && err.to_string().contains('2'),
            "{err}"
        );
        assert_eq!(t.seq_pos_max(0), None);
        t.place(&[tok(5, 0)]).unwrap();
        assert_eq!(t.seq_pos_max(0), Some(5));
    }
}
