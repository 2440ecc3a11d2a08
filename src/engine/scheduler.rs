//! Continuous batching, the one way rbench generates: N slots share one
//! engine and one KV cache. Every step packs the next token of each
//! generating slot and prompt chunks of newly admitted requests into one
//! batch; a slot that finishes takes the next queued request at once.
//! [`Scheduler`] runs it step by step (requests may be submitted between
//! steps); [`serve`] runs a list of requests to the end, and one sequence's
//! [`Generation`](super::Generation) iterator is a one-slot scheduler.
//!
//! An optional shared prefix (a system prompt every request starts with) is
//! computed once into its own sequence and then copied into each slot's
//! sequence set, so its cells belong to every request at the same time.
//! The automatic prefix cache (for servers) instead keeps each finished
//! request's cells under a cache sequence and lets a later request that
//! starts with the same tokens take them over (see [`crate::kv::prefix`]).

use super::{Batch, Engine, EngineError, Logits, Sampler, SamplerConfig};
use crate::kv::prefix::{CacheOutcome, PrefixCache};
use crate::kv::MAX_SEQS;
use std::time::{Duration, Instant};

/// One request: prompt tokens (after the shared prefix, if any) and how
/// many tokens to generate at most.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub n_predict: usize,
}

/// Per-request settings that differ from the schedule's (a server's
/// requests each bring their own).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestOptions {
    /// Sampling for this request; its seed is used as given.
    pub sampler: Option<SamplerConfig>,
    /// Stop at an end-of-generation token (else the schedule's setting).
    pub stop_at_eog: Option<bool>,
    /// Report each token's log-probability and this many top alternatives.
    pub top_logprobs: Option<usize>,
}

/// Log-probabilities (natural log, of the model's raw distribution) of a
/// sampled token and the most likely tokens at its position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    pub logprob: f32,
    /// Most likely first.
    pub top: Vec<(u32, f32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `n_predict` tokens were generated.
    Length,
    /// The model produced an end-of-generation token (only when asked to stop on it).
    EndOfGeneration,
}

/// A finished request with the times its tokens appeared.
#[derive(Clone, Debug)]
pub struct Completion {
    /// Position of the request in the input.
    pub index: usize,
    /// Prompt tokens the request carried, not counting a shared prefix.
    pub prompt_tokens: usize,
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    /// The moment the request entered a slot.
    pub admitted: Instant,
    /// Prompt tokens whose cells came from the prefix cache.
    pub cached_tokens: usize,
    pub cache: CacheOutcome,
    /// When each generated token was sampled.
    pub token_times: Vec<Instant>,
}

/// What one decode step carried and how long the engine took for it
/// (sampling excluded).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub decode: Duration,
}

#[derive(Clone, Debug)]
pub struct ScheduleConfig {
    /// Sequences decoded together (workers).
    pub n_slots: usize,
    /// Most tokens one step may carry; generating slots always get theirs.
    pub max_batch_tokens: usize,
    /// Stop a request at an end-of-generation token (benchmarks do not:
    /// every request then produces exactly `n_predict` tokens).
    pub stop_at_eog: bool,
    pub sampler: SamplerConfig,
    /// Tokens every request starts with, computed once and shared.
    pub shared_prefix: Vec<u32>,
    /// Keep finished requests' cells for later requests with the same
    /// leading tokens, in at most this many cells held by the cache alone
    /// (0: no prefix cache; not with a shared prefix). Every step's mask
    /// spans the cells up to the highest one in use, so an unbounded cache
    /// would slow every step down as it fills the KV cache.
    pub prefix_cache_cells: usize,
}

/// Everything a run produced, completions in input order.
#[derive(Clone, Debug)]
pub struct ServeReport {
    /// When the queue was opened.
    pub started: Instant,
    pub finished: Instant,
    pub completions: Vec<Completion>,
    pub steps: Vec<Step>,
    /// Time spent computing the shared prefix (0 without one).
    pub prefix_decode: Duration,
    /// Most KV cells in use at once.
    pub peak_cells: usize,
    /// True when the run was stopped early by the caller.
    pub interrupted: bool,
    /// When each submitted request arrived, in index order (empty: all at
    /// `started`).
    pub arrivals: Vec<Instant>,
}

