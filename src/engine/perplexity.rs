//! Perplexity bookkeeping with llama.cpp's convention: each chunk of `n_ctx`
//! tokens starts with BOS, and only its second half is scored, so every scored
//! token has at least half a context of history.

/// Negative log-likelihood of `target` under the softmax of `logits`.
pub fn token_nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let logit = logits
        .get(target as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY) as f64;
    sum.ln() - (logit - max)
}

/// Running totals over scored tokens.
#[derive(Clone, Debug, Default)]
pub struct PerplexityAccumulator {
    nll: f64,
    nll2: f64,
    count: u64,
}

impl PerplexityAccumulator {
    pub fn add(&mut self, nll: f64) {
        self.nll += nll;
        self.nll2 += nll * nll;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// exp(mean NLL).
    pub fn ppl(&self) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        (self.nll / self.count as f64).exp()
    }

    /// Standard error of the perplexity estimate (delta method on the mean NLL),
    /// as llama-perplexity prints after "+/-".
    pub fn ppl_error(&self) -> f64 {
        if self.count < 2 {
            return f64::NAN;
        }
        let n = self.count as f64;
        let mean = self.nll / n;
        let var = self.nll2 / n - mean * mean;
        if var <= 0.0 {
            return 0.0;
        }
        (var / (n - 1.0)).sqrt() * self.ppl()
    }
}

/// Index range of the positions scored in one chunk: logits at positions
/// `first..n_ctx-1` predict tokens `first+1..n_ctx`.
pub fn scored_range(n_ctx: usize) -> std::ops::Range<usize> {
    n_ctx / 2..n_ctx.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_give_vocab_size() {
        let logits = vec![0.5f32; 1000];
        let mut acc = PerplexityAccumulator::default();
        for t in 0..10 {
            acc.add(token_nll(&logits, t));
        }
        assert!((acc.ppl() - 1000.0).abs() < 1e-6);
        // No spread in the NLLs: the error vanishes up to rounding.
        assert!(acc.ppl_error() / acc.ppl() < 1e-6, "{}", acc.ppl_error());
    }

    #[test]
    fn confident_right_answers_give_low_ppl() {
        let mut logits = vec![0.0f32; 10];
        logits[3] = 20.0;
        assert!(token_nll(&logits, 3) < 1e-6);
        assert!(token_nll(&logits, 4) > 19.0);
        assert_eq!(scored_range(256), 128..255);
    }
}
