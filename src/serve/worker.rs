//! The engine thread: owns the model, the engine and the scheduler, takes
//! requests from HTTP handlers over a channel and streams each one's tokens
//! back over its own channel. A request whose receiver is gone (client
//! disconnected, stop string found, timeout) is cancelled before the next
//! step, so its cells are free for that step.

use super::metrics::Metrics;
use crate::engine::{
    Engine, EngineConfig, Event, Request, RequestOptions, ScheduleConfig, Scheduler, StopReason,
    TokenLogprobs,
};
use crate::kv::prefix::CacheOutcome;
use crate::model::Model;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// What a handler sends the engine thread.
pub enum Command {
    Submit(Job),
    /// Cancel everything and end the thread.
    Shutdown,
}

/// One request for the engine.
pub struct Job {
    pub request: Request,
    pub options: RequestOptions,
    pub events: UnboundedSender<JobEvent>,
}

/// What the engine tells a handler about its request.
#[derive(Debug)]
pub enum JobEvent {
    /// The request entered a slot: how much of its prompt came from the cache.
    Admitted {
        cached_tokens: usize,
        cache: CacheOutcome,
        at: Instant,
    },
    Token {
        token: u32,
        logprobs: Option<TokenLogprobs>,
    },
    Done {
        stop: StopReason,
    },
    /// The engine failed; the request is over.
    Failed(String),
}

/// What the thread needs to start serving.
pub struct WorkerConfig {
    pub engine: EngineConfig,
    pub schedule: ScheduleConfig,
}

/// Runs requests from `commands` until a Shutdown or until every sender is
/// gone. `model` is loaded by the caller (on this thread).
pub fn run(
    model: &Model,
    cfg: WorkerConfig,
    commands: crossbeam::channel::Receiver<Command>,
    metrics: Arc<Metrics>,
) -> Result<(), crate::engine::ScheduleError> {
    let mut engine = Engine::new(model, cfg.engine)?;
    loop {
        // A scheduler per life: after an engine error it is rebuilt empty.
        let mut scheduler = Scheduler::new(&mut engine, cfg.schedule.clone())?;
        metrics.set_cells(scheduler.cells_used(), scheduler.cells_total());
        let mut live: HashMap<usize, UnboundedSender<JobEvent>> = HashMap::new();
        let mut events = Vec::new();
        let failure: crate::engine::ScheduleError = loop {
            // Idle: wait for work. Busy: take whatever arrived.
            let first = if scheduler.is_idle() {
                match commands.recv() {
                    Ok(c) => Some(c),
                    Err(_) => return Ok(()),
                }
            } else {
                None
            };
            let mut shutdown = false;
            for cmd in first.into_iter().chain(commands.try_iter()) {
                match cmd {
                    Command::Shutdown => shutdown = true,
                    Command::Submit(job) => match scheduler.submit_with(job.request, job.options) {
                        Ok(index) => {
                            live.insert(index, job.events);
                        }
                        Err(e) => {
                            let _ = job.events.send(JobEvent::Failed(e.to_string()));
                        }
                    },
                }
            }
            if shutdown {
                for l in live.values() {
                    let _ = l.send(JobEvent::Failed("the server is shutting down".into()));
                }
                return Ok(());
            }
            // Gone receivers: cancel before the step, so their cells serve it.
            let gone: Vec<usize> = live
                .iter()
                .filter(|(_, l)| l.is_closed())
                .map(|(i, _)| *i)
                .collect();
            let mut cancel_failed = None;
            for index in gone {
                live.remove(&index);
                metrics.cancelled();
                if let Err(e) = scheduler.cancel(index) {
                    cancel_failed = Some(e);
                    break;
                }
            }
            if let Some(e) = cancel_failed {
                break e;
            }
            let step_started = Instant::now();
            let stepped = match scheduler.step(&mut events) {
                Ok(stepped) => stepped,
                Err(e) => break e,
            };
            metrics.set_queue(scheduler.running(), scheduler.queued());
            metrics.set_cells(scheduler.cells_used(), scheduler.cells_total());
            metrics.set_cache_entries(scheduler.cache_entries());
            if !stepped {
                continue;
            }
            let mut generated = 0;
            for e in events.drain(..) {
                match e {
                    Event::Token {
                        index,
                        token,
                        logprobs,
                    } => {
                        generated += 1;
                        if let Some(l) = live.get(&index) {
                            let _ = l.send(JobEvent::Token { token, logprobs });
                        }
                    }
                    Event::Admitted {
                        index,
                        cached_tokens,
                        cache,
                        at,
                    } => {
                        metrics.cache_lookup(cache, cached_tokens);
                        if let Some(l) = live.get(&index) {
                            let _ = l.send(JobEvent::Admitted {
                                cached_tokens,
                                cache,
                                at,
                            });
                        }
                    }
                    Event::Done(c) => {
                        metrics.finished(c.stop);
                        if let Some(l) = live.remove(&c.index) {
                            let _ = l.send(JobEvent::Done { stop: c.stop });
                        }
                    }
                }
            }
            let prompt_tokens: usize = scheduler.take_steps().iter().map(|s| s.prompt_tokens).sum();
            metrics.stepped(prompt_tokens, generated, step_started.elapsed());
        };
        let message = format!("the engine failed: {failure}");
        eprintln!("rbench serve: {message}; the requests it was running are ended");
        for l in live.values() {
            let _ = l.send(JobEvent::Failed(message.clone()));
        }
    }
}