impl ServeReport {
    /// When request `index` arrived.
    pub fn arrival(&self, index: usize) -> Instant {
        self.arrivals.get(index).copied().unwrap_or(self.started)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0} slots asked for; between 1 and {max} fit", max = MAX_SEQS - 1)]
    Slots(usize),
    #[error("request {index} has an empty prompt (a shared prefix alone is not a request)")]
    EmptyPrompt { index: usize },
    #[error("request {index} asks for 0 tokens")]
    NothingToGenerate { index: usize },
    #[error("the batch limit of {limit} tokens is below the {slots} slots that generate at once")]
    BatchTooSmall { limit: usize, slots: usize },
    #[error("a shared prefix and the automatic prefix cache cannot be combined")]
    PrefixCacheWithSharedPrefix,
}

/// A slot's life: empty, reading its prompt, then generating.
struct Active {
    index: usize,
    seq: u32,
    prompt: Vec<u32>,
    n_predict: usize,
    /// Prompt tokens not yet decoded.
    prompt_left: std::ops::Range<usize>,
    /// Next position in the sequence.
    pos: i32,
    /// The token to decode next step (the last sampled one).
    pending: Option<u32>,
    history: Vec<u32>,
    sampler: Sampler,
    stop_at_eog: bool,
    top_logprobs: Option<usize>,
    out: Vec<u32>,
    admitted: Instant,
    token_times: Vec<Instant>,
    cached_tokens: usize,
    cache: CacheOutcome,
}

/// What one step produced, in slot order.
#[derive(Clone, Debug)]
pub enum Event {
    /// Request `index` generated `token` (an end-of-generation token that
    /// stops the request is not reported as one); log-probabilities when
    /// the request asked for them.
    Token {
        index: usize,
        token: u32,
        logprobs: Option<TokenLogprobs>,
    },
    /// Request `index` finished; its slot is free again.
    Done(Completion),
    /// Request `index` entered a slot; `cached_tokens` of its prompt came
    /// from the prefix cache.
    Admitted {
        index: usize,
        cached_tokens: usize,
        cache: CacheOutcome,
        /// When it entered the slot (its prompt is computed from then on).
        at: Instant,
    },
}

/// Continuous batching, one step at a time. Made with [`Scheduler::new`],
/// fed with [`Scheduler::submit`], driven with [`Scheduler::step`].
pub struct Scheduler<'e, 'm> {
    engine: &'e mut Engine<'m>,
    cfg: ScheduleConfig,
    slots: Vec<Option<Active>>,
    queue: std::collections::VecDeque<(usize, Request, RequestOptions)>,
    cache: Option<PrefixCache>,
    submitted: usize,
    prefix_seq: u32,
    started: Instant,
    prefix_decode: Duration,
    steps: Vec<Step>,
    peak_cells: usize,
    batch: Batch,
    /// The slot of each batch entry that wants logits, in batch order.
    wanted: Vec<usize>,
    /// The last step's logits, and which of its rows each request sampled from.
    logits: Option<Logits>,
    sampled_rows: Vec<(usize, usize)>,
}

