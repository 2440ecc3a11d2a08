//! `perplexity` results.

use super::*;

pub(super) fn perplexity_section(md: &mut String, results: &[(&Input, PerplexityResult)]) {
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
