//! llama-bench-compatible speed tests: the test matrix, the timed runner,
//! statistics and the exporters (md, csv, json, jsonl).

pub mod list;
pub mod output;
pub mod parallel;
pub mod parallel_plan;
pub mod parallel_run;
pub mod runner;
pub mod stats;

use crate::kernels::Kernels;
use crate::model::placement::PlacementSpec;
use crate::quant::GgmlType;

pub use runner::{run_model, BenchError};

/// Attention cells are padded to this; contexts are rounded up to it too so
/// tests of similar size share one engine.
pub const CTX_ROUND: usize = 256;

/// One test shape: pp (n_gen 0), tg (n_prompt 0) or pg (both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestShape {
    pub n_prompt: usize,
    pub n_gen: usize,
}

/// What a `bench`/`pp`/`tg` invocation asks for, validated.
#[derive(Clone, Debug)]
pub struct BenchPlan {
    pub models: Vec<String>,
    pub shapes: Vec<TestShape>,
    pub n_depth: Vec<usize>,
    pub n_batch: Vec<usize>,
    pub n_ubatch: Vec<usize>,
    pub threads: Vec<usize>,
    pub type_k: Vec<GgmlType>,
    pub type_v: Vec<GgmlType>,
    pub flash_attn: Vec<bool>,
    /// Who computes weight matmuls (`--kernels ggml,rbench`).
    pub kernels: Vec<Kernels>,
    /// Weight placements (`-ngl`, `-sm`, `-mg`, `-dev`, `-ts`, `-mmp`): the
    /// model is loaded once per entry, as llama-bench reloads it.
    pub placements: Vec<Placing>,
    /// `-nkvo`: the KV cache in host memory.
    pub no_kv_offload: Vec<bool>,
    pub repetitions: usize,
    pub warmup: bool,
    pub seed: u64,
}

/// How one load of a model places its weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Placing {
    pub spec: PlacementSpec,
    pub use_mmap: bool,
}

/// One test of the matrix, for one model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestParams {
    pub n_prompt: usize,
    pub n_gen: usize,
    pub n_depth: usize,
    pub n_batch: usize,
    pub n_ubatch: usize,
    pub n_threads: usize,
    pub type_k: GgmlType,
    pub type_v: GgmlType,
    pub flash_attn: bool,
    pub kernels: Kernels,
    pub no_kv_offload: bool,
}

/// llama-bench's test name: `pp512`, `tg128`, `pp512+tg128`, with ` @ d512`
/// for depth (also what saved results are reported under).
pub fn test_name(n_prompt: u64, n_gen: u64, n_depth: u64) -> String {
    let mut s = match (n_prompt, n_gen) {
        (p, 0) => format!("pp{p}"),
        (0, g) => format!("tg{g}"),
        (p, g) => format!("pp{p}+tg{g}"),
    };
    if n_depth > 0 {
        s.push_str(&format!(" @ d{n_depth}"));
    }
    s
}

impl TestParams {
    /// llama-bench's test name: `pp512`, `tg128`, `pp512+tg128`, with ` @ d512` for depth.
    pub fn name(&self) -> String {
        test_name(self.n_prompt as u64, self.n_gen as u64, self.n_depth as u64)
    }

    /// Tokens a timed run processes (what t/s counts).
    pub fn n_timed_tokens(&self) -> usize {
        self.n_prompt + self.n_gen
    }

    /// KV cells the test needs, rounded up to [`CTX_ROUND`].
    pub fn n_ctx(&self) -> usize {
        let n = self.n_depth + self.n_prompt + self.n_gen;
        n.div_ceil(CTX_ROUND).max(1) * CTX_ROUND
    }

    /// The engine's ubatch: never larger than a decode call.
    pub fn engine_ubatch(&self) -> usize {
        self.n_ubatch.min(self.n_batch)
    }

