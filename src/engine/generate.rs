//! One sequence's generation as an iterator over its tokens: the prompt is
//! decoded when the iterator is made, each `next` samples a token and
//! decodes it, and the stop conditions (a token budget, an end-of-generation
//! token) end the iteration. `run`, the parity tests and anything that
//! streams one sequence use it; many sequences at once go through the
//! continuous-batching scheduler ([`super::serve`]).

use super::scheduler::StopReason;
use super::{Batch, Engine, EngineError, Sampler, SamplerConfig};

#[derive(Clone, Debug)]
pub struct GenerateConfig {
    /// Tokens to generate at most.
    pub n_predict: usize,
    /// End at an end-of-generation token (not yielded). Benchmarks keep
    /// going to get exactly `n_predict` tokens.
    pub stop_at_eog: bool,
    pub sampler: SamplerConfig,
}

impl GenerateConfig {
    /// Greedy (argmax) decoding of up to `n_predict` tokens, stopping at an
    /// end-of-generation token.
    pub fn greedy(n_predict: usize) -> GenerateConfig {
        GenerateConfig {
            n_predict,
            stop_at_eog: true,
            sampler: SamplerConfig::greedy(),
        }
    }
}

/// Tokens of one sequence (sequence 0 of the engine's cache, which
/// [`Engine::generate`] clears first), as they are generated.
pub struct Generation<'e, 'm> {
    engine: &'e mut Engine<'m>,
    cfg: GenerateConfig,
    sampler: Sampler,
    /// Prompt and generated tokens so far (the repeat penalty's history).
    history: Vec<u32>,
    n_prompt: usize,
    /// The logits the next token is sampled from.
    logits: Vec<f32>,
    stop: Option<StopReason>,
}

impl<'m> Engine<'m> {
    /// Clears the cache, decodes `prompt` and returns the iterator over the
    /// tokens that follow it. The prompt's decode happens here, so timing
    /// this call times prompt processing.
    pub fn generate<'e>(
        &'e mut self,
        prompt: &[u32],
        cfg: GenerateConfig,
    ) -> Result<Generation<'e, 'm>, EngineError> {
        self.clear();
        let logits = self.decode(&Batch::from_prompt(prompt, 0, 0)?)?;
        let logits = logits.last().map(<[f32]>::to_vec).unwrap_or_default();
        Ok(Generation {
            sampler: Sampler::new(cfg.sampler.clone()),
            stop: (cfg.n_predict == 0).then_some(StopReason::Length),
            engine: self,
            cfg,
            history: prompt.to_vec(),
            n_prompt: prompt.len(),
            logits,
        })
    }
}

impl Generation<'_, '_> {
    /// The logits the next token will be sampled from (after the prompt,
    /// then after each generated token; empty once the budget is spent).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> &[u32] {
        &self.history[self.n_prompt..]
    }

    /// Why the iteration ended; `None` while it goes on.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    fn step(&mut self) -> Result<Option<u32>, EngineError> {
        if self.stop.is_some() {
            return Ok(None);
        }
        let next = self.sampler.sample(&self.logits, &self.history);
        if self.cfg.stop_at_eog && self.engine.model().tokenizer.is_eog(next) {
            self.stop = Some(StopReason::EndOfGeneration);
            return Ok(None);
        }
        self.history.push(next);
        if self.generated().len() >= self.cfg.n_predict {
            // The last token needs no decode: nothing samples after it.
            self.stop = Some(StopReason::Length);
            self.logits.clear();
        } else {
            let mut b = Batch::with_capacity(1);
            b.add(next, self.history.len() as i32 - 1, &[0], true)?;
            let logits = self.engine.decode(&b)?;
            self.logits.clear();
            self.logits
                .extend_from_slice(logits.last().unwrap_or_default());
        }
        Ok(Some(next))
    }
}

impl Iterator for Generation<'_, '_> {
    type Item = Result<u32, EngineError>;

    /// The next token; after an error the iteration ends.
    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(token) => token.map(Ok),
            Err(e) => {
                self.stop = Some(StopReason::Length);
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use crate::model::synth::{self, SynthFtype};
    use crate::model::weights::LoadOptions;
    use crate::model::Model;

    fn model() -> (tempfile::TempDir, Model) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        let preset = synth::preset("llama-15m").unwrap();
        synth::write_synthetic(preset, SynthFtype::F16, 3, &path).unwrap();
        let model = Model::load(&path, &LoadOptions::default()).unwrap();
        (dir, model)
    }

    fn engine(model: &Model) -> Engine<'_> {
        let cfg = EngineConfig {
            n_ctx: 64,
            n_threads: 2,
            ..EngineConfig::default()
        };
        Engine::new(model, cfg).unwrap()
    }

    /// The plain decode loop the iterator replaces, for comparison.
    fn by_hand(engine: &mut Engine<'_>, prompt: &[u32], n: usize) -> Vec<u32> {
        engine.clear();
        let mut last = engine
            .decode(&Batch::from_prompt(prompt, 0, 0).unwrap())
            .unwrap()
            .last()
            .unwrap()
            .to_vec();
        let mut out = Vec::new();
        for pos in prompt.len()..prompt.len() + n {
            let next = crate::engine::sampler::argmax(&last);
            out.push(next);
            let mut b = Batch::new();
            b.add(next, pos as i32, &[0], true).unwrap();
            last = engine.decode(&b).unwrap().last().unwrap().to_vec();
        }
        out
    }

    #[test]
    fn greedy_generation_is_the_decode_loop_and_stops_at_the_budget() {
        let (_dir, model) = model();
        let mut engine = engine(&model);
        let prompt = [1, 17, 42, 7];
        let want = by_hand(&mut engine, &prompt, 6);
        let cfg = GenerateConfig {
            stop_at_eog: false,
            ..GenerateConfig::greedy(6)
        };
        let mut generation = engine.generate(&prompt, cfg).unwrap();
        assert!(!generation.logits().is_empty());
        let got: Vec<u32> = generation.by_ref().map(Result::unwrap).collect();
        assert_eq!(got, want);
        assert_eq!(generation.generated(), &want[..]);
        assert_eq!(generation.stop_reason(), Some(StopReason::Length));
        assert!(generation.next().is_none());
        // The cache holds the prompt and every generated token but the last.
        assert_eq!(engine.kv.cells.n_used(), prompt.len() + 5);
    }

    #[test]
    fn a_zero_budget_yields_nothing_and_a_bad_prompt_is_an_error() {
        let (_dir, model) = model();
        let mut engine = engine(&model);
        let mut g = engine.generate(&[1, 2], GenerateConfig::greedy(0)).unwrap();
        assert!(g.next().is_none());
        assert_eq!(g.stop_reason(), Some(StopReason::Length));
        assert!(engine.generate(&[], GenerateConfig::greedy(4)).is_err());
        let too_long: Vec<u32> = (0..100).map(|i| i % 50).collect();
        assert!(engine
            .generate(&too_long, GenerateConfig::greedy(4))
            .is_err());
    }
}
