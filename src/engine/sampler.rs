//! Turning logits into the next token: greedy, or temperature sampling with
//! top-k / top-p / min-p filters and a repeat penalty.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 = greedy (argmax).
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0.0 = off.
    pub min_p: f32,
    /// 1.0 = off.
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    pub fn greedy() -> SamplerConfig {
        SamplerConfig {
            temperature: 0.0,
            ..SamplerConfig::default()
        }
    }
}

pub struct Sampler {
    cfg: SamplerConfig,
    rng: Xoshiro256PlusPlus,
    candidates: Vec<(u32, f32)>,
}

/// Index of the largest logit (first one on ties, as llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        let rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        Sampler {
            cfg,
            rng,
            candidates: Vec::new(),
        }
    }

    /// Picks the next token; `history` is the sequence so far (for the repeat penalty).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let penalize = self.cfg.repeat_penalty != 1.0 && self.cfg.repeat_last_n > 0;
        if self.cfg.temperature <= 0.0 && !penalize {
            return argmax(logits);
        }
        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().map(|(i, &v)| (i as u32, v)));
        if penalize {
            let start = history.len().saturating_sub(self.cfg.repeat_last_n);
            let mut seen: Vec<u32> = history[start..].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for id in seen {
                if let Some(c) = self.candidates.get_mut(id as usize) {
                    // Same convention as llama.cpp: shrink positive logits, grow negative ones.
                    c.1 = if c.1 > 0.0 {
                        c.1 / self.cfg.repeat_penalty
                    } else {
                        c.1 * self.cfg.repeat_penalty
                    };
                }
            }
        }
        if self.cfg.temperature <= 0.0 {
            return self
                .candidates
                .iter()
                .fold(
                    (0u32, f32::NEG_INFINITY),
                    |b, c| if c.1 > b.1 { *c } else { b },
                )
                .0;
        }
        self.candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if self.cfg.top_k > 0 {
            self.candidates.truncate(self.cfg.top_k.max(1));
        }
        let t = self.cfg.temperature;
        let max = self.candidates.first().map_or(0.0, |c| c.1);
        let mut probs: Vec<f32> = self
            .candidates
            .iter()
            .map(|c| ((c.1 - max) / t).exp())
            .collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        let mut keep = probs.len();
        if self.cfg.min_p > 0.0 {
            let floor = probs.first().copied().unwrap_or(0.0) * self.cfg.min_p;
            keep = keep.min(probs.iter().take_while(|p| **p >= floor).count().max(1));
        }
        if self.cfg.top_p < 1.0 {
            let mut acc = 0.0;
            let mut n = 0;
            for p in &probs[..keep] {
                acc += p;
                n += 1;
                if acc >= self.cfg.top_p {
                    break;
                }
            }
            keep = n.max(1);
        }
        let total: f32 = probs[..keep].iter().sum();
        let mut r = self.rng.gen::<f32>() * total;
        for (i, p) in probs[..keep].iter().enumerate() {
            r -= p;
            if r <= 0.0 {
                return self.candidates[i].0;
            }
        }
        self.candidates[keep - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn repeat_penalty_changes_the_greedy_choice() {
        let cfg = SamplerConfig {
            repeat_penalty: 2.0,
            ..SamplerConfig::greedy()
        };
        let mut s = Sampler::new(cfg);
        assert_eq!(s.sample(&[1.0, 3.0, 2.0], &[1]), 2);
    }

    #[test]
    fn top_k_one_is_greedy_and_seeds_repeat() {
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 1,
            seed: 7,
            ..SamplerConfig::default()
        };
        let mut s = Sampler::new(cfg.clone());
        assert_eq!(s.sample(&[0.0, 5.0, 1.0], &[]), 1);
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32 * 0.1).collect();
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..cfg
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(cfg.clone());
            (0..20).map(|_| s.sample(&logits, &[])).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(cfg);
            (0..20).map(|_| s.sample(&logits, &[])).collect()
        };
        assert_eq!(a, b);
        assert!(
            a.iter().any(|&x| x != a[0]),
            "sampling at temperature 1 should vary"
        );
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.5,
            seed: 1,
            ..SamplerConfig::default()
        };
        let mut s = Sampler::new(cfg);
        for _ in 0..50 {
            let t = s.sample(&[10.0, 9.9, 0.0, 0.0], &[]);
            assert!(t == 0 || t == 1);
        }
    }
}
