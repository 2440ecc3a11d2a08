//! Continuous batching: N slots share one engine and one KV cache. Every step
//! packs the next token of each generating slot and prompt chunks of newly
//! admitted requests into one batch; a slot that finishes takes the next
//! queued request at once.
//!
//! An optional shared prefix (a system prompt every request starts with) is
//! computed once into its own sequence and then copied into each slot's
//! sequence set, so its cells belong to every request at the same time.

use super::{Batch, Engine, EngineError, Sampler, SamplerConfig};
use crate::kv::MAX_SEQS;
use std::time::{Duration, Instant};

/// One request: prompt tokens (after the shared prefix, if any) and how
/// many tokens to generate at most.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub n_predict: usize,
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
}

/// Everything a run produced, completions in input order.
#[derive(Clone, Debug)]
pub struct ServeReport {
    /// When the queue was opened: every request counts as submitted then.
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
}

/// A slot's life: empty, reading its prompt, then generating.
struct Active {
    index: usize,
    seq: u32,
    /// Prompt tokens not yet decoded.
    prompt_left: std::ops::Range<usize>,
    /// Next position in the sequence.
    pos: i32,
    /// The token to decode next step (the last sampled one).
    pending: Option<u32>,
    history: Vec<u32>,
    sampler: Sampler,
    out: Vec<u32>,
    admitted: Instant,
    token_times: Vec<Instant>,
}

/// Serves `requests` through `cfg.n_slots` slots; `stop` is asked before
/// every step (e.g. Ctrl-C) and `on_done` sees each completion as it
/// finishes. Leaves the engine's cache empty.
pub fn serve(
    engine: &mut Engine<'_>,
    requests: &[Request],
    cfg: &ScheduleConfig,
    stop: &dyn Fn() -> bool,
    on_done: &mut dyn FnMut(&Completion),
) -> Result<ServeReport, ScheduleError> {
    if cfg.n_slots == 0 || cfg.n_slots >= MAX_SEQS {
        return Err(ScheduleError::Slots(cfg.n_slots));
    }
    if cfg.max_batch_tokens < cfg.n_slots {
        return Err(ScheduleError::BatchTooSmall {
            limit: cfg.max_batch_tokens,
            slots: cfg.n_slots,
        });
    }
    for (index, r) in requests.iter().enumerate() {
        if r.prompt.is_empty() {
            return Err(ScheduleError::EmptyPrompt { index });
        }
        if r.n_predict == 0 {
            return Err(ScheduleError::NothingToGenerate { index });
        }
    }
    engine.clear();
    let result = serve_inner(engine, requests, cfg, stop, on_done);
    engine.clear();
    result
}

