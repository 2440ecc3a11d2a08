//! Perplexity bookkeeping with llama.cpp's convention: each chunk of `n_ctx`
//! tokens starts with BOS, and only its second half is scored, so every scored
//! token has at least half a context of history.

use super::{Batch, Engine, EngineError, Logits};

/// A text's perplexity over its first chunks.
#[derive(Clone, Debug, Default)]
pub struct PerplexityRun {
    /// Over every scored token of the chunks that finished.
    pub total: PerplexityAccumulator,
    /// Each finished chunk's own perplexity, in order.
    pub chunk_ppl: Vec<f64>,
}

/// One finished chunk, for callers that want its logits (KL-divergence).
pub struct ScoredChunk<'a> {
    pub index: usize,
    /// The chunk's tokens as evaluated (BOS first when given).
    pub ids: &'a [u32],
    /// Logits of every scored position ([`scored_range`]).
    pub logits: &'a Logits,
}

/// Scores `tokens` in up to `n_chunks` chunks of the engine's context
/// (`engine.config().n_ctx`) as llama-perplexity does: a chunk's first
/// token is replaced by `bos` when given, the cache is cleared for every
/// chunk, and only the second half of each is scored. `stop` is asked before
/// every chunk (the run then holds the chunks that finished); `on_chunk`
/// sees each chunk's logits and the running totals after it.
pub fn perplexity(
    engine: &mut Engine<'_>,
    tokens: &[u32],
    n_chunks: usize,
    bos: Option<u32>,
    stop: &dyn Fn() -> bool,
    on_chunk: &mut dyn FnMut(&ScoredChunk<'_>, &PerplexityRun),
) -> Result<PerplexityRun, EngineError> {
    let n_ctx = engine.config().n_ctx;
    let scored = scored_range(n_ctx);
    let mut run = PerplexityRun::default();
    for (chunk, ids) in tokens.chunks_exact(n_ctx).take(n_chunks).enumerate() {
        if stop() {
            break;
        }
        let mut ids = ids.to_vec();
        if let Some(b) = bos {
            ids[0] = b;
        }
        engine.clear();
        let mut batch = Batch::with_capacity(ids.len());
        for (i, &t) in ids.iter().enumerate() {
            batch.add(t, i as i32, &[0], scored.contains(&i))?;
        }
        let logits = engine.decode(&batch)?;
        let mut chunk_acc = PerplexityAccumulator::default();
        for i in scored.clone() {
            // Every scored position asked for its row.
            let row = logits.get(i).ok_or_else(|| {
                crate::model::ModelError::Internal(format!("no logits for scored position {i}"))
            })?;
            let nll = token_nll(row, ids[i + 1]);
            run.total.add(nll);
            chunk_acc.add(nll);
        }
        run.chunk_ppl.push(chunk_acc.ppl());
        let scored = ScoredChunk {
            index: chunk,
            ids: &ids,
            logits: &logits,
        };
        on_chunk(&scored, &run);
    }
    engine.clear();
    Ok(run)
}

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
    fn chunks_are_scored_on_their_second_half_and_a_stop_keeps_what_finished() {
        use crate::engine::EngineConfig;
        let (_dir, model) = crate::model::synth::test_model(5);
        let cfg = EngineConfig {
            n_ctx: 16,
            n_threads: 2,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(&model, cfg).unwrap();
        let tokens: Vec<u32> = (0..70).map(|i| (i * 7 + 3) % 200).collect();
        let mut seen = Vec::new();
        let run = perplexity(&mut engine, &tokens, 3, Some(1), &|| false, &mut |c, _| {
            assert_eq!(c.ids[0], 1, "BOS first");
            assert!(scored_range(16).all(|i| c.logits.get(i).is_some()));
            seen.push(c.index)
        })
        .unwrap();
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!(run.chunk_ppl.len(), 3);
        assert_eq!(run.total.count(), 3 * scored_range(16).len() as u64);
        assert!(run.total.ppl().is_finite() && run.total.ppl() > 1.0);
        // The second chunk alone, scored again, is the same number.
        let again = perplexity(
            &mut engine,
            &tokens[16..],
            1,
            Some(1),
            &|| false,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(again.chunk_ppl[0].to_bits(), run.chunk_ppl[1].to_bits());
        let done = std::cell::Cell::new(0);
        let stopped = perplexity(
            &mut engine,
            &tokens,
            4,
            None,
            &|| done.get() >= 1,
            &mut |_, _| done.set(done.get() + 1),
        )
        .unwrap();
        assert_eq!(stopped.chunk_ppl.len(), 1);
    }

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
