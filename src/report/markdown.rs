//! `rbench report`: one Markdown document from saved results, with SVG charts
//! to write beside it and a mermaid chart inline. Several results of one kind
//! are laid side by side with ratios to the first.

use super::analysis::{self, TPOT_BUDGET_MS};
use super::charts::{self, Series};
use super::saved::{ModelIdentity, SavedResult};
use super::views::{
    AnalyzeResult, BenchEntry, LengthStats, ParallelResult, ParallelRun, PerplexityResult, View,
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

/// A table row: its name and how to compute its cell from one column's source.
type Fact<T> = (&'static str, fn(&T) -> String);

/// A Markdown table; columns from `right_from` on are right-aligned.
fn table(header: Vec<String>, rows: Vec<Vec<String>>, right_from: usize) -> String {
    crate::format::table(&header, rows, crate::format::numbers_from(right_from))
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
}

fn split(inputs: &[Input]) -> Result<Sections<'_>, ReportError> {
    let mut s = Sections {
        bench: Vec::new(),
        parallel: Vec::new(),
        analyze: Vec::new(),
        perplexity: Vec::new(),
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

fn system_table(md: &mut String, inputs: &[Input]) {
    w!(md, "## System\n");
    // One column per distinct machine.
    let mut machines: Vec<(Vec<&str>, &SavedResult)> = Vec::new();
    for i in inputs {
        let h = &i.saved.hardware;
        let same = |o: &Hardware| {
            o.cpu_model == h.cpu_model
                && o.logical_cores == h.logical_cores
                && o.ram_total_bytes == h.ram_total_bytes
                && o.kernel == h.kernel
        };
        match machines.iter_mut().find(|(_, s)| same(&s.hardware)) {
            Some((names, _)) => names.push(&i.name),
            None => machines.push((vec![&i.name], &i.saved)),
        }
    }
    let mut header = vec![String::new()];
    header.extend(machines.iter().map(|(names, _)| {
        if machines.len() == 1 {
            "value".to_string()
        } else {
            names.join(", ")
        }
    }));
    let facts: [Fact<SavedResult>; 11] = [
        ("CPU", |s| {
            s.hardware
                .cpu_model
                .clone()
                .unwrap_or_else(|| "unknown".into())
        }),
        ("Cores", |s| match s.hardware.physical_cores {
            Some(p) => format!("{p} physical, {} logical", s.hardware.logical_cores),
            None => format!("{} logical", s.hardware.logical_cores),
        }),
        ("SIMD (ggml)", |s| s.hardware.cpu_features.join(" ")),
        ("Last-level cache", |s| {
            s.hardware
                .last_level_cache_bytes
                .map_or_else(|| "unknown".into(), bytes)
        }),
        ("RAM", |s| {
            let t = s
                .hardware
                .ram_total_bytes
                .map(bytes)
                .unwrap_or_else(|| "unknown".into());
            match s.hardware.ram_available_bytes {
                Some(a) => format!("{t} ({} available)", bytes(a)),
                None => t,
            }
        }),
        ("Memory read bandwidth", |s| {
            match &s.hardware.memory_bandwidth {
                Some(b) => format!(
                    "{:.2} GB/s 1 thread, {:.2} GB/s {} threads",
                    b.single_thread_gbs, b.all_threads_gbs, b.threads
                ),
                None => "not measured".into(),
            }
        }),
        ("OS", |s| {
            s.hardware.os.clone().unwrap_or_else(|| "unknown".into())
        }),
        ("Kernel", |s| {
            s.hardware
                .kernel
                .clone()
                .unwrap_or_else(|| "unknown".into())
        }),
        ("Backend", |s| s.hardware.backend.clone()),
        ("GPU", |s| {
            s.hardware.gpu.clone().unwrap_or_else(|| "none".into())
        }),
        ("rbench", |s| {
            format!(
                "{} (commit {}, ggml {}, {} {})",
                s.build.rbench_version,
                s.build.git_commit,
                s.build.ggml_version,
                s.build.target,
                s.build.profile
            )
        }),
    ];
    let rows = facts
        .iter()
        .map(|(name, f)| {
            let mut row = vec![name.to_string()];
            row.extend(machines.iter().map(|(_, s)| f(s)));
            row
        })
        .collect();
    w!(md, "{}\n", table(header, rows, usize::MAX));
}

fn model_table(md: &mut String, inputs: &[Input]) {
    let mut models: Vec<&ModelIdentity> = Vec::new();
    for i in inputs {
        for m in i.saved.models() {
            if !models
                .iter()
                .any(|o| o.sha256_first_mib == m.sha256_first_mib && o.file_size == m.file_size)
            {
                models.push(m);
            }
        }
    }
    if models.is_empty() {
        return;
    }
    w!(md, "## Models\n");
    let mut header = vec![String::new()];
    header.extend(models.iter().map(|m| m.label()));

    let facts: [Fact<ModelIdentity>; 12] = [
        ("Name", |m| m.name.clone().unwrap_or_else(|| "–".into())),
        ("Architecture", |m| m.architecture.clone()),
        ("Parameters", |m| params(m.n_params)),
        ("Tensor data (read per token)", |m| bytes(m.model_size)),
        ("File type", |m| m.file_type.clone()),
        ("File size", |m| bytes(m.file_size)),
        ("Layers", |m| opt(m.n_layer)),
        ("Embedding width", |m| opt(m.n_embd)),
        ("Training context", |m| opt(m.context_length)),
        ("Synthetic", |m| {
            if m.synthetic {
                "yes (random weights)".into()
            } else {
                "no".into()
            }
        }),
        ("Path", |m| format!("`{}`", m.path)),
        ("sha256 of first MiB", |m| {
            format!(
                "`{}…`",
                m.sha256_first_mib.get(..16).unwrap_or(&m.sha256_first_mib)
            )
        }),
    ];
    let rows = facts
        .iter()
        .map(|(name, f)| {
            let mut row = vec![name.to_string()];
            row.extend(models.iter().map(|m| f(m)));
            row
        })
        .collect();
    w!(md, "{}\n", table(header, rows, usize::MAX));
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

fn bench_section(
    md: &mut String,
    charts: &mut Vec<Chart>,
    series: &[BenchSeries],
    opts: &Options,
) -> Result<(), ReportError> {
    w!(md, "## Speed tests (pp / tg)\n");
    let mut keys: Vec<String> = Vec::new();
    for s in series {
        for r in &s.rows {
            if !keys.contains(&s.key(r)) {
                keys.push(s.key(r));
            }
        }
    }
    let mut header = vec!["Test".to_string()];
    header.extend(series.iter().map(|s| format!("{} t/s", s.name)));
    let base = &series[0];
    header.extend(
        series
            .iter()
            .skip(1)
            .map(|s| format!("{} ÷ {}", s.name, base.name)),
    );
    let rows = keys
        .iter()
        .map(|k| {
            let mut row = vec![k.clone()];
            row.extend(series.iter().map(|s| match s.get(k) {
                Some(r) => format!("{:.2} ± {:.2}", r.avg_ts, r.stddev_ts),
                None => "–".into(),
            }));
            row.extend(
                series
                    .iter()
                    .skip(1)
                    .map(|s| match (s.get(k), base.get(k)) {
                        (Some(n), Some(o)) => {
                            ratio_cell((n.avg_ts, n.stddev_ts), (o.avg_ts, o.stddev_ts))
                        }
                        _ => "–".into(),
                    }),
            );
            row
        })
        .collect();
    w!(md, "{}\n", table(header, rows, 1));
    let mut note = "t/s is the mean ± sample standard deviation over the repetitions.".to_string();
    if series.len() > 1 {
        note.push_str(" Ratios in bold differ by more than the two runs' spread (sd + sd).");
    }
    if !base.with_threads {
        let t: Vec<String> = series
            .iter()
            .filter_map(|s| s.rows.first())
            .map(|r| r.n_threads.to_string())
            .collect();
        note.push_str(&format!(" Threads: {}.", t.join(", ")));
    }
    w!(md, "{note}\n");
    // Short category names when the test name alone is unique.
    let names: Vec<String> = keys
        .iter()
        .map(|k| {
            let short = k.split(" · ").next().unwrap_or(k).to_string();
            let unique = keys
                .iter()
                .filter(|o| o.split(" · ").next() == Some(short.as_str()))
                .count()
                == 1;
            if unique {
                short
            } else {
                k.clone()
            }
        })
        .collect();
    let values: Vec<(String, Vec<f64>)> = series
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                keys.iter()
                    .map(|k| s.get(k).map_or(0.0, |r| r.avg_ts))
                    .collect(),
            )
        })
        .collect();
    let svg = charts::bar_chart(
        "Prompt processing and generation speed",
        "tokens/s",
        &names,
        &values,
    )?;
    chart_link(md, charts, opts, "speed", "prompt vs generation t/s", svg);
    w!(md, "```mermaid\nxychart-beta\n    title \"Tokens per second by test\"\n    x-axis [{}]\n    y-axis \"t/s\"", mermaid_labels(&names));
    for (_, v) in &values {
        w!(md, "    bar [{}]", mermaid_values(v));
    }
    w!(md, "```\n");
    if series.len() > 1 {
        let order: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        w!(md, "Bars in order: {}.\n", order.join("; "));
    }
    w!(md, "### Bottleneck\n");
    let mut any = false;
    for s in series {
        for r in &s.rows {
            let line = if r.is_tg() {
                match bandwidth_gbs(&s.input.saved.hardware, r.n_threads) {
                    Some(bw) => analysis::tg_sentence(r, bw, s.input.saved.hardware.last_level_cache_bytes),
                    None => Some(format!("{} on {}: no measured memory bandwidth in `{}` (run `rbench sysinfo` for it).", r.test_name(), r.model_label(), s.input.name)),
                }
            } else if r.is_pp() {
                analysis::pp_sentence(r)
            } else {
                None
            };
            if let Some(l) = line {
                w!(md, "- {l}");
                any = true;
            }
        }
    }
    if any {
        w!(md, "\nBytes per token are the model's tensor bytes: generation reads every weight once per token (an upper estimate where the token-embedding table is not also the output matrix).\n");
    } else {
        w!(md, "No plain pp or tg test to reason about.\n");
    }
    Ok(())
}

fn latency_rows(r: &ParallelRun) -> Vec<Vec<String>> {
    [("TTFT", r.ttft_ms), ("TPOT", r.tpot_ms), ("ITL", r.itl_ms)]
        .into_iter()
        .filter_map(|(name, l)| {
            let l = l?;
            Some(vec![
                r.workers.to_string(),
                name.to_string(),
                format!("{:.1}", l.mean),
                format!("{:.1}", l.p50),
                format!("{:.1}", l.p90),
                format!("{:.1}", l.p99),
            ])
        })
        .collect()
}

fn opt_f(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

fn parallel_section(
    md: &mut String,
    charts: &mut Vec<Chart>,
    results: &[(&Input, ParallelResult)],
    opts: &Options,
) -> Result<(), ReportError> {
    w!(md, "## Parallel scaling\n");
    for (input, p) in results {
        if results.len() > 1 {
            w!(md, "### `{}`\n", input.name);
        }
        let mut facts = Vec::new();
        if let Some(n) = p.n_ctx {
            facts.push(format!("n_ctx {n}"));
        }
        if let Some(b) = p.kv_cache_bytes {
            facts.push(format!("KV cache {}", bytes(b)));
        }
        if !facts.is_empty() {
            w!(md, "{}.\n", facts.join(", "));
        }
        let rows = p
            .runs
            .iter()
            .map(|r| {
                vec![
                    r.workers.to_string(),
                    r.total_prompt_tokens().to_string(),
                    r.total_output_tokens().to_string(),
                    r.kv_cells
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "–".into()),
                    format!("{:.2}", r.prompt_tps),
                    format!("{:.2}", r.gen_tps),
                    format!("{:.2}", r.overall_tps),
                    opt_f(r.speedup, |s| format!("{s:.2}×")),
                    opt_f(r.efficiency, |e| format!("{:.0}%", e * 100.0)),
                ]
            })
            .collect();
        let header = strings(crate::bench::parallel::SCALING_HEADER);
        w!(md, "{}\n", table(header, rows, 0));
        w!(
            md,
            "Speedup is generation t/s against 1 worker; efficiency is speedup ÷ workers.\n"
        );
        let lat: Vec<Vec<String>> = p.runs.iter().flat_map(latency_rows).collect();
        if !lat.is_empty() {
            w!(md, "Latency per request, ms (TTFT: time to first token; TPOT: time per output token; ITL: inter-token latency):\n");
            w!(
                md,
                "{}\n",
                table(
                    strings(["Workers", "Metric", "mean", "p50", "p90", "p99"]),
                    lat,
                    2
                )
            );
        }
        w!(md, "**Scaling analysis.**");
        let model_bytes = input.saved.model.as_ref().map_or(0, |m| m.model_size);
        let bw = input
            .saved
            .hardware
            .memory_bandwidth
            .as_ref()
            .map(|b| b.all_threads_gbs);
        for line in analysis::scaling_sentences(&p.runs, model_bytes, bw, opts.tpot_budget_ms) {
            w!(md, "- {line}");
        }
        w!(md);
    }
    if results.len() > 1 {
        side_by_side_parallel(md, results);
    }
    let label = |input: &Input, what: &str| {
        if results.len() > 1 {
            format!("{} {what}", input.name)
        } else {
            what.to_string()
        }
    };
    let mut throughput = Vec::new();
    let mut efficiency = Vec::new();
    for (input, p) in results {
        let pts =
            |f: fn(&ParallelRun) -> f64| p.runs.iter().map(|r| (r.workers as f64, f(r))).collect();
        throughput.push(Series {
            name: label(input, "generation t/s"),
            points: pts(|r| r.gen_tps),
        });
        throughput.push(Series {
            name: label(input, "overall t/s"),
            points: pts(|r| r.overall_tps),
        });
        efficiency.push(Series {
            name: label(input, "efficiency %"),
            points: p
                .runs
                .iter()
                .filter_map(|r| Some((r.workers as f64, r.efficiency? * 100.0)))
                .collect(),
        });
    }
    let svg = charts::line_chart(
        "Throughput vs workers",
        "workers",
        "tokens/s",
        &throughput,
        None,
    )?;
    chart_link(md, charts, opts, "throughput", "throughput vs workers", svg);
    let svg = charts::line_chart(
        "Efficiency vs workers",
        "workers",
        "efficiency %",
        &efficiency,
        Some((analysis::LOW_EFFICIENCY * 100.0, "75% line")),
    )?;
    chart_link(md, charts, opts, "efficiency", "efficiency vs workers", svg);
    if let Some((_, p)) = results.first() {
        let workers: Vec<String> = p.runs.iter().map(|r| r.workers.to_string()).collect();
        let overall: Vec<f64> = p.runs.iter().map(|r| r.overall_tps).collect();
        let gen: Vec<f64> = p.runs.iter().map(|r| r.gen_tps).collect();
        w!(md, "```mermaid\nxychart-beta\n    title \"Overall (bars) and generation (line) t/s vs workers\"\n    x-axis \"workers\" [{}]\n    y-axis \"t/s\"\n    bar [{}]\n    line [{}]\n```\n", mermaid_labels(&workers), mermaid_values(&overall), mermaid_values(&gen));
    }
    Ok(())
}

fn side_by_side_parallel(md: &mut String, results: &[(&Input, ParallelResult)]) {
    w!(md, "### Side by side\n");
    let mut workers: Vec<u64> = results
        .iter()
        .flat_map(|(_, p)| p.runs.iter().map(|r| r.workers))
        .collect();
    workers.sort_unstable();
    workers.dedup();
    let base = &results[0];
    let mut header = vec!["Workers".to_string()];
    header.extend(
        results
            .iter()
            .map(|(i, _)| format!("{} overall t/s", i.name)),
    );
    header.extend(
        results
            .iter()
            .skip(1)
            .map(|(i, _)| format!("{} ÷ {}", i.name, base.0.name)),
    );
    header.extend(
        results
            .iter()
            .map(|(i, _)| format!("{} efficiency", i.name)),
    );
    let find = |p: &ParallelResult, w: u64| p.runs.iter().find(|r| r.workers == w).cloned();
    let rows =
        workers
            .iter()
            .map(|&w| {
                let mut row = vec![w.to_string()];
                row.extend(
                    results.iter().map(|(_, p)| {
                        opt_f(find(p, w).map(|r| r.overall_tps), |v| format!("{v:.2}"))
                    }),
                );
                row.extend(results.iter().skip(1).map(|(_, p)| {
                    match (find(p, w), find(&base.1, w)) {
                        (Some(n), Some(o)) => {
                            opt_f(ratio(n.overall_tps, o.overall_tps), |r| format!("{r:.2}×"))
                        }
                        _ => "–".into(),
                    }
                }));
                row.extend(results.iter().map(|(_, p)| {
                    opt_f(find(p, w).and_then(|r| r.efficiency), |e| {
                        format!("{:.0}%", e * 100.0)
                    })
                }));
                row
            })
            .collect();
    w!(md, "{}\n", table(header, rows, 0));
}

fn stats_row(name: &str, s: &LengthStats) -> Vec<String> {
    let mut row = vec![
        name.to_string(),
        s.count.to_string(),
        format!("{:.1}", s.mean),
        format!("{:.1}", s.std),
    ];
    row.extend(
        [s.min, s.p50, s.p75, s.p90, s.p95, s.p99, s.max]
            .iter()
            .map(|v| format!("{v:.0}")),
    );
    row
}

fn analyze_section(
    md: &mut String,
    charts: &mut Vec<Chart>,
    results: &[(&Input, AnalyzeResult)],
    opts: &Options,
) -> Result<(), ReportError> {
    w!(md, "## Dataset analysis\n");
    for (n, (input, a)) in results.iter().enumerate() {
        if results.len() > 1 {
            w!(md, "### `{}`\n", input.name);
        }
        let tokenizer = match &a.tokenizer {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "unknown".into(),
        };
        w!(
            md,
            "{} records ({} skipped), shape {}, tokenizer {}.\n",
            a.records,
            a.skipped,
            a.shape.as_deref().unwrap_or("unknown"),
            tokenizer
        );
        let header = strings([
            "Tokens", "count", "mean", "std", "min", "p50", "p75", "p90", "p95", "p99", "max",
        ]);
        w!(
            md,
            "{}\n",
            table(
                header,
                vec![
                    stats_row("prompt", &a.prompt_tokens),
                    stats_row("output", &a.output_tokens)
                ],
                1
            )
        );
        let rec = &a.recommendation;
        w!(
            md,
            "Recommended: **-p {} -n {}**{}.\n",
            rec.n_prompt,
            rec.n_predict,
            rec.coverage
                .map(|c| format!(" ({:.1}% of outputs fit in -n)", c * 100.0))
                .unwrap_or_default()
        );
        if !a.tiers.is_empty() {
            let rows = a
                .tiers
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.n_predict.to_string(),
                        opt_f(t.coverage, |c| format!("{:.1}%", c * 100.0)),
                    ]
                })
                .collect();
            w!(
                md,
                "{}\n",
                table(strings(["Tier", "n-predict", "outputs covered"]), rows, 1)
            );
        }
        let prompt_cut = vec![(rec.n_prompt, format!("-p {}", rec.n_prompt))];
        let out_cuts = a
            .tiers
            .iter()
            .map(|t| (t.n_predict, format!("{} -n {}", t.name, t.n_predict)))
            .collect();
        let svg = charts::length_histograms(
            "Dataset length distributions (from percentiles)",
            &[
                ("prompt tokens", &a.prompt_tokens, prompt_cut),
                ("output tokens", &a.output_tokens, out_cuts),
            ],
        )?;
        let name = if results.len() > 1 {
            format!("dataset-{}", n + 1)
        } else {
            "dataset".into()
        };
        chart_link(md, charts, opts, &name, "dataset length histograms", svg);
        let q = |s: &LengthStats| vec![s.p50, s.p75, s.p90, s.p95, s.p99, s.max];
        w!(md, "```mermaid\nxychart-beta\n    title \"Prompt (first bars) and output token lengths by percentile\"\n    x-axis [\"p50\", \"p75\", \"p90\", \"p95\", \"p99\", \"max\"]\n    y-axis \"tokens\"\n    bar [{}]\n    bar [{}]\n```\n", mermaid_values(&q(&a.prompt_tokens)), mermaid_values(&q(&a.output_tokens)));
    }
    if results.len() > 1 {
        w!(md, "### Side by side\n");
        let base = &results[0];
        let mut header = vec![String::new()];
        header.extend(results.iter().map(|(i, _)| i.name.clone()));
        header.extend(
            results
                .iter()
                .skip(1)
                .map(|(i, _)| format!("{} ÷ {}", i.name, base.0.name)),
        );
        type Number = (&'static str, fn(&AnalyzeResult) -> f64);
        let facts: [Number; 6] = [
            ("prompt p50", |a| a.prompt_tokens.p50),
            ("prompt p95", |a| a.prompt_tokens.p95),
            ("output p50", |a| a.output_tokens.p50),
            ("output p90", |a| a.output_tokens.p90),
            ("-p", |a| a.recommendation.n_prompt as f64),
            ("-n", |a| a.recommendation.n_predict as f64),
        ];
        let rows = facts
            .iter()
            .map(|(name, f)| {
                let mut row = vec![name.to_string()];
                row.extend(results.iter().map(|(_, a)| format!("{:.0}", f(a))));
                row.extend(
                    results
                        .iter()
                        .skip(1)
                        .map(|(_, a)| opt_f(ratio(f(a), f(&base.1)), |r| format!("{r:.2}×"))),
                );
                row
            })
            .collect();
        w!(md, "{}\n", table(header, rows, 1));
    }
    Ok(())
}

fn perplexity_section(md: &mut String, results: &[(&Input, PerplexityResult)]) {
    w!(md, "## Perplexity\n");
    let base = &results[0].1;
    let rows = results
        .iter()
        .map(|(input, p)| {
            let vs = if std::ptr::eq(p, base) {
                "–".to_string()
            } else {
                ratio_cell((p.ppl, p.ppl_error), (base.ppl, base.ppl_error))
            };
            vec![
                format!("`{}`", input.name),
                p.model.clone(),
                p.file.clone(),
                format!("{:.4} ± {:.5}", p.ppl, p.ppl_error),
                format!("{} × {}", p.n_chunks, p.n_ctx),
                p.n_tokens_scored.to_string(),
                format!("{:.1} s", p.seconds),
                vs,
            ]
        })
        .collect();
    w!(
        md,
        "{}\n",
        table(
            strings([
                "Result",
                "Model",
                "Text",
                "PPL",
                "Chunks × ctx",
                "Tokens scored",
                "Time",
                "÷ first"
            ]),
            rows,
            3
        )
    );
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
    if !said {
        w!(md, "- No throughput measurement here: save `rbench pp` or `rbench parallel` results for this.");
    }
    w!(md);
}