impl<'e, 'm> Scheduler<'e, 'm> {
    /// Clears the engine's cache and computes the shared prefix, if any.
    pub fn new(
        engine: &'e mut Engine<'m>,
        cfg: ScheduleConfig,
    ) -> Result<Scheduler<'e, 'm>, ScheduleError> {
        if cfg.n_slots == 0 || cfg.n_slots >= MAX_SEQS {
            return Err(ScheduleError::Slots(cfg.n_slots));
        }
        if cfg.max_batch_tokens < cfg.n_slots {
            return Err(ScheduleError::BatchTooSmall {
                limit: cfg.max_batch_tokens,
                slots: cfg.n_slots,
            });
        }
        if cfg.prefix_cache_cells > 0 && !cfg.shared_prefix.is_empty() {
            return Err(ScheduleError::PrefixCacheWithSharedPrefix);
        }
        engine.clear();
        let started = Instant::now();
        // The prefix lives in the sequence after the slots' ones.
        let prefix_seq = cfg.n_slots as u32;
        let mut prefix_decode = Duration::ZERO;
        let prefix_len = cfg.shared_prefix.len();
        let mut at = 0;
        while at < prefix_len {
            let end = (at + cfg.max_batch_tokens).min(prefix_len);
            let mut b = Batch::with_capacity(end - at);
            for (i, &t) in cfg.shared_prefix[at..end].iter().enumerate() {
                b.add(t, (at + i) as i32, &[prefix_seq], false)
                    .map_err(EngineError::from)?;
            }
            let t0 = Instant::now();
            let decoded = engine.decode(&b);
            prefix_decode += t0.elapsed();
            if let Err(e) = decoded {
                engine.clear();
                return Err(e.into());
            }
            at = end;
        }
        let peak_cells = engine.kv.cells.n_used();
        // Cache entries take the ids after the slots' and the prefix's.
        let cache = cfg
            .prefix_cache_cells
            .gt(&0)
            .then(|| PrefixCache::new(prefix_seq + 1..MAX_SEQS as u32));
        Ok(Scheduler {
            cache,
            slots: (0..cfg.n_slots).map(|_| None).collect(),
            sampled_rows: Vec::with_capacity(cfg.n_slots),
            batch: Batch::with_capacity(cfg.max_batch_tokens),
            wanted: Vec::with_capacity(cfg.n_slots),
            engine,
            cfg,
            queue: Default::default(),
            submitted: 0,
            prefix_seq,
            started,
            prefix_decode,
            steps: Vec::new(),
            peak_cells,
            logits: None,
        })
    }

    /// Queues a request; returns its index (requests are numbered from 0 in
    /// submission order).
    pub fn submit(&mut self, req: Request) -> Result<usize, ScheduleError> {
        self.submit_with(req, RequestOptions::default())
    }

    /// [`Scheduler::submit`] with this request's own settings.
    pub fn submit_with(
        &mut self,
        req: Request,
        opts: RequestOptions,
    ) -> Result<usize, ScheduleError> {
        let index = self.submitted;
        if req.prompt.is_empty() {
            return Err(ScheduleError::EmptyPrompt { index });
        }
        if req.n_predict == 0 {
            return Err(ScheduleError::NothingToGenerate { index });
        }
        self.submitted += 1;
        self.queue.push_back((index, req, opts));
        Ok(index)
    }

    /// Drops request `index`, queued or running; a running one's cells are
    /// released (to the prefix cache, when there is one) at once. Returns
    /// whether the request was still there.
    pub fn cancel(&mut self, index: usize) -> Result<bool, ScheduleError> {
        if let Some(i) = self.queue.iter().position(|(q, _, _)| *q == index) {
            self.queue.remove(i);
            return Ok(true);
        }
        let Some(s) = self
            .slots
            .iter()
            .position(|a| a.as_ref().is_some_and(|a| a.index == index))
        else {
            return Ok(false);
        };
        self.retire(s)?;
        Ok(true)
    }

    /// The steps decoded since the last call (a long-running caller takes
    /// them as it goes, so they do not pile up).
    pub fn take_steps(&mut self) -> Vec<Step> {
        std::mem::take(&mut self.steps)
    }

    /// Requests waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Requests in a slot.
    pub fn running(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// KV cells in use (running requests and cache entries).
    pub fn cells_used(&self) -> usize {
        self.engine.kv.cells.n_used()
    }

    pub fn cells_total(&self) -> usize {
        self.engine.kv.cells.n_ctx()
    }

    /// Prefix-cache entries held (0 without the cache).
    pub fn cache_entries(&self) -> usize {
        self.cache.as_ref().map_or(0, PrefixCache::len)
    }

    /// Empties slot `s`: its decoded positions go to the prefix cache (when
    /// there is one), then its own claim on the cells is dropped.
    fn retire(&mut self, s: usize) -> Result<Option<Active>, ScheduleError> {
        let Some(a) = self.slots[s].take() else {
            return Ok(None);
        };
        let cells = &mut self.engine.kv.cells;
        if let Some(cache) = self.cache.as_mut() {
            let decoded = (a.pos.max(0) as usize).min(a.history.len());
            let plan = cache.store(&a.history[..decoded]);
            for seq in plan.dropped {
                cells.seq_rm(seq, 0, i32::MAX);
            }
            if let Some(into) = plan.into {
                cells
                    .seq_cp(a.seq, into, 0, decoded as i32)
                    .map_err(EngineError::from)?;
            }
            cells.seq_rm(a.seq, 0, i32::MAX);
            // Over budget: drop the least recently used entries.
            let cache_ids = self.prefix_seq + 1..MAX_SEQS as u32;
            while cells.cells_held_only_by(cache_ids.clone()) > self.cfg.prefix_cache_cells {
                match cache.evict_lru() {
                    Some(seq) => cells.seq_rm(seq, 0, i32::MAX),
                    None => break,
                }
            }
            return Ok(Some(a));
        }
        cells.seq_rm(a.seq, 0, i32::MAX);
        Ok(Some(a))
    }

    /// Drops least recently used cache entries until `needed` cells are
    /// free or no entry is left.
    fn make_room(&mut self, needed: usize) {
        let Some(cache) = self.cache.as_mut() else {
            return;
        };
        let cells = &mut self.engine.kv.cells;
        while cells.n_ctx() - cells.n_used() < needed {
            match cache.evict_lru() {
                Some(seq) => cells.seq_rm(seq, 0, i32::MAX),
                None => break,
            }
        }
    }

    /// No request queued or in a slot.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.slots.iter().all(Option::is_none)
    }

