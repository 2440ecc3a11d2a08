//! One sequence's generation as an iterator over its tokens: a one-slot
//! [`Scheduler`] (the continuous-batching scheduler every generating command
//! uses), stepped as tokens are asked for. The prompt is decoded when the
//! iterator is made; the stop conditions (a token budget, an
//! end-of-generation token) end the iteration.

use super::scheduler::{Event, Request, ScheduleConfig, ScheduleError, Scheduler, StopReason};
use super::{Engine, SamplerConfig};
use std::collections::VecDeque;

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

/// Tokens of one sequence, as they are generated. The engine's cache is
/// cleared when it is made and when it is dropped.
pub struct Generation<'e, 'm> {
    scheduler: Scheduler<'e, 'm>,
    /// Sampled, not yet handed out (a step samples at most one).
    ready: VecDeque<u32>,
    generated: Vec<u32>,
    events: Vec<Event>,
    stop: Option<StopReason>,
    failed: bool,
}

/// The request's index in its one-slot scheduler.
const ONLY: usize = 0;

impl<'m> Engine<'m> {
    /// Decodes `prompt` (after clearing the cache) and returns the iterator
    /// over the tokens that follow it. The prompt's decode happens here, so
    /// timing this call times prompt processing.
    pub fn generate<'e>(
        &'e mut self,
        prompt: &[u32],
        cfg: GenerateConfig,
    ) -> Result<Generation<'e, 'm>, ScheduleError> {
        let schedule = ScheduleConfig {
            n_slots: 1,
            // The whole prompt in one decode call (split into ubatches there).
            max_batch_tokens: prompt.len().max(1),
            stop_at_eog: cfg.stop_at_eog,
            sampler: cfg.sampler,
            shared_prefix: Vec::new(),
            prefix_cache_cells: 0,
        };
        if prompt.is_empty() {
            return Err(ScheduleError::EmptyPrompt { index: ONLY });
        }
        let mut scheduler = Scheduler::new(self, schedule)?;
        // A budget of 0 is a generation that has already ended (the
        // scheduler refuses such a request).
        if cfg.n_predict > 0 {
            scheduler.submit(Request {
                prompt: prompt.to_vec(),
                n_predict: cfg.n_predict,
            })?;
        }
        let mut generation = Generation {
            scheduler,
            ready: VecDeque::with_capacity(1),
            generated: Vec::with_capacity(cfg.n_predict),
            events: Vec::with_capacity(2),
            stop: (cfg.n_predict == 0).then_some(StopReason::Length),
            failed: false,
        };
        if generation.stop.is_none() {
            generation.advance()?;
        }
        Ok(generation)
    }
}

impl Generation<'_, '_> {
    /// The logits the latest sampled token came from (the one `next`
    /// returns next, or else the last one it returned).
    pub fn logits(&self) -> Option<&[f32]> {
        self.scheduler.last_logits(ONLY)
    }

    /// Tokens handed out so far.
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    /// Why generation ended; `None` while it goes on.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// One scheduler step: decodes the pending token and samples the next.
    fn advance(&mut self) -> Result<(), ScheduleError> {
        if !self.scheduler.step(&mut self.events)? {
            // Nothing left to decode: the request is done.
            self.stop.get_or_insert(StopReason::Length);
        }
        for e in self.events.drain(..) {
            match e {
                Event::Token { token, .. } => self.ready.push_back(token),
                Event::Done(c) => self.stop = Some(c.stop),
                Event::Admitted { .. } => {}
            }
        }
        Ok(())
    }
}

impl Iterator for Generation<'_, '_> {
    type Item = Result<u32, ScheduleError>;

    /// The next token; after an error the iteration ends.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(token) = self.ready.pop_front() {
                self.generated.push(token);
                return Some(Ok(token));
            }
            if self.stop.is_some() || self.failed {
                return None;
            }
            if let Err(e) = self.advance() {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Batch, EngineConfig};
    use crate::model::Model;

    fn model() -> (tempfile::TempDir, Model) {
        crate::model::synth::test_model(3)
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
        // The prompt was decoded: the first token is sampled, from these logits.
        let first = generation.logits().unwrap().to_vec();
        let mut got = Vec::new();
        while let Some(token) = generation.next() {
            got.push(token.unwrap());
            // Each token came from the logits the iterator shows after it.
            let logits = generation.logits().unwrap();
            assert_eq!(crate::engine::sampler::argmax(logits), *got.last().unwrap());
        }
        assert_eq!(crate::engine::sampler::argmax(&first), want[0]);
        assert_eq!(got, want);
        assert_eq!(generation.generated(), &want[..]);
        assert_eq!(generation.stop_reason(), Some(StopReason::Length));
        assert!(generation.next().is_none());
        drop(generation);
        // The sequence is gone once it is done.
        assert_eq!(engine.kv.cells.n_used(), 0);
    }

    #[test]
    fn a_zero_budget_yields_nothing_and_a_bad_prompt_is_an_error() {
        let (_dir, model) = model();
        let mut engine = engine(&model);
        let mut g = engine.generate(&[1, 2], GenerateConfig::greedy(0)).unwrap();
        assert!(g.next().is_none());
        assert_eq!(g.stop_reason(), Some(StopReason::Length));
        drop(g);
        assert!(engine.generate(&[], GenerateConfig::greedy(4)).is_err());
        let too_long: Vec<u32> = (0..100).map(|i| i % 50).collect();
        assert!(engine
            .generate(&too_long, GenerateConfig::greedy(4))
            .is_err());
    }
}
