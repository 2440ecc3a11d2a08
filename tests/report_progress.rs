//! Progress bars: drawn on a terminal (driven here under a pseudo-terminal
//! with util-linux `script`), absent from pipes and with `--quiet`.

mod common;

use common::{cache_dir, rbench};
use std::process::Command;

const BENCH: [&str; 11] = [
    "bench",
    "-m",
    "synth:llama-15m",
    "-p",
    "16",
    "-n",
    "4",
    "-r",
    "3",
    "-t",
    "1",
];

/// Runs rbench with `args` under a pseudo-terminal; `None` when `script` is missing.
fn under_pty(args: &[&str]) -> Option<String> {
    let mut cmd = vec![env!("CARGO_BIN_EXE_rbench").to_string()];
    cmd.extend(args.iter().map(|s| s.to_string()));
    let line = cmd.join(" ");
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("RBENCH_CACHE_DIR", cache_dir())
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) => {
            assert!(
                o.status.success(),
                "script: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Some(String::from_utf8_lossy(&o.stdout).into_owned())
        }
        Err(e) => {
            eprintln!("skipped progress-bar pty test: `script` (util-linux) not available: {e}");
            None
        }
    }
}

#[test]
fn a_terminal_gets_a_bar_with_eta() {
    let Some(tty) = under_pty(&BENCH) else { return };
    assert!(tty.contains("ETA"), "no bar in:\n{tty}");
    assert!(
        tty.contains("\x1b["),
        "no terminal control codes in:\n{tty}"
    );
    // The results table is still there.
    assert!(tty.contains("| tg4"), "{tty}");
    let mut quiet = BENCH.to_vec();
    quiet.push("--quiet");
    let Some(tty) = under_pty(&quiet) else { return };
    assert!(!tty.contains("ETA"), "--quiet still drew a bar:\n{tty}");
}

#[test]
fn a_pipe_gets_no_escape_codes() {
    let out = rbench(&BENCH);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains('\x1b'),
        "escape codes on a piped stderr: {err:?}"
    );
    assert!(!err.contains("ETA"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("| tg4"));
}
