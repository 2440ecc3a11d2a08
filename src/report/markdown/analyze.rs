//! `analyze` results: dataset shapes and length statistics.

use super::*;

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

pub(super) fn analyze_section(
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
