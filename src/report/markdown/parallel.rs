//! `parallel` results: scaling, latency, shared prefixes, side by side.

use super::*;

fn latency_rows(r: &ParallelRun) -> Vec<Vec<String>> {
    [
        ("TTFT", r.ttft_ms),
        ("TPOT", r.tpot_ms),
        ("ITL", r.itl_ms),
        ("E2E", r.e2e_ms),
    ]
    .into_iter()
    .filter_map(|(name, l)| {
        let l = l?;
        Some(vec![
            r.workers.to_string(),
            name.to_string(),
            format!("{:.1}", l.mean),
            format!("{:.1}", l.p50),
            format!("{:.1}", l.p90),
            format!("{:.1}", l.p95),
            format!("{:.1}", l.p99),
        ])
    })
    .collect()
}

pub(super) fn parallel_section(
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
            w!(md, "Latency per request, ms (TTFT: time to first token; TPOT: time per output token; ITL: inter-token latency; E2E: end to end):\n");
            w!(
                md,
                "{}\n",
                table(
                    strings(["Workers", "Metric", "mean", "p50", "p90", "p95", "p99"]),
                    lat,
                    2
                )
            );
        }
        let memory: Vec<Vec<String>> = p
            .runs
            .iter()
            .filter_map(|r| {
                let m = r.memory?;
                Some(vec![
                    r.workers.to_string(),
                    m.peak_rss_bytes.map_or("–".into(), bytes),
                    bytes(m.kv_bytes),
                    bytes(m.compute_buffer_bytes),
                ])
            })
            .collect();
        if !memory.is_empty() {
            w!(md, "Memory per worker count (peak resident set of the process, mapped weights included; KV in use; compute buffer):\n");
            w!(
                md,
                "{}\n",
                table(
                    strings(["Workers", "Peak RSS", "KV in use", "Compute buffer"]),
                    memory,
                    1
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