    /// The logits request `index` sampled from in the latest step, if it
    /// sampled then (for callers that look at margins).
    pub fn last_logits(&self, index: usize) -> Option<&[f32]> {
        let &(_, row) = self.sampled_rows.iter().find(|(i, _)| *i == index)?;
        self.logits.as_ref()?.output_row(row)
    }

    /// Admits queued requests into free slots, decodes one batch and samples
    /// the next token of every slot that finished its prompt; appends what
    /// happened to `events`. Returns whether it decoded anything (`false`
    /// only when idle). On an engine error the scheduler should be dropped:
    /// the cache is left as the error left it.
    pub fn step(&mut self, events: &mut Vec<Event>) -> Result<bool, ScheduleError> {
        self.admit(events)?;
        self.batch.clear();
        self.wanted.clear();
        let mut gen_tokens = 0;
        // Generating slots first: their one token each always fits.
        for (s, slot) in self.slots.iter_mut().enumerate() {
            let Some(a) = slot else { continue };
            if let Some(t) = a.pending.take() {
                self.batch
                    .add(t, a.pos, &[a.seq], true)
                    .map_err(EngineError::from)?;
                a.pos += 1;
                self.wanted.push(s);
                gen_tokens += 1;
            }
        }
        let mut prompt_tokens = 0;
        for (s, slot) in self.slots.iter_mut().enumerate() {
            let Some(a) = slot else { continue };
            let room = self.cfg.max_batch_tokens - self.batch.len();
            if room == 0 {
                break;
            }
            if a.prompt_left.is_empty() {
                continue;
            }
            let take = a.prompt_left.len().min(room);
            let chunk = a.prompt_left.start..a.prompt_left.start + take;
            for i in chunk.clone() {
                let last = i + 1 == a.prompt.len();
                self.batch
                    .add(a.prompt[i], a.pos, &[a.seq], last)
                    .map_err(EngineError::from)?;
                a.pos += 1;
                if last {
                    self.wanted.push(s);
                }
            }
            a.prompt_left.start = chunk.end;
            prompt_tokens += take;
        }
        if self.batch.is_empty() {
            return Ok(false);
        }
        self.make_room(self.batch.len());

        let t0 = Instant::now();
        // The previous step's rows are reused as this step's memory.
        let mut logits = self.logits.take().unwrap_or_default();
        self.engine.decode_into(&self.batch, &mut logits)?;
        self.steps.push(Step {
            prompt_tokens,
            gen_tokens,
            decode: t0.elapsed(),
        });
        self.peak_cells = self.peak_cells.max(self.engine.kv.cells.n_used());
        self.sampled_rows.clear();

        for row in 0..self.wanted.len() {
            let s = self.wanted[row];
            let Some(a) = self.slots[s].as_mut() else {
                continue;
            };
            let Some(row_logits) = logits.output_row(row) else {
                continue;
            };
            self.sampled_rows.push((a.index, row));
            let next = a.sampler.sample(row_logits, &a.history);
            let now = Instant::now();
            let eog = a.stop_at_eog && self.engine.model().tokenizer.is_eog(next);
            if !eog {
                a.out.push(next);
                a.history.push(next);
                a.token_times.push(now);
                events.push(Event::Token {
                    index: a.index,
                    token: next,
                    logprobs: a.top_logprobs.map(|n| token_logprobs(row_logits, next, n)),
                });
            } else if a.token_times.is_empty() {
                // Time to first token still counts when the first is the end.
                a.token_times.push(now);
            }
            if eog || a.out.len() >= a.n_predict {
                if let Some(a) = self.retire(s)? {
                    events.push(Event::Done(Completion {
                        index: a.index,
                        prompt_tokens: a.prompt.len(),
                        tokens: a.out,
                        stop: if eog {
                            StopReason::EndOfGeneration
                        } else {
                            StopReason::Length
                        },
                        admitted: a.admitted,
                        token_times: a.token_times,
                        cached_tokens: a.cached_tokens,
                        cache: a.cache,
                    }));
                }
            } else {
                a.pending = Some(next);
            }
        }
        self.logits = Some(logits);
        Ok(true)
    }

