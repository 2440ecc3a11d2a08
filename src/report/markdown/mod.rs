//! `rbench report`: one Markdown document from saved results, with SVG charts
//! to write beside it and a mermaid chart inline. Several results of one kind
//! are laid side by side with ratios to the first.

use super::analysis::{self, TPOT_BUDGET_MS};
use super::charts::{self, Series};
use super::saved::{ModelIdentity, SavedResult};
use super::views::{
    AnalyzeResult, BenchEntry, LengthStats, LoadResult, ParallelResult, ParallelRun,
    PerplexityResult, View,
};
use super::ReportError;
use crate::format::{bytes, params};
use crate::system::Hardware;
use std::fmt::Write as _;

/// One saved result and the name the report calls it by (its file name).
pub struct Input {
    pub name: String,
    pub saved: SavedResult,
}

pub struct Options {
    /// Chart files are named `{chart_prefix}-{chart}.svg`.
    pub chart_prefix: String,
    pub tpot_budget_ms: f64,
    /// The report's date line.
    pub generated: String,
}

impl Options {
    pub fn new(chart_prefix: &str) -> Options {
        Options {
            chart_prefix: chart_prefix.to_string(),
            tpot_budget_ms: TPOT_BUDGET_MS,
            generated: crate::bench::runner::rfc3339_utc(std::time::SystemTime::now()),
        }
    }
}

/// An SVG chart to write beside the report under `file_name`.
pub struct Chart {
    pub file_name: String,
    pub svg: String,
}

pub struct Rendered {
    pub markdown: String,
    pub charts: Vec<Chart>,
}

/// `writeln!` into a String cannot fail.
macro_rules! w {
    ($dst:expr) => { let _ = writeln!($dst); };
    ($dst:expr, $($arg:tt)*) => { let _ = writeln!($dst, $($arg)*); };
}

mod analyze;
mod bench;
mod load;
mod machine;
mod parallel;
mod perplexity;

use analyze::analyze_section;
use bench::bench_section;
use load::load_section;
use machine::{model_table, system_table};
use parallel::parallel_section;
use perplexity::perplexity_section;

