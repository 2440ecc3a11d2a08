//! Ctrl-C. The first SIGINT only raises a flag: long commands check it
//! between steps (a benchmark repetition, a perplexity chunk), print what
//! finished and exit with [`EXIT_INTERRUPTED`]. A second SIGINT exits at once,
//! for a step that takes too long.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// 128 + SIGINT, what shells report for a command stopped by Ctrl-C.
pub const EXIT_INTERRUPTED: i32 = 130;

static REQUESTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();
static INSTALLED: OnceLock<std::io::Result<()>> = OnceLock::new();

/// The command stopped early on a user's Ctrl-C, after `done`.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by Ctrl-C after {done}")]
pub struct Interrupted {
    /// What finished, e.g. "2 of 6 tests".
    pub done: String,
}

fn flag() -> &'static Arc<AtomicBool> {
    REQUESTED.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Installs the SIGINT handlers; later calls do nothing (and return the
/// first call's outcome).
pub fn install() -> Result<(), String> {
    INSTALLED
        .get_or_init(|| {
            let f = flag();
            // Registered first, so it sees the flag as it was before this
            // signal: set only if an earlier Ctrl-C already asked to stop.
            signal_hook::flag::register_conditional_shutdown(
                signal_hook::consts::SIGINT,
                EXIT_INTERRUPTED,
                Arc::clone(f),
            )?;
            signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(f))?;
            Ok(())
        })
        .as_ref()
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))
        .map(|_| ())
}

/// Whether Ctrl-C was pressed: stop after the current step.
pub fn requested() -> bool {
    REQUESTED.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_says_what_finished() {
        // Signals are tested on the binary (tests/hostile_cli.rs): raising
        // SIGINT here would reach every test of this process.
        let e = Interrupted {
            done: "1 of 3 tests".into(),
        };
        assert_eq!(e.to_string(), "interrupted by Ctrl-C after 1 of 3 tests");
    }
}
