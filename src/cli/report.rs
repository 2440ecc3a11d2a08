//! `rbench report A.json [B.json ...] -o report.md`: a Markdown report with
//! SVG charts written beside it.

use crate::report::markdown::{render, Input, Options};
use crate::report::saved::{write_atomically, SavedResult};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Saved results (`--save` of bench, pp, tg, parallel, analyze, perplexity).
    #[arg(required = true, value_name = "RESULT.json")]
    pub inputs: Vec<PathBuf>,
    /// The Markdown file to write; charts go beside it as NAME-*.svg.
    #[arg(short = 'o', long = "output", value_name = "REPORT.md")]
    pub output: PathBuf,
    /// TPOT p99 budget (ms) for the interactive recommendation.
    #[arg(long = "tpot-budget", default_value_t = crate::report::analysis::TPOT_BUDGET_MS)]
    pub tpot_budget: f64,
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    if !(args.tpot_budget > 0.0 && args.tpot_budget.is_finite()) {
        return Err(super::UsageError(format!(
            "--tpot-budget must be a positive number of milliseconds, got {}",
            args.tpot_budget
        ))
        .into());
    }
    let mut inputs = Vec::with_capacity(args.inputs.len());
    for path in &args.inputs {
        let saved = SavedResult::read(path)?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        inputs.push(Input { name, saved });
    }
    let stem = args.output.file_stem().map_or_else(
        || "report".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let mut opts = Options::new(&stem);
    opts.tpot_budget_ms = args.tpot_budget;
    let rendered = render(&inputs, &opts)?;
    let dir = match args.output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    for chart in &rendered.charts {
        write_atomically(&dir.join(&chart.file_name), chart.svg.as_bytes())?;
    }
    write_atomically(&args.output, rendered.markdown.as_bytes())?;
    eprintln!(
        "wrote {} and {} chart(s) beside it",
        args.output.display(),
        rendered.charts.len()
    );
    Ok(())
}