fn serve_inner(
    engine: &mut Engine<'_>,
    requests: &[Request],
    cfg: &ScheduleConfig,
    stop: &dyn Fn() -> bool,
    on_done: &mut dyn FnMut(&Completion),
) -> Result<ServeReport, ScheduleError> {
    let started = Instant::now();
    // The prefix lives in the sequence after the slots' ones.
    let prefix_seq = cfg.n_slots as u32;
    let prefix_len = cfg.shared_prefix.len();
    let mut prefix_decode = Duration::ZERO;
    if prefix_len > 0 {
        let mut at = 0;
        while at < prefix_len {
            let end = (at + cfg.max_batch_tokens).min(prefix_len);
            let mut b = Batch::with_capacity(end - at);
            for (i, &t) in cfg.shared_prefix[at..end].iter().enumerate() {
                b.add(t, (at + i) as i32, &[prefix_seq], false)
                    .map_err(EngineError::from)?;
            }
            let t0 = Instant::now();
            engine.decode(&b)?;
            prefix_decode += t0.elapsed();
            at = end;
        }
    }

    let mut slots: Vec<Option<Active>> = (0..cfg.n_slots).map(|_| None).collect();
    let mut queue = 0..requests.len();
    let mut done: Vec<Option<Completion>> = vec![None; requests.len()];
    let mut steps = Vec::new();
    let mut peak_cells = engine.kv.cells.n_used();
    let mut interrupted = false;
    let mut batch = Batch::with_capacity(cfg.max_batch_tokens);
    // The slot of each batch entry that wants logits, in batch order.
    let mut wanted: Vec<usize> = Vec::with_capacity(cfg.n_slots);

    loop {
        // Admit queued requests into free slots.
        for (s, slot) in slots.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let Some(index) = queue.next() else { break };
            let seq = s as u32;
            let req = &requests[index];
            if prefix_len > 0 {
                engine
                    .kv
                    .cells
                    .seq_cp(prefix_seq, seq, 0, prefix_len as i32)
                    .map_err(EngineError::from)?;
            }
            let mut history = Vec::with_capacity(prefix_len + req.prompt.len() + req.n_predict);
            history.extend_from_slice(&cfg.shared_prefix);
            history.extend_from_slice(&req.prompt);
            let sampler = Sampler::new(SamplerConfig {
                // Each request its own stream, independent of its slot.
                seed: cfg.sampler.seed.wrapping_add(index as u64),
                ..cfg.sampler.clone()
            });
            *slot = Some(Active {
                index,
                seq,
                prompt_left: 0..req.prompt.len(),
                pos: prefix_len as i32,
                pending: None,
                history,
                sampler,
                out: Vec::with_capacity(req.n_predict),
                admitted: Instant::now(),
                token_times: Vec::with_capacity(req.n_predict),
            });
        }
        if slots.iter().all(Option::is_none) {
            break;
        }
        if stop() {
            interrupted = true;
            break;
        }

        batch.clear();
        wanted.clear();
        let mut gen_tokens = 0;
        // Generating slots first: their one token each always fits.
        for (s, slot) in slots.iter_mut().enumerate() {
            let Some(a) = slot else { continue };
            if let Some(t) = a.pending.take() {
                batch
                    .add(t, a.pos, &[a.seq], true)
                    .map_err(EngineError::from)?;
                a.pos += 1;
                wanted.push(s);
                gen_tokens += 1;
            }
        }
        let mut prompt_tokens = 0;
        for (s, slot) in slots.iter_mut().enumerate() {
            let Some(a) = slot else { continue };
            let room = cfg.max_batch_tokens - batch.len();
            if room == 0 {
                break;
            }
            if a.prompt_left.is_empty() {
                continue;
            }
            let take = a.prompt_left.len().min(room);
            let chunk = a.prompt_left.start..a.prompt_left.start + take;
            let req = &requests[a.index];
            for i in chunk.clone() {
                let last = i + 1 == req.prompt.len();
                batch
                    .add(req.prompt[i], a.pos, &[a.seq], last)
                    .map_err(EngineError::from)?;
                a.pos += 1;
                if last {
                    wanted.push(s);
                }
            }
            a.prompt_left.start = chunk.end;
            prompt_tokens += take;
        }
        if batch.is_empty() {
            break;
        }

        let t0 = Instant::now();
        let logits = engine.decode(&batch)?;
        steps.push(Step {
            prompt_tokens,
            gen_tokens,
            decode: t0.elapsed(),
        });
        peak_cells = peak_cells.max(engine.kv.cells.n_used());

        for (row, &s) in wanted.iter().enumerate() {
            let Some(a) = slots[s].as_mut() else { continue };
            let Some(row_logits) = logits.output_row(row) else {
                continue;
            };
            let next = a.sampler.sample(row_logits, &a.history);
            let now = Instant::now();
            let n_predict = requests[a.index].n_predict;
            let eog = cfg.stop_at_eog && engine.model().tokenizer.is_eog(next);
            if !eog {
                a.out.push(next);
                a.history.push(next);
                a.token_times.push(now);
            } else if a.token_times.is_empty() {
                // Time to first token still counts when the first is the end.
                a.token_times.push(now);
            }
            if eog || a.out.len() >= n_predict {
                if let Some(a) = slots[s].take() {
                    engine.kv.cells.seq_rm(a.seq, 0, i32::MAX);
                    let c = Completion {
                        index: a.index,
                        prompt_tokens: requests[a.index].prompt.len(),
                        tokens: a.out,
                        stop: if eog {
                            StopReason::EndOfGeneration
                        } else {
                            StopReason::Length
                        },
                        admitted: a.admitted,
                        token_times: a.token_times,
                    };
                    on_done(&c);
                    let index = c.index;
                    done[index] = Some(c);
                }
            } else {
                a.pending = Some(next);
            }
        }
    }
    Ok(ServeReport {
        started,
        finished: Instant::now(),
        completions: done.into_iter().flatten().collect(),
        steps,
        prefix_decode,
        peak_cells,
        interrupted,
    })
}