    /// Tests with equal keys can share one engine (given a context that fits all).
    pub fn engine_key(&self) -> EngineKey {
        EngineKey {
            n_ubatch: self.engine_ubatch(),
            n_threads: self.n_threads,
            type_k: self.type_k,
            type_v: self.type_v,
            flash_attn: self.flash_attn,
            kernels: self.kernels,
            no_kv_offload: self.no_kv_offload,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineKey {
    pub n_ubatch: usize,
    pub n_threads: usize,
    pub type_k: GgmlType,
    pub type_v: GgmlType,
    pub flash_attn: bool,
    pub kernels: Kernels,
    pub no_kv_offload: bool,
}

impl BenchPlan {
    /// Every combination of the plan's lists, ordered so that tests sharing
    /// an engine run back to back (engine settings outermost).
    pub fn instances(&self) -> Vec<TestParams> {
        let mut out = Vec::new();
        for &no_kv_offload in &self.no_kv_offload {
            for &kernels in &self.kernels {
                for &flash_attn in &self.flash_attn {
                    for &type_k in &self.type_k {
                        for &type_v in &self.type_v {
                            for &n_threads in &self.threads {
                                for &n_ubatch in &self.n_ubatch {
                                    for &n_batch in &self.n_batch {
                                        for shape in &self.shapes {
                                            for &n_depth in &self.n_depth {
                                                out.push(TestParams {
                                                    n_prompt: shape.n_prompt,
                                                    n_gen: shape.n_gen,
                                                    n_depth,
                                                    n_batch,
                                                    n_ubatch,
                                                    n_threads,
                                                    type_k,
                                                    type_v,
                                                    flash_attn,
                                                    kernels,
                                                    no_kv_offload,
                                                });
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// Where a row's model ran: llama-bench's placement fields.
#[derive(Clone, Debug, PartialEq)]
pub struct RowPlacement {
    pub n_gpu_layers: u32,
    pub split_mode: &'static str,
    pub main_gpu: usize,
    pub devices: String,
    pub tensor_split: String,
    pub use_mmap: bool,
    /// "CPU", or the offload backends used ("Vulkan", "CUDA", ...).
    pub backends: String,
    /// Descriptions of the devices used (empty on the CPU).
    pub gpu_info: String,
}

impl RowPlacement {
    pub fn of(model: &crate::model::Model) -> RowPlacement {
        let p = &model.weights.placement;
        RowPlacement {
            n_gpu_layers: p.spec.n_gpu_layers,
            split_mode: p.spec.split_mode.name(),
            main_gpu: p.spec.main_gpu,
            devices: p.spec.devices.label(),
            tensor_split: p.spec.tensor_split_label(),
            use_mmap: model.weights.use_mmap,
            backends: p.backends_label(),
            gpu_info: p.gpu_info(),
        }
    }

    /// Everything on the CPU with llama-bench's default flags.
    pub fn cpu() -> RowPlacement {
        RowPlacement {
            n_gpu_layers: crate::model::placement::ALL_LAYERS,
            split_mode: "layer",
            main_gpu: 0,
            devices: "auto".into(),
            tensor_split: "0.00".into(),
            use_mmap: true,
            backends: "CPU".into(),
            gpu_info: String::new(),
        }
    }
}

/// The facts about a model that every result row carries.
#[derive(Clone, Debug)]
pub struct ModelFacts {
    pub filename: String,
    pub model_type: String,
    pub model_size: u64,
    pub n_params: u64,
    pub synthetic: bool,
}

impl ModelFacts {
    pub fn of(model: &crate::model::Model) -> ModelFacts {
        ModelFacts {
            filename: model.path.display().to_string(),
            model_type: model.info.model_type(),
            model_size: model.info.model_size,
            n_params: model.info.n_params,
            synthetic: model.info.synthetic,
        }
    }
}

/// One finished test: its settings and timed samples.
#[derive(Clone, Debug)]
pub struct BenchRow {
    pub model: ModelFacts,
    pub params: TestParams,
    pub placement: RowPlacement,
    /// RFC 3339 UTC time of the test start.
    pub test_time: String,
    pub samples_ns: Vec<u64>,
}

impl BenchRow {
    /// Tokens per second of each sample.
    pub fn samples_ts(&self) -> Vec<f64> {
        let n = self.params.n_timed_tokens() as f64;
        self.samples_ns
            .iter()
            .map(|&ns| if ns == 0 { 0.0 } else { n * 1e9 / ns as f64 })
            .collect()
    }

    fn ns_f64(&self) -> Vec<f64> {
        self.samples_ns.iter().map(|&ns| ns as f64).collect()
    }

    pub fn avg_ns(&self) -> u64 {
        stats::mean(&self.ns_f64()).unwrap_or(0.0).round() as u64
    }

    pub fn stddev_ns(&self) -> u64 {
        stats::stddev(&self.ns_f64()).unwrap_or(0.0).round() as u64
    }

    /// Mean of the per-sample rates, as llama-bench reports it.
    pub fn avg_ts(&self) -> f64 {
        stats::mean(&self.samples_ts()).unwrap_or(0.0)
    }

    pub fn stddev_ts(&self) -> f64 {
        stats::stddev(&self.samples_ts()).unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n_prompt: usize, n_gen: usize, n_depth: usize) -> TestParams {
        TestParams {
            n_prompt,
            n_gen,
            n_depth,
            n_batch: 2048,
            n_ubatch: 512,
            n_threads: 2,
            type_k: GgmlType::F16,
            type_v: GgmlType::F16,
            flash_attn: true,
            kernels: Default::default(),
            no_kv_offload: false,
        }
    }

    #[test]
    fn test_names_follow_the_upstream_bench() {
        assert_eq!(params(512, 0, 0).name(), "pp512");
        assert_eq!(params(0, 128, 0).name(), "tg128");
        assert_eq!(params(512, 128, 0).name(), "pp512+tg128");
        assert_eq!(params(512, 0, 1024).name(), "pp512 @ d1024");
    }

    #[test]
    fn context_is_rounded_up() {
        assert_eq!(params(512, 0, 0).n_ctx(), 512);
        assert_eq!(params(512, 128, 0).n_ctx(), 768);
        assert_eq!(params(16, 4, 0).n_ctx(), 256);
        assert_eq!(params(0, 128, 512).n_ctx(), 768);
    }

    #[test]
    fn matrix_has_every_combination() {
        let plan = BenchPlan {
            models: vec!["m".into()],
            shapes: vec![
                TestShape {
                    n_prompt: 16,
                    n_gen: 0,
                },
                TestShape {
                    n_prompt: 0,
                    n_gen: 4,
                },
            ],
            n_depth: vec![0, 8],
            n_batch: vec![2048],
            n_ubatch: vec![256, 512],
            threads: vec![1, 2, 4],
            type_k: vec![GgmlType::F16],
            type_v: vec![GgmlType::F16],
            flash_attn: vec![true, false],
            kernels: vec![Kernels::Ggml, Kernels::Rbench],
            no_kv_offload: vec![false],
            placements: vec![Placing {
                spec: Default::default(),
                use_mmap: true,
            }],
            repetitions: 1,
            warmup: false,
            seed: 0,
        };
        let all = plan.instances();
        assert_eq!(all.len(), 2 * 2 * 2 * 2 * 3 * 2);
        for (i, a) in all.iter().enumerate() {
            assert!(!all[i + 1..].contains(a), "duplicate {a:?}");
        }
        // Engine settings change only at group boundaries.
        let keys: Vec<EngineKey> = all.iter().map(TestParams::engine_key).collect();
        let changes = keys.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!(changes, 2 * 2 * 3 * 2 - 1);
    }

    #[test]
    fn row_rates_come_from_samples() {
        let row = BenchRow {
            model: ModelFacts {
                filename: "f".into(),
                model_type: "t".into(),
                model_size: 1,
                n_params: 1,
                synthetic: true,
            },
            params: params(100, 0, 0),
            test_time: String::new(),
            samples_ns: vec![1_000_000_000, 500_000_000],
            placement: RowPlacement::cpu(),
        };
        assert_eq!(row.samples_ts(), vec![100.0, 200.0]);
        assert_eq!(row.avg_ts(), 150.0);
        assert_eq!(row.avg_ns(), 750_000_000);
        assert!((row.stddev_ts() - 50.0 * 2f64.sqrt()).abs() < 1e-9);
    }
}