    /// Queued requests into free slots, the shared prefix copied into each.
    fn admit(&mut self, events: &mut Vec<Event>) -> Result<(), ScheduleError> {
        let prefix_len = self.cfg.shared_prefix.len();
        for (s, slot) in self.slots.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let Some((index, req, opts)) = self.queue.pop_front() else {
                break;
            };
            let seq = s as u32;
            if prefix_len > 0 {
                self.engine
                    .kv
                    .cells
                    .seq_cp(self.prefix_seq, seq, 0, prefix_len as i32)
                    .map_err(EngineError::from)?;
            }
            let found = match self.cache.as_mut() {
                Some(cache) => cache.lookup(&req.prompt),
                None => crate::kv::prefix::PrefixMatch {
                    seq: 0,
                    reuse: 0,
                    outcome: CacheOutcome::Miss,
                },
            };
            if found.reuse > 0 {
                self.engine
                    .kv
                    .cells
                    .seq_cp(found.seq, seq, 0, found.reuse as i32)
                    .map_err(EngineError::from)?;
            }
            let mut history = Vec::with_capacity(prefix_len + req.prompt.len() + req.n_predict);
            history.extend_from_slice(&self.cfg.shared_prefix);
            history.extend_from_slice(&req.prompt);
            let sampler = Sampler::new(opts.sampler.unwrap_or_else(|| SamplerConfig {
                // Each request its own stream, independent of its slot.
                seed: self.cfg.sampler.seed.wrapping_add(index as u64),
                ..self.cfg.sampler.clone()
            }));
            events.push(Event::Admitted {
                index,
                cached_tokens: found.reuse,
                cache: found.outcome,
                at: Instant::now(),
            });
            *slot = Some(Active {
                index,
                seq,
                prompt_left: found.reuse..req.prompt.len(),
                prompt: req.prompt,
                n_predict: req.n_predict,
                pos: (prefix_len + found.reuse) as i32,
                pending: None,
                history,
                sampler,
                stop_at_eog: opts.stop_at_eog.unwrap_or(self.cfg.stop_at_eog),
                top_logprobs: opts.top_logprobs,
                out: Vec::with_capacity(req.n_predict),
                admitted: Instant::now(),
                token_times: Vec::with_capacity(req.n_predict),
                cached_tokens: found.reuse,
                cache: found.outcome,
            });
        }
        Ok(())
    }

    /// What the run produced so far, `completions` in index order; leaves the
    /// engine's cache (and the prefix cache) empty.
    pub fn finish(mut self, completions: Vec<Completion>, interrupted: bool) -> ServeReport {
        self.engine.clear();
        if let Some(cache) = self.cache.as_mut() {
            cache.clear();
        }
        ServeReport {
            started: self.started,
            finished: Instant::now(),
            completions,
            steps: std::mem::take(&mut self.steps),
            prefix_decode: self.prefix_decode,
            peak_cells: self.peak_cells,
            interrupted,
            arrivals: Vec::new(),
        }
    }
}

impl Drop for Scheduler<'_, '_> {
    fn drop(&mut self) {
        // Whatever happened, the next user of the engine finds it empty.
        self.engine.clear();
    }
}

