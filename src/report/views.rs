//! Typed, tolerant views of each command's JSON result: the fields a report
//! reads, defaults for what is missing, extra fields ignored.

use super::saved::{ResultKind, SavedResult};
use super::ReportError;
use serde::Deserialize;

/// "1 thread", "2 threads".
pub fn threads_label(n: u64) -> String {
    if n == 1 {
        "1 thread".into()
    } else {
        format!("{n} threads")
    }
}

/// Whether every group of rows ran at a single thread count (so the count
/// can label the group instead of each test).
pub fn one_thread_count_each<'a>(groups: impl IntoIterator<Item = &'a [BenchEntry]>) -> bool {
    groups.into_iter().all(|rows| {
        rows.iter()
            .all(|r| rows.first().is_some_and(|f| f.n_threads == r.n_threads))
    })
}

/// One `bench`/`pp`/`tg` row (llama-bench's JSON field names).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct BenchEntry {
    pub model_filename: String,
    pub model_type: String,
    pub model_size: u64,
    pub model_n_params: u64,
    pub synthetic: bool,
    pub n_batch: u64,
    pub n_ubatch: u64,
    pub n_threads: u64,
    pub type_k: String,
    pub type_v: String,
    pub flash_attn: bool,
    /// `rbench` or `ggml`; empty in files saved before the flag existed.
    pub kernels: String,
    /// What computed the row: "CPU", "Vulkan", "CUDA", ... (empty in files
    /// saved before GPU offload: CPU).
    pub backends: String,
    pub n_gpu_layers: Option<u64>,
    pub no_kv_offload: bool,
    pub use_mmap: bool,
    pub n_prompt: u64,
    pub n_gen: u64,
    pub n_depth: u64,
    pub avg_ts: f64,
    pub stddev_ts: f64,
    pub samples_ts: Vec<f64>,
}

impl Default for BenchEntry {
    fn default() -> Self {
        BenchEntry {
            model_filename: String::new(),
            model_type: String::new(),
            model_size: 0,
            model_n_params: 0,
            synthetic: false,
            n_batch: 2048,
            n_ubatch: 512,
            n_threads: 0,
            type_k: "f16".into(),
            type_v: "f16".into(),
            flash_attn: true,
            kernels: String::new(),
            backends: String::new(),
            n_gpu_layers: None,
            no_kv_offload: false,
            use_mmap: true,
            n_prompt: 0,
            n_gen: 0,
            n_depth: 0,
            avg_ts: 0.0,
            stddev_ts: 0.0,
            samples_ts: Vec::new(),
        }
    }
}

impl BenchEntry {
    /// llama-bench's test name: `pp512`, `tg128`, `pp512+tg128`, ` @ d512`.
    pub fn test_name(&self) -> String {
        crate::bench::test_name(self.n_prompt, self.n_gen, self.n_depth)
    }

    /// Settings other than llama-bench's defaults, e.g. "b 512, fa off".
    pub fn settings(&self) -> String {
        let mut out = Vec::new();
        if self.n_batch != 2048 {
            out.push(format!("b {}", self.n_batch));
        }
        if self.n_ubatch != 512 {
            out.push(format!("ub {}", self.n_ubatch));
        }
        if self.type_k != "f16" {
            out.push(format!("ctk {}", self.type_k));
        }
        if self.type_v != "f16" {
            out.push(format!("ctv {}", self.type_v));
        }
        if !self.flash_attn {
            out.push("fa off".into());
        }
        if !self.kernels.is_empty() && self.kernels != crate::kernels::Kernels::default().name() {
            out.push(format!("kernels {}", self.kernels));
        }
        if !self.backends.is_empty() && self.backends != "CPU" {
            match self.n_gpu_layers {
                Some(n) => out.push(format!("{} ngl {n}", self.backends)),
                None => out.push(self.backends.clone()),
            }
        }
        if self.no_kv_offload {
            out.push("nkvo".into());
        }
        if !self.use_mmap {
            out.push("mmap off".into());
        }
        out.join(", ")
    }

    /// What identifies "the same test" across files and models; the thread
    /// count is left out where the caller shows it elsewhere.
    pub fn test_key(&self, with_threads: bool) -> String {
        let s = self.settings();
        let mut key = self.test_name();
        if with_threads {
            key.push_str(&format!(" · {}", threads_label(self.n_threads)));
        }
        if !s.is_empty() {
            key.push_str(&format!(" · {s}"));
        }
        key
    }

    pub fn model_label(&self) -> String {
        if self.synthetic {
            format!("{} (synthetic)", self.model_type)
        } else {
            self.model_type.clone()
        }
    }

    /// A generation-only test (what the memory-bandwidth ceiling applies to).
    pub fn is_tg(&self) -> bool {
        self.n_prompt == 0 && self.n_gen > 0
    }