/// A table row: its name and how to compute its cell from one column's source.
type Fact<T> = (&'static str, fn(&T) -> String);

/// A Markdown table; columns from `right_from` on are right-aligned.
fn table(header: Vec<String>, rows: Vec<Vec<String>>, right_from: usize) -> String {
    crate::format::table(&header, rows, crate::format::numbers_from(right_from))
}

fn opt_f(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

fn workers_label(n: u64) -> String {
    if n == 1 {
        "1 worker".into()
    } else {
        format!("{n} workers")
    }
}

fn opt(v: Option<u32>) -> String {
    v.map_or_else(|| "–".into(), |n| n.to_string())
}

fn strings<const N: usize>(xs: [&str; N]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

fn ratio(new: f64, old: f64) -> Option<f64> {
    (old > 0.0 && new.is_finite()).then(|| new / old)
}

/// `1.23×`, bold when the difference exceeds both runs' spread.
fn ratio_cell(new: (f64, f64), old: (f64, f64)) -> String {
    match ratio(new.0, old.0) {
        Some(r) if (new.0 - old.0).abs() > new.1 + old.1 => format!("**{r:.2}×**"),
        Some(r) => format!("{r:.2}×"),
        None => "–".into(),
    }
}

fn bandwidth_gbs(h: &Hardware, threads: u64) -> Option<f64> {
    h.memory_bandwidth.as_ref().map(|b| {
        if threads == 1 {
            b.single_thread_gbs
        } else {
            b.all_threads_gbs
        }
    })
}

/// One model's bench rows from one file: a column of the report.
struct BenchSeries<'a> {
    name: String,
    input: &'a Input,
    rows: Vec<BenchEntry>,
    /// Whether test keys carry the thread count (else the name does).
    with_threads: bool,
}

impl BenchSeries<'_> {
    fn key(&self, r: &BenchEntry) -> String {
        r.test_key(self.with_threads)
    }

    fn get(&self, key: &str) -> Option<&BenchEntry> {
        self.rows.iter().find(|r| self.key(r) == key)
    }

    fn best(&self, pred: fn(&BenchEntry) -> bool) -> Option<&BenchEntry> {
        self.rows
            .iter()
            .filter(|r| pred(r))
            .max_by(|a, b| (a.n_prompt + a.n_gen).cmp(&(b.n_prompt + b.n_gen)))
    }
}

struct Sections<'a> {
    bench: Vec<BenchSeries<'a>>,
    parallel: Vec<(&'a Input, ParallelResult)>,
    analyze: Vec<(&'a Input, AnalyzeResult)>,
    perplexity: Vec<(&'a Input, PerplexityResult)>,
    load: Vec<(&'a Input, LoadResult)>,
}

fn split(inputs: &[Input]) -> Result<Sections<'_>, ReportError> {
    let mut s = Sections {
        bench: Vec::new(),
        parallel: Vec::new(),
        analyze: Vec::new(),
        perplexity: Vec::new(),
        load: Vec::new(),
    };
    let mut bench_groups: Vec<(&Input, String, Vec<BenchEntry>)> = Vec::new();
    for input in inputs {
        match View::of(&input.saved).map_err(|e| e.in_file(std::path::Path::new(&input.name)))? {
            View::Bench(rows) => {
                let mut models: Vec<String> = Vec::new();
                for r in &rows {
                    if !models.contains(&r.model_label()) {
                        models.push(r.model_label());
                    }
                }
                for m in models {
                    let mine = rows
                        .iter()
                        .filter(|r| r.model_label() == m)
                        .cloned()
                        .collect();
                    bench_groups.push((input, m, mine));
                }
            }
            View::Parallel(p) => s.parallel.push((input, p)),
            View::Analyze(a) => s.analyze.push((input, a)),
            View::Perplexity(p) => s.perplexity.push((input, p)),
            View::Load(l) => s.load.push((input, l)),
        }
    }
    // Columns are named by what differs between them: file, model, threads.
    let files = bench_groups
        .iter()
        .map(|g| g.0.name.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let models = bench_groups
        .iter()
        .map(|g| g.1.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let with_threads = !super::views::one_thread_count_each(bench_groups.iter().map(|g| &g.2[..]));
    let threads_of = |g: &(&Input, String, Vec<BenchEntry>)| g.2.first().map_or(0, |r| r.n_threads);
    let threads_differ = bench_groups
        .iter()
        .any(|g| threads_of(g) != bench_groups.first().map_or(0, threads_of));
    for g in &bench_groups {
        let mut name = match (files > 1, models > 1) {
            (true, true) => format!("{} · {}", g.0.name, g.1),
            (true, false) => g.0.name.clone(),
            _ => g.1.clone(),
        };
        if !with_threads && threads_differ {
            name.push_str(&format!(
                " ({})",
                super::views::threads_label(threads_of(g))
            ));
        }
        s.bench.push(BenchSeries {
            name,
            input: g.0,
            rows: g.2.clone(),
            with_threads,
        });
    }
    Ok(s)
}

/// Renders the report; chart links are relative to the report's directory.
pub fn render(inputs: &[Input], opts: &Options) -> Result<Rendered, ReportError> {
    if inputs.is_empty() {
        return Err(ReportError::Mismatch(
            "no saved results to report on".into(),
        ));
    }
    let sections = split(inputs)?;
    let mut md = String::new();
    let mut charts = Vec::new();
    w!(md, "# rbench report\n");
    w!(
        md,
        "Generated {} from {} saved result(s).\n",
        opts.generated,
        inputs.len()
    );
    let rows = inputs
        .iter()
        .map(|i| {
            vec![
                format!("`{}`", i.name),
                i.saved.kind.name().to_string(),
                i.saved.created.clone(),
                format!("`{}`", i.saved.command_line.join(" ")),
            ]
        })
        .collect();
    w!(
        md,
        "{}\n",
        table(strings(["File", "Kind", "Saved", "Command"]), rows, 4)
    );
    summary(&mut md, &sections, opts);
    system_table(&mut md, inputs);
    model_table(&mut md, inputs);
    if !sections.bench.is_empty() {
        bench_section(&mut md, &mut charts, &sections.bench, opts)?;
    }
    if !sections.parallel.is_empty() {
        parallel_section(&mut md, &mut charts, &sections.parallel, opts)?;
    }
    if !sections.analyze.is_empty() {
        analyze_section(&mut md, &mut charts, &sections.analyze, opts)?;
    }
    if !sections.perplexity.is_empty() {
        perplexity_section(&mut md, &sections.perplexity);
    }
    if !sections.load.is_empty() {
        load_section(&mut md, &mut charts, &sections.load, opts)?;
    }
    recommendations(&mut md, &sections, opts);
    Ok(Rendered {
        markdown: md,
        charts,
    })
}

fn summary(md: &mut String, s: &Sections, opts: &Options) {
    w!(md, "## Summary\n");
    for b in &s.bench {
        let mut parts = Vec::new();
        if let Some(r) = b.best(BenchEntry::is_pp) {
            parts.push(format!(
                "prompt processing **{:.2} ± {:.2} t/s** ({})",
                r.avg_ts,
                r.stddev_ts,
                r.test_name()
            ));
        }
        if let Some(r) = b.best(BenchEntry::is_tg) {
            parts.push(format!(
                "generation **{:.2} ± {:.2} t/s** ({})",
                r.avg_ts,
                r.stddev_ts,
                r.test_name()
            ));
        }
        let threads = super::views::threads_label(b.rows.first().map_or(0, |r| r.n_threads));
        if !parts.is_empty() {
            w!(md, "- {}: {}, {threads}.", b.name, parts.join(", "));
        }
    }
    for (input, p) in &s.parallel {
        let one = p.runs.iter().find(|r| r.workers == 1);
        if let Some(best) = p.runs.iter().max_by(|a, b| a.gen_tps.total_cmp(&b.gen_tps)) {
            w!(
                md,
                "- Parallel (`{}`): generation peaks at **{:.1} t/s with {} workers** (speedup {:.2}×, efficiency {:.0}%){}.",
                input.name,
                best.gen_tps,
                best.workers,
                best.speedup.unwrap_or(0.0),
                best.efficiency.unwrap_or(0.0) * 100.0,
                one.map(|o| format!(" against {:.1} t/s with one", o.gen_tps)).unwrap_or_default()
            );
        }
    }
    for (input, a) in &s.analyze {
        w!(
            md,
            "- Dataset (`{}`): {} records, prompts p95 {:.0} tokens, outputs p90 {:.0} tokens: benchmark with **-p {} -n {}**{}.",
            input.name,
            a.records,
            a.prompt_tokens.p95,
            a.output_tokens.p90,
            a.recommendation.n_prompt,
            a.recommendation.n_predict,
            a.recommendation.coverage.map(|c| format!(" ({:.1}% of outputs fit)", c * 100.0)).unwrap_or_default()
        );
    }
    for (input, p) in &s.perplexity {
        w!(
            md,
            "- Perplexity (`{}`): **{:.4} ± {:.5}** over {} chunks of {} tokens.",
            input.name,
            p.ppl,
            p.ppl_error,
            p.n_chunks,
            p.n_ctx
        );
    }
    w!(md);
    if let Some(r) = headline(s, opts) {
        w!(md, "**Recommendation:** {r}\n");
    }
}

/// The one recommendation that matters most, from the richest result.
fn headline(s: &Sections, opts: &Options) -> Option<String> {
    if let Some((_, p)) = s.parallel.first() {
        let sc = analysis::scaling(&p.runs, opts.tpot_budget_ms);
        if let (Some(i), Some(b)) = (&sc.interactive, &sc.batch) {
            return Some(format!(
                "serve interactive traffic with {} ({:.1} t/s generation{}) and offline batches with {} ({:.1} t/s overall).",
                workers_label(i.workers),
                i.gen_tps,
                i.tpot_ms.map(|t| format!(", TPOT p99 {:.1} ms", t.p99)).unwrap_or_default(),
                workers_label(b.workers),
                b.overall_tps
            ));
        }
    }
    for b in &s.bench {
        let Some(tg) = b.best(BenchEntry::is_tg) else {
            continue;
        };
        let Some(bw) = bandwidth_gbs(&b.input.saved.hardware, tg.n_threads) else {
            continue;
        };
        let bn = analysis::bottleneck(tg.avg_ts, tg.model_size, bw)?;
        let cache = b.input.saved.hardware.last_level_cache_bytes;
        if bn.share > 1.0 || cache.is_some_and(|c| tg.model_size <= c) {
            return Some(format!(
                "{} ({}) fits in the CPU cache, so its generation speed says little about larger models: measure the model you will deploy; here more threads (`-t`) are the lever.",
                b.name,
                bytes(tg.model_size)
            ));
        }
        return Some(match bn.bound {
            analysis::Bound::Memory => format!(
                "generation on {} uses {:.0}% of the measured memory bandwidth; only a smaller model file (lower-bit quant) or faster memory makes it faster.",
                b.name,
                bn.share * 100.0
            ),
            analysis::Bound::Compute => format!(
                "generation on {} reads weights at only {:.0}% of the measured memory bandwidth, so it is compute- or overhead-bound: try more threads (`-t`) before a smaller quant.",
                b.name,
                bn.share * 100.0
            ),
        });
    }
    s.analyze.first().map(|(_, a)| {
        format!(
            "benchmark this workload with `rbench parallel -p {} -n {}`.",
            a.recommendation.n_prompt, a.recommendation.n_predict
        )
    })
}

fn chart_link(
    md: &mut String,
    charts: &mut Vec<Chart>,
    opts: &Options,
    name: &str,
    alt: &str,
    svg: String,
) {
    let file_name = format!("{}-{name}.svg", opts.chart_prefix);
    w!(md, "![{alt}]({file_name})\n");
    charts.push(Chart { file_name, svg });
}

fn mermaid_labels(xs: &[String]) -> String {
    xs.iter()
        .map(|x| format!("\"{}\"", x.replace('"', "'")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mermaid_values(xs: &[f64]) -> String {
    xs.iter()
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn recommendations(md: &mut String, s: &Sections, opts: &Options) {
    w!(md, "## Recommendations\n");
    w!(md, "### Interactive use\n");
    let mut said = false;
    for (input, p) in &s.parallel {
        if let Some(r) = analysis::scaling(&p.runs, opts.tpot_budget_ms).interactive {
            w!(
                md,
                "- `{}`: **{}**: {:.1} t/s of generation in total{}{} (TPOT p99 budget {:.0} ms).",
                input.name,
                workers_label(r.workers),
                r.gen_tps,
                r.tpot_ms
                    .map(|t| format!(", TPOT p99 {:.1} ms", t.p99))
                    .unwrap_or_default(),
                r.ttft_ms
                    .map(|t| format!(", TTFT p99 {:.1} ms", t.p99))
                    .unwrap_or_default(),
                opts.tpot_budget_ms
            );
            said = true;
        }
    }
    for b in &s.bench {
        if let Some(tg) = b.best(BenchEntry::is_tg) {
            let ms = 1000.0 / tg.avg_ts.max(1e-9);
            let first = b
                .best(BenchEntry::is_pp)
                .map(|pp| {
                    format!(
                        "; a {}-token prompt is read in {:.0} ms",
                        pp.n_prompt,
                        pp.n_prompt as f64 * 1000.0 / pp.avg_ts.max(1e-9)
                    )
                })
                .unwrap_or_default();
            w!(md, "- {}: one stream generates {:.1} t/s ({:.1} ms per token), a 256-token answer in {:.1} s{first}.", b.name, tg.avg_ts, ms, 256.0 / tg.avg_ts.max(1e-9));
            said = true;
        }
    }
    for (input, l) in &s.load {
        if let Some(r) = load::sweet_spot(l, opts) {
            w!(
                md,
                "- `{}` (serving): **concurrency {}**: {:.1} output tok/s, {:.1} tok/s per user (TTFT p99 budget {:.0} ms, TPOT p99 budget {:.0} ms).",
                input.name,
                r.max_concurrency.unwrap_or(0),
                r.output_throughput,
                r.per_user_tps(),
                load::TTFT_BUDGET_MS,
                opts.tpot_budget_ms
            );
            said = true;
        }
    }
    if !said {
        w!(md, "- No generation measurement here: save `rbench tg` or `rbench parallel` results for this.");
    }
    w!(md, "\n### Batch / offline use\n");
    let mut said = false;
    for (input, p) in &s.parallel {
        if let Some(r) = analysis::scaling(&p.runs, opts.tpot_budget_ms).batch {
            w!(
                md,
                "- `{}`: **{}**: {:.1} t/s overall ({:.1} t/s generation, efficiency {:.0}%).",
                input.name,
                workers_label(r.workers),
                r.overall_tps,
                r.gen_tps,
                r.efficiency.unwrap_or(0.0) * 100.0
            );
            said = true;
        }
    }
    for b in &s.bench {
        if let Some(pp) = b.best(BenchEntry::is_pp) {
            w!(
                md,
                "- {}: prompt processing runs at {:.1} t/s ({:.0} tokens of input per minute).",
                b.name,
                pp.avg_ts,
                pp.avg_ts * 60.0
            );
            said = true;
        }
    }
    for (input, a) in &s.analyze {
        w!(
            md,
            "- `{}`: benchmark this workload with `rbench parallel -p {} -n {}`.",
            input.name,
            a.recommendation.n_prompt,
            a.recommendation.n_predict
        );
        said = true;
    }
    for (input, l) in &s.load {
        if let Some(r) = load::peak(l) {
            w!(
                md,
                "- `{}` (serving): peak **{:.1} output tok/s at concurrency {}**.",
                input.name,
                r.output_throughput,
                r.max_concurrency.unwrap_or(0)
            );
            said = true;
        }
    }
    if !said {
        w!(md, "- No throughput measurement here: save `rbench pp` or `rbench parallel` results for this.");
    }
    w!(md);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::saved::{BuildFacts, ResultKind};
    use serde_json::json;

    fn input(name: &str, kind: ResultKind, result: serde_json::Value) -> Input {
        Input {
            name: name.into(),
            saved: SavedResult {
                schema: 1,
                kind,
                command_line: vec!["rbench".into(), kind.name().into()],
                created: "2026-12-05T00:00:00Z".into(),
                build: BuildFacts::current(),
                model: None,
                more_models: vec![],
                hardware: Hardware::detect(),
                result,
            },
        }
    }

    fn perplexity(ppl: f64) -> serde_json::Value {
        json!({"model": "m.gguf", "file": "GPL-3", "n_ctx": 256, "n_chunks": 29,
               "n_tokens_scored": 3683, "ppl": ppl, "ppl_error": 0.78, "seconds": 15.7})
    }

    fn options() -> Options {
        Options {
            chart_prefix: "r".into(),
            tpot_budget_ms: TPOT_BUDGET_MS,
            generated: "2026-12-05T00:00:00Z".into(),
        }
    }

    #[test]
    fn results_of_one_kind_get_their_section_side_by_side_with_ratios() {
        let inputs = [
            input("a.json", ResultKind::Perplexity, perplexity(16.4114)),
            input("b.json", ResultKind::Perplexity, perplexity(32.8228)),
        ];
        let md = render(&inputs, &options()).unwrap().markdown;
        assert!(md.contains("## System"), "{md}");
        assert!(md.contains("## Perplexity"), "{md}");
        assert!(!md.contains("## Parallel scaling"), "{md}");
        let rows: Vec<&str> = md.lines().filter(|l| l.contains("| GPL-3 |")).collect();
        assert_eq!(rows.len(), 2, "{md}");
        assert!(
            rows[0].contains("16.4114 ± 0.78000") && rows[0].ends_with("– |"),
            "{md}"
        );
        assert!(
            rows[1].contains("32.8228") && rows[1].contains("2.00×"),
            "{md}"
        );
    }

    #[test]
    fn a_result_of_another_kind_is_a_section_of_its_own() {
        let run = |w: u64, gen: f64| {
            json!({"workers": w, "n_prompt": 128, "n_predict": 128, "prompt_tps": 300.0,
                   "gen_tps": gen, "overall_tps": gen, "speedup": gen / 20.0,
                   "efficiency": gen / 20.0 / w as f64, "kv_cells": w * 256,
                   "ttft_ms": {"mean": 80.0, "p50": 80.0, "p90": 90.0, "p99": 99.0},
                   "tpot_ms": {"mean": 50.0, "p50": 50.0, "p90": 55.0, "p99": 60.0},
                   "itl_ms": {"mean": 50.0, "p50": 50.0, "p90": 55.0, "p99": 60.0}})
        };
        let parallel = json!({"model": "m.gguf", "n_ctx": 1024, "kv_cache_bytes": 1 << 20,
                              "runs": [run(1, 20.0), run(2, 36.0)]});
        let inputs = [
            input("p.json", ResultKind::Perplexity, perplexity(16.0)),
            input("w.json", ResultKind::Parallel, parallel),
        ];
        let rendered = render(&inputs, &options()).unwrap();
        let md = &rendered.markdown;
        assert!(
            md.contains("## Perplexity") && md.contains("## Parallel scaling"),
            "{md}"
        );
        assert!(
            rendered
                .charts
                .iter()
                .all(|c| c.file_name.starts_with("r-")),
            "chart names follow the prefix"
        );
    }
}
