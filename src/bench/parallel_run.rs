//! The measurement loop of `rbench parallel`: an untimed warm-up, then for
//! each worker count its requests served by continuous batching (and, with
//! a shared prefix, the same requests again with the prefix in every prompt,
//! to measure what sharing saves).

use std::time::Duration;

use super::parallel::{
    self as par, Budgets, LatencyClock, Memory, ParallelResult, PrefixSharing, RunContext,
    WorkerRun,
};
use crate::engine::scheduler::serve_arriving;
use crate::engine::{serve, Engine, Request, SamplerConfig, ScheduleConfig, ScheduleError};
use crate::load::metrics::Slo;

/// What to measure.
#[derive(Clone, Debug)]
pub struct ParallelSpec<'a> {
    /// Worker counts, in the order they run.
    pub workers: &'a [usize],
    /// Requests per worker count; `None`: [`par::DEFAULT_REQUESTS_PER_WORKER`]
    /// per worker of the largest worker count.
    pub requests: Option<usize>,
    /// Tokens to generate per request (`-n`).
    pub n_predict: usize,
    /// Per request, where lengths vary (request `i` takes entry `i`);
    /// empty: `n_predict` for all.
    pub n_predicts: &'a [usize],
    /// Most tokens one decode step carries.
    pub n_batch: usize,
    pub stop_at_eog: bool,
    pub warmup: bool,
    pub budgets: Budgets,
    /// Prompt tokens of the requests, at least as many as the most requests
    /// of any worker count (request `i` takes prompt `i`).
    pub prompts: &'a [Vec<u32>],
    /// Tokens every request starts with, computed once and shared.
    pub prefix: &'a [u32],
    /// When request `i` arrives after the run starts; empty: all at once
    /// (burst).
    pub arrivals: &'a [Duration],
    /// Runs of each worker count (latencies pooled, t/s averaged).
    pub repetitions: usize,
    pub slo: Option<Slo>,
    /// KV bytes one cell holds (all layers), for the memory figures.
    pub kv_bytes_per_cell: u64,
}

impl ParallelSpec<'_> {
    /// Requests every worker count sends (the same for all, so their
    /// latencies compare).
    pub fn n_requests(&self) -> usize {
        self.requests.unwrap_or_else(|| {
            par::DEFAULT_REQUESTS_PER_WORKER * self.workers.iter().copied().max().unwrap_or(1)
        })
    }

    fn n_predict_of(&self, i: usize) -> usize {
        self.n_predicts.get(i).copied().unwrap_or(self.n_predict)
    }

    /// Where a request's latency clock starts.
    pub fn clock(&self) -> LatencyClock {
        if self.arrivals.is_empty() {
            LatencyClock::Admission
        } else {
            LatencyClock::Arrival
        }
    }
}

/// What the loop reports as it goes.
pub enum ParallelEvent<'a> {
    /// A worker count starts with this many requests.
    Start { workers: usize, requests: usize },
    /// One request of the shared run finished.
    RequestDone,
    /// A worker count finished.
    Done(&'a WorkerRun),
}