    pub fn is_pp(&self) -> bool {
        self.n_gen == 0 && self.n_prompt > 0
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

/// One worker count of `rbench parallel` (issue 5's JSON).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ParallelRun {
    pub workers: u64,
    pub n_prompt: u64,
    pub n_predict: u64,
    pub requests: Option<u64>,
    pub prompt_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub prompt_tps: f64,
    pub gen_tps: f64,
    pub overall_tps: f64,
    pub speedup: Option<f64>,
    pub efficiency: Option<f64>,
    pub kv_cells: Option<u64>,
    pub ttft_ms: Option<Latency>,
    pub tpot_ms: Option<Latency>,
    pub itl_ms: Option<Latency>,
    pub e2e_ms: Option<Latency>,
    pub memory: Option<crate::bench::parallel::Memory>,
}

impl ParallelRun {
    fn n_requests(&self) -> u64 {
        self.requests.unwrap_or(self.workers)
    }

    pub fn total_prompt_tokens(&self) -> u64 {
        self.prompt_tokens
            .unwrap_or(self.n_prompt * self.n_requests())
    }

    pub fn total_output_tokens(&self) -> u64 {
        self.output_tokens
            .unwrap_or(self.n_predict * self.n_requests())
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ParallelResult {
    pub n_ctx: Option<u64>,
    pub kv_cache_bytes: Option<u64>,
    pub runs: Vec<ParallelRun>,
    pub recommendation: Option<serde_json::Value>,
}

impl ParallelResult {
    /// Runs by worker count, with speedup and efficiency filled in from the
    /// one-worker generation rate where the file lacks them.
    pub fn normalized(mut self) -> ParallelResult {
        self.runs.sort_by_key(|r| r.workers);
        let base = self
            .runs
            .iter()
            .find(|r| r.workers == 1)
            .map(|r| r.gen_tps)
            .filter(|&t| t > 0.0);
        for r in &mut self.runs {
            if r.speedup.is_none() {
                r.speedup = base.map(|b| r.gen_tps / b);
            }
            if r.efficiency.is_none() && r.workers > 0 {
                r.efficiency = r.speedup.map(|s| s / r.workers as f64);
            }
        }
        self
    }
}

/// Length statistics of `rbench analyze` (issue 6's JSON).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct LengthStats {
    pub count: u64,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl LengthStats {
    /// (share of records at or below, length) points of the distribution.
    pub fn quantiles(&self) -> [(f64, f64); 7] {
        [
            (0.0, self.min),
            (0.50, self.p50),
            (0.75, self.p75),
            (0.90, self.p90),
            (0.95, self.p95),
            (0.99, self.p99),
            (1.0, self.max),
        ]
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct AnalyzeRecommendation {
    pub n_prompt: u64,
    pub n_predict: u64,
    pub coverage: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Tier {
    pub name: String,
    pub n_predict: u64,
    pub coverage: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct AnalyzeResult {
    pub records: u64,
    pub skipped: u64,
    pub shape: Option<String>,
    pub tokenizer: Option<serde_json::Value>,
    pub prompt_tokens: LengthStats,
    pub output_tokens: LengthStats,
    pub recommendation: AnalyzeRecommendation,
    pub tiers: Vec<Tier>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PerplexityResult {
    pub model: String,
    pub file: String,
    pub n_ctx: u64,
    pub n_chunks: u64,
    pub n_tokens_scored: u64,
    pub ppl: f64,
    pub ppl_error: f64,
    pub seconds: f64,
}

/// One run of `rbench load` (one scenario step), the fields a report shows.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct LoadRunView {
    pub scenario: String,
    pub input_len: u64,
    pub output_len: u64,
    #[serde(default)]
    pub max_concurrency: Option<u64>,
    pub completed: u64,
    pub failed: u64,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub mean_ttft_ms: f64,
    pub mean_tpot_ms: f64,
    #[serde(default)]
    pub p99_ttft_ms: Option<f64>,
    #[serde(default)]
    pub p99_tpot_ms: Option<f64>,
    #[serde(default)]
    pub p99_itl_ms: Option<f64>,
    #[serde(default)]
    pub p99_e2el_ms: Option<f64>,
}

impl LoadRunView {
    /// What identifies the run across results: scenario, shape, concurrency.
    pub fn key(&self) -> String {
        format!(
            "{} {}→{} c{}",
            self.scenario,
            self.input_len,
            self.output_len,
            self.max_concurrency
                .map_or("∞".to_string(), |c| c.to_string())
        )
    }

    /// One user's generation speed: 1000 / mean TPOT.
    pub fn per_user_tps(&self) -> f64 {
        if self.mean_tpot_ms > 0.0 {
            1000.0 / self.mean_tpot_ms
        } else {
            0.0
        }
    }
}

/// `rbench load -o json`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct LoadResult {
    pub base_url: String,
    #[serde(default)]
    pub model_id: Option<String>,
    pub runs: Vec<LoadRunView>,
}

/// A saved result's `result`, read as its kind.
#[derive(Clone, Debug, PartialEq)]
pub enum View {
    Bench(Vec<BenchEntry>),
    Parallel(ParallelResult),
    Analyze(AnalyzeResult),
    Perplexity(PerplexityResult),
    Load(LoadResult),
}

impl View {
    pub fn of(saved: &SavedResult) -> Result<View, ReportError> {
        let kind = saved.kind.name();
        let shape = |e: serde_json::Error| ReportError::Shape {
            kind,
            message: e.to_string(),
        };
        let v = saved.result.clone();
        Ok(match saved.kind {
            ResultKind::Bench => View::Bench(serde_json::from_value(v).map_err(shape)?),
            ResultKind::Parallel => View::Parallel(
                serde_json::from_value::<ParallelResult>(v)
                    .map_err(shape)?
                    .normalized(),
            ),
            ResultKind::Analyze => View::Analyze(serde_json::from_value(v).map_err(shape)?),
            ResultKind::Perplexity => View::Perplexity(serde_json::from_value(v).map_err(shape)?),
            ResultKind::Load => View::Load(serde_json::from_value(v).map_err(shape)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bench_rows_read_with_defaults_and_extra_fields() {
        let rows: Vec<BenchEntry> = serde_json::from_value(json!([
            {"model_type": "llama 15M", "n_prompt": 512, "n_gen": 0, "n_threads": 2,
             "avg_ts": 10.0, "unknown_field": [1, 2]},
            {"model_type": "llama 15M", "n_prompt": 0, "n_gen": 128, "n_threads": 2,
             "n_depth": 512, "flash_attn": false, "n_batch": 256, "avg_ts": 5.0}
        ]))
        .unwrap();
        assert_eq!(rows[0].test_key(true), "pp512 · 2 threads");
        assert_eq!(rows[0].test_key(false), "pp512");
        assert!(rows[0].is_pp() && rows[1].is_tg());
        assert_eq!(
            rows[1].test_key(true),
            "tg128 @ d512 · 2 threads · b 256, fa off"
        );
        assert!(one_thread_count_each([&rows[..]]));
        let mut one = rows[1].clone();
        one.n_threads = 1;
        assert_eq!(
            one.test_key(true),
            "tg128 @ d512 · 1 thread · b 256, fa off"
        );
        // Separate groups may differ; one group with two counts may not.
        assert!(one_thread_count_each([&rows[..1], &[one.clone()][..]]));
        assert!(!one_thread_count_each([&[rows[0].clone(), one][..]]));
        // Offloaded rows are told apart from CPU rows of the same test.
        let offloaded: BenchEntry = serde_json::from_value(json!(
            {"n_prompt": 512, "backends": "Vulkan", "n_gpu_layers": 99, "no_kv_offload": true}
        ))
        .unwrap();
        assert_eq!(offloaded.test_key(false), "pp512 · Vulkan ngl 99, nkvo");
        let on_cpu: BenchEntry = serde_json::from_value(json!(
            {"n_prompt": 512, "backends": "CPU", "n_gpu_layers": 0, "use_mmap": false}
        ))
        .unwrap();
        assert_eq!(on_cpu.test_key(false), "pp512 · mmap off");
    }

    #[test]
    fn parallel_fills_speedup_and_efficiency() {
        let p: ParallelResult = serde_json::from_value(json!({
            "runs": [
                {"workers": 4, "gen_tps": 160.0, "n_prompt": 128, "n_predict": 64},
                {"workers": 1, "gen_tps": 50.0, "speedup": 1.0, "efficiency": 1.0},
                {"workers": 2, "gen_tps": 90.0, "speedup": 1.7, "extra": "x"}
            ],
            "recommendation": {"interactive": {"workers": 2}}
        }))
        .unwrap();
        let p = p.normalized();
        let w: Vec<u64> = p.runs.iter().map(|r| r.workers).collect();
        assert_eq!(w, vec![1, 2, 4]);
        // Given values are kept; missing ones come from the 1-worker rate.
        assert_eq!(p.runs[1].speedup, Some(1.7));
        assert!((p.runs[1].efficiency.unwrap() - 0.85).abs() < 1e-12);
        assert!((p.runs[2].speedup.unwrap() - 3.2).abs() < 1e-12);
        assert!((p.runs[2].efficiency.unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(p.runs[2].total_prompt_tokens(), 512);
        assert_eq!(p.runs[2].total_output_tokens(), 256);
    }

    #[test]
    fn wrong_shapes_are_errors_not_panics() {
        let bad: Result<Vec<BenchEntry>, _> = serde_json::from_value(json!({"runs": []}));
        assert!(bad.is_err());
        let bad: Result<ParallelResult, _> = serde_json::from_value(json!({"runs": 3}));
        assert!(bad.is_err());
    }
}
