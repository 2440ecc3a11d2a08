//! `bench` / `pp` / `tg` results: tables per model, ratios between files, charts.

use super::*;

pub(super) fn bench_section(
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
