//! Summary statistics of timing samples, shared by every command that
//! reports repeated measurements.

/// Arithmetic mean; `None` for no samples.
pub fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    Some(xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Sample standard deviation (divides by n - 1, as llama-bench does);
/// 0 for a single sample, `None` for none.
pub fn stddev(xs: &[f64]) -> Option<f64> {
    let m = mean(xs)?;
    if xs.len() < 2 {
        return Some(0.0);
    }
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (xs.len() - 1) as f64).sqrt())
}

pub fn min(xs: &[f64]) -> Option<f64> {
    xs.iter().copied().reduce(f64::min)
}

pub fn max(xs: &[f64]) -> Option<f64> {
    xs.iter().copied().reduce(f64::max)
}

/// Nearest-rank percentile: the value at rank ceil(q/100 * n) (1-based) of
/// the sorted samples; q = 0 gives the minimum. `None` for no samples or a
/// q outside 0..=100.
pub fn percentile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() || !(0.0..=100.0).contains(&q) {
        return None;
    }
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied()
}

/// Everything a report line usually needs, computed at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(xs: &[f64]) -> Option<Summary> {
        Some(Summary {
            n: xs.len(),
            mean: mean(xs)?,
            stddev: stddev(xs)?,
            min: min(xs)?,
            max: max(xs)?,
        })
    }
}

/// A frequency table of non-negative integer samples (e.g. token counts of
/// dataset records): exact mean, standard deviation and nearest-rank
/// percentiles in memory that grows with the number of distinct values, not
/// with the number of samples. Tables built in any order and merged agree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    counts: std::collections::BTreeMap<u64, u64>,
    n: u64,
}

impl Tally {
    pub fn new() -> Tally {
        Tally::default()
    }

    pub fn add(&mut self, value: u64) {
        *self.counts.entry(value).or_insert(0) += 1;
        self.n += 1;
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Tally) {
        for (&value, &count) in &other.counts {
            *self.counts.entry(value).or_insert(0) += count;
        }
        self.n += other.n;
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// (value, how many samples have it), smallest value first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts.iter().map(|(&v, &c)| (v, c))
    }

    pub fn sum(&self) -> u128 {
        self.iter()
            .map(|(v, c)| u128::from(v) * u128::from(c))
            .sum()
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum() as f64 / self.n as f64)
    }

    /// Sample standard deviation (n - 1), like [`stddev`].
    pub fn stddev(&self) -> Option<f64> {
        let m = self.mean()?;
        if self.n < 2 {
            return Some(0.0);
        }
        let ss: f64 = self
            .iter()
            .map(|(v, c)| (v as f64 - m) * (v as f64 - m) * c as f64)
            .sum();
        Some((ss / (self.n - 1) as f64).sqrt())
    }

    pub fn min(&self) -> Option<u64> {
        self.counts.keys().next().copied()
    }

    pub fn max(&self) -> Option<u64> {
        self.counts.keys().next_back().copied()
    }

    /// Nearest-rank percentile, the same rule as [`percentile`].
    pub fn percentile(&self, q: f64) -> Option<u64> {
        if self.n == 0 || !(0.0..=100.0).contains(&q) {
            return None;
        }
        let rank = (((q / 100.0) * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (value, count) in self.iter() {
            seen += count;
            if seen >= rank {
                return Some(value);
            }
        }
        self.max()
    }

    /// How many samples are at most `limit`.
    pub fn count_at_most(&self, limit: u64) -> u64 {
        self.counts.range(..=limit).map(|(_, &c)| c).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn mean_and_sample_stddev() {
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert!(close(mean(&xs).unwrap(), 5.0));
        // Sum of squares 32 over n - 1 = 7.
        assert!(close(stddev(&xs).unwrap(), (32.0f64 / 7.0).sqrt()));
        assert_eq!(stddev(&[3.0]), Some(0.0));
        assert_eq!(mean(&[]), None);
        assert_eq!(stddev(&[]), None);
    }

    #[test]
    fn min_max() {
        let xs = [3.0, -1.0, 8.5, 2.0];
        assert_eq!(min(&xs), Some(-1.0));
        assert_eq!(max(&xs), Some(8.5));
        assert_eq!(min(&[]), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        // Wikipedia's nearest-rank example: 15, 20, 35, 40, 50.
        let xs = [50.0, 15.0, 40.0, 20.0, 35.0];
        assert_eq!(percentile(&xs, 5.0), Some(15.0));
        assert_eq!(percentile(&xs, 30.0), Some(20.0));
        assert_eq!(percentile(&xs, 40.0), Some(20.0));
        assert_eq!(percentile(&xs, 50.0), Some(35.0));
        assert_eq!(percentile(&xs, 100.0), Some(50.0));
        assert_eq!(percentile(&xs, 0.0), Some(15.0));
        assert_eq!(percentile(&xs, 101.0), None);
        assert_eq!(percentile(&[], 50.0), None);
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 90.0), Some(9.0));
        assert_eq!(percentile(&ten, 91.0), Some(10.0));
    }

    #[test]
    fn summary_collects_all() {
        let s = Summary::of(&[1.0, 3.0]).unwrap();
        assert_eq!((s.n, s.min, s.max), (2, 1.0, 3.0));
        assert!(close(s.mean, 2.0));
        assert!(close(s.stddev, 2.0f64.sqrt()));
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn tally_agrees_with_slice_statistics() {
        let values: Vec<u64> = (0..1000u64).map(|i| (i * 7919) % 613 + i % 3).collect();
        let floats: Vec<f64> = values.iter().map(|&v| v as f64).collect();
        // Two halves merged must equal one table of everything.
        let (mut a, mut b) = (Tally::new(), Tally::new());
        for (i, &v) in values.iter().enumerate() {
            if i % 2 == 0 {
                a.add(v)
            } else {
                b.add(v)
            }
        }
        a.merge(&b);
        let mut all = Tally::new();
        values.iter().rev().for_each(|&v| all.add(v));
        assert_eq!(a, all);
        assert_eq!(all.len(), 1000);
        assert!(close(all.mean().unwrap(), mean(&floats).unwrap()));
        assert!(close(all.stddev().unwrap(), stddev(&floats).unwrap()));
        assert_eq!(all.min().map(|v| v as f64), min(&floats));
        assert_eq!(all.max().map(|v| v as f64), max(&floats));
        for q in [0.0, 1.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 100.0] {
            assert_eq!(
                all.percentile(q).map(|v| v as f64),
                percentile(&floats, q),
                "q {q}"
            );
        }
        assert_eq!(
            all.count_at_most(300) as usize,
            values.iter().filter(|&&v| v <= 300).count()
        );
    }

    #[test]
    fn empty_and_single_tally() {
        let mut t = Tally::new();
        assert!(t.is_empty());
        assert_eq!(
            (t.mean(), t.stddev(), t.percentile(50.0)),
            (None, None, None)
        );
        t.add(42);
        assert_eq!(t.stddev(), Some(0.0));
        assert_eq!(t.percentile(0.0), Some(42));
        assert_eq!(t.percentile(100.5), None);
        assert_eq!(t.count_at_most(41), 0);
    }
}