#[derive(Debug, thiserror::Error)]
pub enum ParallelError {
    #[error("{workers} workers{}: {source}", if *.unshared { ", prefix not shared" } else { "" })]
    Schedule {
        workers: usize,
        unshared: bool,
        #[source]
        source: ScheduleError,
    },
    #[error("warm-up: {0}")]
    Warmup(#[source] ScheduleError),
    /// The stop callback asked to stop; the worker count it cut short is left
    /// out (its figures would be wrong).
    #[error("interrupted after {done} of {total} worker counts")]
    Interrupted { done: usize, total: usize },
    #[error("{needed} prompts are needed, {given} were given")]
    TooFewPrompts { needed: usize, given: usize },
}

/// Runs every worker count of `spec` on `engine`, appending each finished
/// one to `result.runs`; then fills in scaling and the recommendation (also
/// after an error, for the runs that finished). `stop` is asked before
/// every decode step.
pub fn measure_parallel(
    engine: &mut Engine<'_>,
    spec: &ParallelSpec<'_>,
    result: &mut ParallelResult,
    stop: &dyn Fn() -> bool,
    on_event: &mut dyn FnMut(ParallelEvent<'_>),
) -> Result<(), ParallelError> {
    let outcome = measure_runs(engine, spec, result, stop, on_event);
    par::fill_scaling(&mut result.runs);
    result.recommendation = par::recommend(&result.runs, spec.budgets);
    result.interrupted = matches!(outcome, Err(ParallelError::Interrupted { .. }));
    outcome
}

fn measure_runs(
    engine: &mut Engine<'_>,
    spec: &ParallelSpec<'_>,
    result: &mut ParallelResult,
    stop: &dyn Fn() -> bool,
    on_event: &mut dyn FnMut(ParallelEvent<'_>),
) -> Result<(), ParallelError> {
    if spec.prompts.len() < spec.n_requests() || spec.prompts.is_empty() {
        return Err(ParallelError::TooFewPrompts {
            needed: spec.n_requests().max(1),
            given: spec.prompts.len(),
        });
    }
    let schedule = |w: usize, shared: &[u32]| ScheduleConfig {
        n_slots: w,
        max_batch_tokens: spec.n_batch,
        stop_at_eog: spec.stop_at_eog,
        sampler: SamplerConfig::greedy(),
        shared_prefix: shared.to_vec(),
        prefix_cache_cells: 0,
    };
    let requests_for = |n: usize, with_prefix: bool| -> Vec<Request> {
        spec.prompts[..n]
            .iter()
            .enumerate()
            .map(|(i, p)| Request {
                prompt: if with_prefix {
                    spec.prefix.iter().chain(p).copied().collect()
                } else {
                    p.clone()
                },
                n_predict: spec.n_predict_of(i),
            })
            .collect()
    };
    let never = || false;
    if spec.warmup {
        let w = spec.workers.iter().copied().max().unwrap_or(1);
        let warm: Vec<Request> = (0..w)
            .map(|i| {
                let p = &spec.prompts[i % spec.prompts.len()];
                Request {
                    prompt: p[..p.len().min(16)].to_vec(),
                    n_predict: 2,
                }
            })
            .collect();
        serve(engine, &warm, &schedule(w, &[]), &never, &mut |_| {})
            .map_err(ParallelError::Warmup)?;
    }
    let interrupted = |done: usize| ParallelError::Interrupted {
        done,
        total: spec.workers.len(),
    };
    for &w in spec.workers {
        let n_req = spec.n_requests();
        on_event(ParallelEvent::Start {
            workers: w,
            requests: n_req * spec.repetitions.max(1),
        });
        let failed = |unshared| {
            move |source| ParallelError::Schedule {
                workers: w,
                unshared,
                source,
            }
        };
        let ctx = RunContext {
            workers: w,
            n_predict: spec.n_predict,
            prefix_tokens: spec.prefix.len(),
            clock: spec.clock(),
            slo: spec.slo.clone(),
        };
        let requests = requests_for(n_req, false);
        let arrivals = &spec.arrivals[..spec.arrivals.len().min(n_req)];
        let peak_rss_resettable = crate::system::reset_peak_rss();
        let mut reports = Vec::with_capacity(spec.repetitions.max(1));
        for _ in 0..spec.repetitions.max(1) {
            let report = serve_arriving(
                engine,
                &requests,
                arrivals,
                &schedule(w, spec.prefix),
                stop,
                &mut |_| on_event(ParallelEvent::RequestDone),
            )
            .map_err(failed(false))?;
            if report.interrupted {
                return Err(interrupted(result.runs.len()));
            }
            reports.push(report);
        }
        let mut run = WorkerRun::from_reports(&ctx, &reports);
        run.memory = Memory {
            peak_rss_bytes: peak_rss_resettable
                .then(crate::system::peak_rss_bytes)
                .flatten(),
            kv_bytes: run.kv_cells as u64 * spec.kv_bytes_per_cell,
            compute_buffer_bytes: engine.compute_buffer_bytes() as u64,
        };
        if !spec.prefix.is_empty() {
            let unshared = serve(
                engine,
                &requests_for(n_req, true),
                &schedule(w, &[]),
                stop,
                &mut |_| {},
            )
            .map_err(failed(true))?;
            if unshared.interrupted {
                return Err(interrupted(result.runs.len()));
            }
            let wall_unshared = (unshared.finished - unshared.started).as_secs_f64();
            run.shared_prefix = Some(PrefixSharing {
                tokens: spec.prefix.len(),
                tokens_saved: spec.prefix.len() * n_req.saturating_sub(1),
                wall_s_shared: run.wall_s,
                wall_s_unshared: wall_unshared,
                speedup: if run.wall_s > 0.0 {
                    wall_unshared / run.wall_s
                } else {
                    0.0
                },
            });
        }
        on_event(ParallelEvent::Done(&run));
        result.runs.push(run);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;

    fn empty_result() -> ParallelResult {
        ParallelResult {
            model: "test".into(),
            n_ctx: 0,
            kv_cache_bytes: 0,
            n_threads: 1,
            flash_attn: true,
            kernels: "rbench".into(),
            type_k: "f16".into(),
            type_v: "f16".into(),
            tpot_budget_ms: 100.0,
            ttft_budget_ms: 2000.0,
            workload: None,
            runs: Vec::new(),
            recommendation: par::recommend(&[], Budgets::default()),
            error: None,
            interrupted: false,
        }
    }

    #[test]
    fn every_worker_count_is_measured_and_a_stop_leaves_the_cut_one_out() {
        let (_dir, model) = crate::model::synth::test_model(1);
        let cfg = EngineConfig {
            n_ctx: 256,
            n_threads: 2,
            batch_invariant: true,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(&model, cfg).unwrap();
        let prompts: Vec<Vec<u32>> = (0..3).map(|i| vec![1, 10 + i, 20 + i, 30]).collect();
        let prefix = [5, 6];
        let spec = ParallelSpec {
            workers: &[1, 2],
            requests: Some(3),
            n_predict: 4,
            n_predicts: &[],
            n_batch: 64,
            stop_at_eog: false,
            warmup: true,
            budgets: Budgets::default(),
            prompts: &prompts,
            prefix: &prefix,
            arrivals: &[],
            repetitions: 1,
            slo: None,
            kv_bytes_per_cell: 1,
        };
        let mut result = empty_result();
        let (mut started, mut done) = (Vec::new(), 0);
        measure_parallel(
            &mut engine,
            &spec,
            &mut result,
            &|| false,
            &mut |e| match e {
                ParallelEvent::Start { workers, requests } => started.push((workers, requests)),
                ParallelEvent::RequestDone => done += 1,
                ParallelEvent::Done(_) => {}
            },
        )
        .unwrap();
        assert_eq!(started, [(1, 3), (2, 3)]);
        assert_eq!(done, 6);
        assert_eq!(result.runs.len(), 2);
        assert!(result.runs.iter().all(|r| r.shared_prefix.is_some()));
        assert!(result.recommendation.offline.is_some());

        let mut cut = empty_result();
        let e = measure_parallel(&mut engine, &spec, &mut cut, &|| true, &mut |_| {}).unwrap_err();
        assert!(
            matches!(e, ParallelError::Interrupted { done: 0, total: 2 }),
            "{e}"
        );
        assert!(cut.runs.is_empty() && cut.interrupted);

        let few = ParallelSpec {
            prompts: &prompts[..1],
            ..spec.clone()
        };
        assert!(matches!(
            measure_parallel(
                &mut engine,
                &few,
                &mut empty_result(),
                &|| false,
                &mut |_| {}
            ),
            Err(ParallelError::TooFewPrompts {
                needed: 3,
                given: 1
            })
        ));
    }
}
