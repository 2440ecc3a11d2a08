//! Progress bars on stderr (indicatif) for long work: model loading,
//! synthetic-model generation, benchmark repetitions. Drawn only when stderr
//! is a terminal and `--quiet` is off, so pipes and logs never get escape
//! codes, and stdout (the results) is never touched.

use crate::model::weights::LoadOptions;
use crate::model::Model;
use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static QUIET: AtomicBool = AtomicBool::new(false);

/// `--quiet`: no bars, whatever stderr is.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Whether bars are drawn.
pub fn enabled() -> bool {
    !quiet() && std::io::stderr().is_terminal()
}

/// A bar or spinner that is either drawn or does nothing; cleared when dropped.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar of `len` steps with an ETA.
    pub fn bar(len: u64, message: impl Into<String>) -> Progress {
        if !enabled() {
            return Progress(None);
        }
        let style = ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} · {elapsed} elapsed · ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = ProgressBar::new(len)
            .with_style(style)
            .with_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress(Some(bar))
    }

    /// A spinner for work of unknown length.
    pub fn spinner(message: impl Into<String>) -> Progress {
        if !enabled() {
            return Progress(None);
        }
        let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar = ProgressBar::new_spinner()
            .with_style(style)
            .with_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress(Some(bar))
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    pub fn set_message(&self, message: impl Into<String>) {
        if let Some(b) = &self.0 {
            b.set_message(message.into());
        }
    }

    /// A line on stderr that does not tear the bar.
    pub fn println(&self, line: &str) {
        match &self.0 {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// Resolves a model argument (making a synthetic model on first use) and
/// loads it, with a spinner for each step.
pub fn load_model(spec: &str, opts: &LoadOptions) -> anyhow::Result<Model> {
    let path: PathBuf = {
        let _spin = spec.starts_with("synth:").then(|| {
            Progress::spinner(format!(
                "preparing {spec} (a synthetic model is made once, then cached)"
            ))
        });
        crate::model::resolve_model_path(spec)?
    };
    let spin = Progress::spinner(format!("loading {}", path.display()));
    let model = Model::load(&path, opts).with_context(|| {
        format!(
            "loading {} (check the path, or use synth:PRESET such as synth:llama-125m)",
            path.display()
        )
    })?;
    drop(spin);
    report_weight_copies(&model);
    Ok(model)
}

/// Says what memory the weights' extra copies take, when they have any.
pub fn report_weight_copies(model: &Model) {
    for note in [model.weights.twins_note(), model.weights.huge_copy_note()]
        .into_iter()
        .flatten()
    {
        eprintln!("{note}");
    }
}

/// Says where the layers went when any left the CPU.
pub fn report_placement(model: &Model) {
    if let Some(note) = model.weights.placement_note() {
        eprintln!("{note}");
    }
}