/// Natural-log probabilities of `token` and of the `top` most likely tokens
/// under `logits` (softmax at temperature 1, in F64 so rare tokens keep
/// their digits).
pub fn token_logprobs(logits: &[f32], token: u32, top: usize) -> TokenLogprobs {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let log_norm = max + sum.ln();
    let lp = |id: u32| {
        logits
            .get(id as usize)
            .map_or(f32::NEG_INFINITY, |&l| (l as f64 - log_norm) as f32)
    };
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if best.len() < top || l > best[best.len() - 1].1 {
                let at = best.partition_point(|b| b.1 >= l);
                best.insert(at, (i as u32, l));
                best.truncate(top);
            }
        }
    }
    TokenLogprobs {
        logprob: lp(token),
        top: best.into_iter().map(|(id, _)| (id, lp(id))).collect(),
    }
}

/// Serves `requests` through `cfg.n_slots` slots, all submitted at once;
/// `stop` is asked before every step (e.g. Ctrl-C) and `on_done` sees each
/// completion as it finishes. Leaves the engine's cache empty.
pub fn serve(
    engine: &mut Engine<'_>,
    requests: &[Request],
    cfg: &ScheduleConfig,
    stop: &dyn Fn() -> bool,
    on_done: &mut dyn FnMut(&Completion),
) -> Result<ServeReport, ScheduleError> {
    serve_arriving(engine, requests, &[], cfg, stop, on_done)
}

/// Longest sleep while waiting for the next arrival, so `stop` is still
/// asked often.
const ARRIVAL_POLL: Duration = Duration::from_millis(20);

