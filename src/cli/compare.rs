//! `rbench compare OLD.json NEW.json`: per test, old vs new, the ratio, and
//! whether the change exceeds the runs' spread.

use crate::report::compare::compare;
use crate::report::saved::SavedResult;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The earlier saved result (from `--save`).
    pub old: PathBuf,
    /// The later saved result, of the same command.
    pub new: PathBuf,
    /// Output format: md or json.
    #[arg(short = 'o', long = "output", default_value = "md", value_parser = ["md", "json"])]
    pub output: String,
}

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    let old = SavedResult::read(&args.old)?;
    let new = SavedResult::read(&args.new)?;
    let c = compare(&old, &new)?;
    if args.output == "json" {
        outln!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        outln!("{}", c.markdown());
        for note in &c.notes {
            outln!("note: {note}");
        }
        let changed = c
            .rows
            .iter()
            .filter(|r| r.beyond_spread == Some(true))
            .count();
        outln!(
            "\n{} of {} tests changed by more than their spread.",
            changed,
            c.rows.len()
        );
    }
    Ok(())
}
