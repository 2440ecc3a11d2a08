//! `load` results: each run's throughput and latency, the concurrency
//! sweep with its interactive sweet spot and peak, and several servers side
//! by side with ratios to the first.

use super::*;
use crate::report::views::LoadRunView;

/// Time-to-first-token p99 a user still calls interactive.
pub const TTFT_BUDGET_MS: f64 = 2000.0;

fn ms(v: Option<f64>) -> String {
    opt_f(v, |x| format!("{x:.1}"))
}

pub(super) fn load_section(
    md: &mut String,
    charts: &mut Vec<Chart>,
    results: &[(&Input, LoadResult)],
    opts: &Options,
) -> Result<(), ReportError> {
    w!(md, "## Serving load\n");
    for (input, l) in results {
        w!(
            md,
            "### `{}`: {}{}\n",
            input.name,
            l.base_url,
            l.model_id
                .as_deref()
                .map(|m| format!(", model `{m}`"))
                .unwrap_or_default()
        );
        let rows = l
            .runs
            .iter()
            .map(|r| {
                vec![
                    r.scenario.clone(),
                    format!("{} → {}", r.input_len, r.output_len),
                    r.max_concurrency.map_or("∞".into(), |c| c.to_string()),
                    format!("{}/{}", r.completed, r.completed + r.failed),
                    format!("{:.2}", r.request_throughput),
                    format!("{:.1}", r.output_throughput),
                    format!("{:.1}", r.total_token_throughput),
                    format!("{:.1}", r.mean_ttft_ms),
                    ms(r.p99_ttft_ms),
                    format!("{:.1}", r.mean_tpot_ms),
                    ms(r.p99_tpot_ms),
                    ms(r.p99_itl_ms),
                    ms(r.p99_e2el_ms),
                ]
            })
            .collect();
        w!(
            md,
            "{}\n",
            table(
                strings([
                    "Scenario",
                    "Tokens in → out",
                    "Concurrency",
                    "OK",
                    "req/s",
                    "Output tok/s",
                    "Total tok/s",
                    "TTFT mean",
                    "TTFT p99",
                    "TPOT mean",
                    "TPOT p99",
                    "ITL p99",
                    "E2EL p99",
                ]),
                rows,
                2
            )
        );
        sweep(md, l, opts);
    }
    // Every result's sweep in one SVG chart.
    let series: Vec<charts::Series> = results
        .iter()
        .filter(|(_, l)| sweep_runs(l).len() >= 2)
        .map(|(input, l)| charts::Series {
            name: input.name.clone(),
            points: sweep_runs(l)
                .iter()
                .map(|r| (r.max_concurrency.unwrap_or(0) as f64, r.output_throughput))
                .collect(),
        })
        .collect();
    if !series.is_empty() {
        let svg = charts::line_chart(
            "Output throughput vs concurrency",
            "concurrency",
            "output tokens/s",
            &series,
            None,
        )?;
        chart_link(
            md,
            charts,
            opts,
            "load-sweep",
            "output throughput vs concurrency",
            svg,
        );
    }
    if results.len() > 1 {
        side_by_side(md, results);
    }
    Ok(())
}

/// A result's sweep steps (scenario `sweep`), by concurrency.
fn sweep_runs(l: &LoadResult) -> Vec<&LoadRunView> {
    let mut runs: Vec<&LoadRunView> = l
        .runs
        .iter()
        .filter(|r| r.scenario == "sweep" && r.max_concurrency.is_some())
        .collect();
    runs.sort_by_key(|r| r.max_concurrency);
    runs
}

/// The sweep step with the most output throughput.
pub(super) fn peak(l: &LoadResult) -> Option<&LoadRunView> {
    sweep_runs(l)
        .into_iter()
        .max_by(|a, b| a.output_throughput.total_cmp(&b.output_throughput))
}

/// The interactive sweet spot: the sweep step with the most output whose
/// TTFT p99 and TPOT p99 stay within the budgets.
pub(super) fn sweet_spot<'l>(l: &'l LoadResult, opts: &Options) -> Option<&'l LoadRunView> {
    sweep_runs(l)
        .into_iter()
        .filter(|r| {
            r.p99_ttft_ms.is_some_and(|t| t <= TTFT_BUDGET_MS)
                && r.p99_tpot_ms.is_some_and(|t| t <= opts.tpot_budget_ms)
        })
        .max_by(|a, b| a.output_throughput.total_cmp(&b.output_throughput))
}

/// The concurrency sweep: a mermaid chart of output throughput, the
/// interactive sweet spot (highest per-user speed within the TTFT and TPOT
/// p99 budgets) and the peak.
fn sweep(md: &mut String, l: &LoadResult, opts: &Options) {
    let runs = sweep_runs(l);
    if runs.len() < 2 {
        return;
    }
    let xs: Vec<String> = runs
        .iter()
        .map(|r| r.max_concurrency.unwrap_or(0).to_string())
        .collect();
    let ys: Vec<String> = runs
        .iter()
        .map(|r| format!("{:.1}", r.output_throughput))
        .collect();
    let top = runs.iter().map(|r| r.output_throughput).fold(0.0, f64::max);
    w!(md, "```mermaid");
    w!(md, "xychart-beta");
    w!(md, "    title \"Output throughput by concurrency\"");
    w!(md, "    x-axis \"concurrency\" [{}]", xs.join(", "));
    w!(
        md,
        "    y-axis \"output tok/s\" 0 --> {:.0}",
        (top * 1.1).ceil()
    );
    w!(md, "    line [{}]", ys.join(", "));
    w!(md, "```\n");
    let (peak, sweet) = (peak(l), sweet_spot(l, opts));
    if let Some(p) = peak {
        w!(
            md,
            "- Peak throughput: **{:.1} output tok/s at concurrency {}** (TTFT p99 {} ms, TPOT p99 {} ms).",
            p.output_throughput,
            p.max_concurrency.unwrap_or(0),
            ms(p.p99_ttft_ms),
            ms(p.p99_tpot_ms)
        );
    }
    match sweet {
        Some(s) => {
            w!(
            md,
            "- Interactive sweet spot (TTFT p99 ≤ {TTFT_BUDGET_MS:.0} ms, TPOT p99 ≤ {:.0} ms; the concurrency with the most output within both): **concurrency {}**, {:.1} output tok/s, {:.1} tok/s per user.\n",
            opts.tpot_budget_ms,
            s.max_concurrency.unwrap_or(0),
            s.output_throughput,
            s.per_user_tps()
        );
        }
        None => {
            w!(
            md,
            "- No concurrency of the sweep kept TTFT p99 ≤ {TTFT_BUDGET_MS:.0} ms and TPOT p99 ≤ {:.0} ms.\n",
            opts.tpot_budget_ms
        );
        }
    }
}