/// [`serve`] with request `i` submitted `arrivals[i]` after the start
/// (missing entries: at the start). Offsets must not decrease. The report's
/// `arrivals` hold the scheduled arrival instants, which is when a client
/// would have sent each request.
pub fn serve_arriving(
    engine: &mut Engine<'_>,
    requests: &[Request],
    arrivals: &[Duration],
    cfg: &ScheduleConfig,
    stop: &dyn Fn() -> bool,
    on_done: &mut dyn FnMut(&Completion),
) -> Result<ServeReport, ScheduleError> {
    // Bad requests are refused before anything runs.
    for (index, r) in requests.iter().enumerate() {
        if r.prompt.is_empty() {
            return Err(ScheduleError::EmptyPrompt { index });
        }
        if r.n_predict == 0 {
            return Err(ScheduleError::NothingToGenerate { index });
        }
    }
    let mut scheduler = Scheduler::new(engine, cfg.clone())?;
    let started = scheduler.started;
    let offset = |i: usize| arrivals.get(i).copied().unwrap_or(Duration::ZERO);
    let mut submitted = 0;
    let mut done: Vec<Option<Completion>> = vec![None; requests.len()];
    let mut events = Vec::new();
    let mut interrupted = false;
    while submitted < requests.len() || !scheduler.is_idle() {
        if stop() {
            interrupted = true;
            break;
        }
        let now = started.elapsed();
        while submitted < requests.len() && offset(submitted) <= now {
            scheduler.submit(requests[submitted].clone())?;
            submitted += 1;
        }
        if scheduler.is_idle() {
            // Nothing to compute until the next request arrives.
            let wait = offset(submitted).saturating_sub(started.elapsed());
            std::thread::sleep(wait.min(ARRIVAL_POLL));
            continue;
        }
        if !scheduler.step(&mut events)? {
            break;
        }
        for e in events.drain(..) {
            if let Event::Done(c) = e {
                on_done(&c);
                let index = c.index;
                done[index] = Some(c);
            }
        }
    }
    let mut report = scheduler.finish(done.into_iter().flatten().collect(), interrupted);
    if !arrivals.is_empty() {
        report.arrivals = (0..submitted).map(|i| started + offset(i)).collect();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;

    #[test]
    fn requests_submitted_between_steps_run_to_their_budget() {
        let (_dir, model) = crate::model::synth::test_model(2);
        let cfg = EngineConfig {
            n_ctx: 256,
            n_threads: 2,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(&model, cfg).unwrap();
        let schedule = ScheduleConfig {
            n_slots: 2,
            max_batch_tokens: 64,
            stop_at_eog: false,
            sampler: SamplerConfig::greedy(),
            shared_prefix: vec![],
            prefix_cache_cells: 0,
        };
        let mut s = Scheduler::new(&mut engine, schedule).unwrap();
        assert!(s.is_idle());
        let req = |n| Request {
            prompt: vec![1, 7, 9],
            n_predict: n,
        };
        assert_eq!(s.submit(req(5)).unwrap(), 0);
        assert!(matches!(
            s.submit(req(0)),
            Err(ScheduleError::NothingToGenerate { index: 1 })
        ));
        let mut events = Vec::new();
        assert!(s.step(&mut events).unwrap());
        assert!(s.step(&mut events).unwrap());
        // A request arriving mid-run joins the next step.
        assert_eq!(s.submit(req(3)).unwrap(), 1);
        while !s.is_idle() {
            assert!(s.step(&mut events).unwrap());
        }
        assert!(!s.step(&mut events).unwrap(), "idle: nothing to decode");
        let tokens = |i| {
            events
                .iter()
                .filter(|e| matches!(e, Event::Token { index, .. } if *index == i))
                .count()
        };
        assert_eq!((tokens(0), tokens(1)), (5, 3));
        let done: Vec<&Completion> = events
            .iter()
            .filter_map(|e| match e {
                Event::Done(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(done.len(), 2);
        assert!(done.iter().all(|c| c.stop == StopReason::Length));
        let by_index = |i| done.iter().find(|c| c.index == i).unwrap().tokens.len();
        assert_eq!((by_index(0), by_index(1)), (5, 3));
        let report = s.finish(vec![], false);
        assert!(report.steps.len() >= 5);
        assert_eq!(engine.kv.cells.n_used(), 0);
    }

    #[test]
    fn the_prefix_cache_gives_the_same_tokens_stays_in_budget_and_cancel_frees() {
        let (_dir, model) = crate::model::synth::test_model(3);
        let cfg = EngineConfig {
            n_ctx: 512,
            n_threads: 2,
            batch_invariant: true,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(&model, cfg).unwrap();
        let schedule = ScheduleConfig {
            n_slots: 1,
            max_batch_tokens: 64,
            stop_at_eog: false,
            sampler: SamplerConfig::greedy(),
            shared_prefix: vec![],
            prefix_cache_cells: 80,
        };
        let mut s = Scheduler::new(&mut engine, schedule).unwrap();
        let prompt = |first: u32| (first..first + 30).collect::<Vec<u32>>();
        let run = |s: &mut Scheduler, p: Vec<u32>| {
            s.submit(Request {
                prompt: p,
                n_predict: 6,
            })
            .unwrap();
            let mut events = Vec::new();
            while !s.is_idle() {
                s.step(&mut events).unwrap();
            }
            let admitted = events.iter().find_map(|e| match e {
                Event::Admitted {
                    cached_tokens,
                    cache,
                    ..
                } => Some((*cached_tokens, *cache)),
                _ => None,
            });
            let done = events.iter().find_map(|e| match e {
                Event::Done(c) => Some(c.tokens.clone()),
                _ => None,
            });
            (admitted.unwrap(), done.unwrap())
        };
        let (cold_cache, cold) = run(&mut s, prompt(10));
        assert_eq!(cold_cache, (0, CacheOutcome::Miss));
        let (warm_cache, warm) = run(&mut s, prompt(10));
        assert_eq!(warm_cache, (29, CacheOutcome::Hit));
        assert_eq!(
            warm, cold,
            "cached cells give the tokens computed ones give"
        );
        assert_eq!(s.cache_entries(), 1);
        // Two more prompts of 35 cells each: only 80 cells may stay cached.
        run(&mut s, prompt(100));
        run(&mut s, prompt(200));
        let cache_ids = s.prefix_seq + 1..MAX_SEQS as u32;
        assert!(s.engine.kv.cells.cells_held_only_by(cache_ids.clone()) <= 80);
        assert!(s.cache_entries() < 3);
        // A cancelled request leaves only cache cells behind.
        let index = s
            .submit(Request {
                prompt: prompt(300),
                n_predict: 50,
            })
            .unwrap();
        let mut events = Vec::new();
        s.step(&mut events).unwrap();
        s.step(&mut events).unwrap();
        assert!(s.cancel(index).unwrap());
        assert!(!s.cancel(index).unwrap());
        assert!(s.is_idle());
        let cells = &s.engine.kv.cells;
        assert_eq!(cells.n_used(), cells.cells_held_only_by(cache_ids));
    }
}
