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
}