/// Runs that share scenario, shape and concurrency, one column per result,
/// with the ratio to the first.
fn side_by_side(md: &mut String, results: &[(&Input, LoadResult)]) {
    w!(md, "### Side by side\n");
    let mut keys: Vec<String> = Vec::new();
    for (_, l) in results {
        for r in &l.runs {
            if !keys.contains(&r.key()) {
                keys.push(r.key());
            }
        }
    }
    let mut header = vec!["Run".to_string()];
    for (i, (input, _)) in results.iter().enumerate() {
        header.push(format!("`{}` output tok/s", input.name));
        header.push(format!("`{}` TTFT p99", input.name));
        header.push(format!("`{}` TPOT p99", input.name));
        if i > 0 {
            header.push("output ÷ first".into());
        }
    }
    let rows = keys
        .iter()
        .map(|k| {
            let mut row = vec![k.clone()];
            let first = results[0].1.runs.iter().find(|r| &r.key() == k);
            for (i, (_, l)) in results.iter().enumerate() {
                let run = l.runs.iter().find(|r| &r.key() == k);
                row.push(opt_f(run.map(|r| r.output_throughput), |v| {
                    format!("{v:.1}")
                }));
                row.push(ms(run.and_then(|r| r.p99_ttft_ms)));
                row.push(ms(run.and_then(|r| r.p99_tpot_ms)));
                if i > 0 {
                    let r = match (run, first) {
                        (Some(a), Some(b)) => ratio(a.output_throughput, b.output_throughput),
                        _ => None,
                    };
                    row.push(opt_f(r, |v| format!("{v:.2}×")));
                }
            }
            row
        })
        .collect();
    w!(md, "{}\n", table(header, rows, 1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::saved::{BuildFacts, ResultKind};

    fn run(scenario: &str, c: u64, out_tps: f64, ttft: f64, tpot: f64) -> serde_json::Value {
        serde_json::json!({
            "scenario": scenario, "input_len": 64, "output_len": 16, "max_concurrency": c,
            "completed": 8, "failed": 0, "request_throughput": 1.0, "output_throughput": out_tps,
            "total_token_throughput": out_tps * 5.0, "mean_ttft_ms": ttft / 2.0, "p99_ttft_ms": ttft,
            "mean_tpot_ms": tpot / 2.0, "p99_tpot_ms": tpot, "p99_itl_ms": tpot, "p99_e2el_ms": 900.0,
        })
    }

    fn input(name: &str, runs: Vec<serde_json::Value>) -> Input {
        Input {
            name: name.into(),
            saved: crate::report::saved::SavedResult {
                schema: crate::report::saved::SCHEMA,
                kind: ResultKind::Load,
                command_line: vec!["rbench".into(), "load".into()],
                created: "2026-12-05T00:00:00Z".into(),
                build: BuildFacts::current(),
                model: None,
                more_models: vec![],
                hardware: crate::system::Hardware::detect(),
                result: serde_json::json!({"base_url": "http://127.0.0.1:8080", "backend": "openai", "model_id": "m", "runs": runs}),
            },
        }
    }

    #[test]
    fn sweep_sweet_spot_peak_and_side_by_side_ratios() {
        let a = input(
            "rbench.json",
            vec![
                run("sweep", 2, 70.0, 200.0, 25.0),
                run("sweep", 8, 108.0, 700.0, 70.0),
                run("sweep", 32, 110.0, 4500.0, 40.0),
            ],
        );
        let b = input(
            "llama.json",
            vec![
                run("sweep", 2, 35.0, 240.0, 37.0),
                run("sweep", 8, 54.0, 800.0, 85.0),
            ],
        );
        let r = render(&[a, b], &Options::new("r")).unwrap();
        let md = &r.markdown;
        assert!(md.contains("## Serving load"), "{md}");
        assert!(md.contains("xychart-beta"));
        assert_eq!(r.charts.len(), 1);
        assert!(r.charts[0].svg.contains("<svg"));
        assert!(
            md.contains("Peak throughput: **110.0 output tok/s at concurrency 32**"),
            "{md}"
        );
        // 32 breaks the TTFT budget; 8 gives the most within it.
        assert!(
            md.contains("sweet spot") && md.contains("**concurrency 8**"),
            "{md}"
        );
        assert!(md.contains("### Side by side"));
        assert!(md.contains("0.50×"), "{md}");
        // The run only the first has: no ratio.
        assert!(md
            .lines()
            .any(|l| l.starts_with("| sweep 64→16 c32") && l.contains('–')));
    }
}
