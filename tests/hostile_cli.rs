//! The release binary against hostile command lines and files: every case
//! ends with the expected exit code (2 usage, 1 runtime, 130 interrupted;
//! never 101, a panic) and a stderr that names the problem.

mod common;

use rbench::model::synth::{self, SynthFtype};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const USAGE: i32 = 2;
const RUNTIME: i32 = 1;

/// Hostile files, written once per test into a tempdir.
struct Files {
    _dir: tempfile::TempDir,
    missing: PathBuf,
    directory: PathBuf,
    empty: PathBuf,
    garbage: PathBuf,
    truncated: PathBuf,
    header_only: PathBuf,
    text: PathBuf,
    tiny_text: PathBuf,
    not_utf8: PathBuf,
    fifo: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let model = p("llama-15m.gguf");
    synth::write_synthetic(
        synth::preset("llama-15m").unwrap(),
        SynthFtype::Q8_0,
        3,
        &model,
    )
    .unwrap();
    let bytes = std::fs::read(&model).unwrap();
    let data_offset = rbench::gguf::GgufFile::open(&model).unwrap().data_offset() as usize;
    std::fs::write(p("truncated.gguf"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(p("header_only.gguf"), &bytes[..data_offset]).unwrap();
    std::fs::write(p("empty.gguf"), b"").unwrap();
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 2_654_435_761) as u8).collect();
    std::fs::write(p("garbage.gguf"), garbage).unwrap();
    std::fs::create_dir(p("directory.gguf")).unwrap();
    std::fs::write(
        p("text.txt"),
        "Once upon a time there was a model. ".repeat(600),
    )
    .unwrap();
    std::fs::write(p("tiny.txt"), "hi").unwrap();
    std::fs::write(p("latin1.txt"), b"caf\xe9 cr\xe8me \xff\xfe").unwrap();
    // Opening a FIFO for reading waits for a writer: a model path must not.
    let fifo = p("fifo.gguf");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    Files {
        missing: p("missing.gguf"),
        directory: p("directory.gguf"),
        empty: p("empty.gguf"),
        garbage: p("garbage.gguf"),
        truncated: p("truncated.gguf"),
        header_only: p("header_only.gguf"),
        text: p("text.txt"),
        tiny_text: p("tiny.txt"),
        not_utf8: p("latin1.txt"),
        fifo,
        _dir: dir,
    }
}

fn rbench_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbench"));
    cmd.args(args)
        .env("RBENCH_CACHE_DIR", common::cache_dir())
        .env_remove("RBENCH_MEM_AVAILABLE");
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Case {
    args: Vec<String>,
    /// RBENCH_MEM_AVAILABLE, to pretend the machine has this many bytes.
    memory: Option<&'static str>,
    code: i32,
    stderr_has: Vec<&'static str>,
}

fn case(args: &[&str], code: i32, stderr_has: &[&'static str]) -> Case {
    Case {
        args: args.iter().map(|a| a.to_string()).collect(),
        memory: None,
        code,
        stderr_has: stderr_has.to_vec(),
    }
}

/// Runs every case, collecting all mismatches before failing.
fn check(cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let mut cmd = rbench_cmd(&args);
        if let Some(m) = c.memory {
            cmd.env("RBENCH_MEM_AVAILABLE", m);
        }
        let out = cmd.output().unwrap();
        let err = text(&out.stderr);
        let mut problems = Vec::new();
        if out.status.code() != Some(c.code) {
            problems.push(format!("exit {:?}, expected {}", out.status.code(), c.code));
        }
        for needle in &c.stderr_has {
            if !err.contains(needle) {
                problems.push(format!("stderr lacks {needle:?}"));
            }
        }
        if err.contains("panicked") || err.contains("RUST_BACKTRACE") {
            problems.push("panicked".into());
        }
        // One clear line: clap's own usage errors add a usage hint below it.
        let error_lines = err.lines().filter(|l| l.starts_with("error:")).count();
        if error_lines != 1 {
            problems.push(format!("{error_lines} error lines"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "rbench {} -> {}\n  stderr: {}",
                c.args.join(" "),
                problems.join("; "),
                err.trim().replace('\n', "\n          ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn hostile_model_files_are_refused_naming_the_problem() {
    let f = files();
    let mut cases = Vec::new();
    for cmd in [&["info", "-m"][..], &["tokenize", "-p", "hi", "-m"]] {
        let with = |p: &Path, code, needles: &[&'static str]| {
            let mut args = cmd.to_vec();
            args.push(s(p));
            case(&args, code, needles)
        };
        cases.push(with(&f.missing, RUNTIME, &["missing.gguf", "No such file"]));
        cases.push(with(
            &f.directory,
            RUNTIME,
            &["directory.gguf", "is a directory"],
        ));
        cases.push(with(&f.empty, RUNTIME, &["truncated header", "0 bytes"]));
        cases.push(with(&f.fifo, RUNTIME, &["fifo.gguf", "not a regular file"]));
        cases.push(with(
            Path::new("/dev/zero"),
            RUNTIME,
            &["/dev/zero", "not a regular file"],
        ));
        cases.push(with(&f.garbage, RUNTIME, &["bad magic", "offset 0"]));
        cases.push(with(&f.truncated, RUNTIME, &["tensor data", "tensor '"]));
        cases.push(with(&f.header_only, RUNTIME, &["tensor data", "tensor '"]));
    }
    cases.push(case(
        &["run", "-m", s(&f.garbage), "-p", "hi"],
        RUNTIME,
        &["bad magic"],
    ));
    cases.push(case(
        &["run", "-m", s(&f.truncated), "-p", "hi"],
        RUNTIME,
        &["tensor '"],
    ));
    cases.push(case(
        &["perplexity", "-m", s(&f.empty), "-f", s(&f.text)],
        RUNTIME,
        &["truncated header"],
    ));
    cases.push(case(
        &["info", "-m", "synth:nope"],
        RUNTIME,
        &["unknown synthetic model 'nope'"],
    ));
    check(&cases);
}

#[test]
fn bad_flags_are_usage_errors_and_impossible_runs_runtime_errors() {
    let f = files();
    let text = s(&f.text);
    fn run<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["run", "-m", "synth:llama-15m", "-p", "hi"];
        a.extend_from_slice(extra);
        a
    }
    let ppl = |extra: &[&'static str]| {
        let mut a = vec!["perplexity", "-m", "synth:llama-15m", "-f", text];
        a.extend_from_slice(extra);
        a
    };
    let out = f._dir.path().join("out.gguf");
    let out = s(&out);
    let in_missing_dir = f.missing.join("x.gguf");
    let mut cases = vec![
        case(&["frobnicate"], USAGE, &["frobnicate"]),
        case(&["info"], USAGE, &["--model"]),
        // run
        case(&run(&["-n", "0"]), USAGE, &["-n must be at least 1"]),
        case(&run(&["-n", "-5"]), USAGE, &["'-5'"]),
        case(&run(&["-n", "99999999999999999999999"]), USAGE, &["-n"]),
        case(&run(&["-n", "100", "-c", "64"]), USAGE, &["-n 100", "-c"]),
        case(&run(&["-t", "0"]), USAGE, &["-t"]),
        case(&run(&["-t", "100000"]), USAGE, &["100000", "maximum"]),
        case(&run(&["-c", "0"]), USAGE, &["-c"]),
        case(&run(&["-c", "99999999999"]), USAGE, &["-c", "maximum"]),
        case(&run(&["--temp=-1"]), USAGE, &["--temp"]),
        case(&run(&["--temp", "nan"]), USAGE, &["--temp"]),
        case(&run(&["--top-p", "1.5"]), USAGE, &["--top-p"]),
        case(&run(&["--min-p=-0.1"]), USAGE, &["--min-p"]),
        case(
            &run(&["--repeat-penalty", "0"]),
            USAGE,
            &["--repeat-penalty"],
        ),
        case(
            &run(&["--repeat-penalty", "inf"]),
            USAGE,
            &["--repeat-penalty"],
        ),
        case(&run(&["--top-k", "x"]), USAGE, &["--top-k"]),
        case(&run(&["--seed", "-1"]), USAGE, &["'-1'"]),
        case(&["run", "-p", ""], USAGE, &["prompt is empty"]),
        case(
            &run(&["--cache-type-v", "q8_0", "--flash-attn", "off"]),
            USAGE,
            &["needs flash attention"],
        ),
        case(&run(&["--cache-type-k", "q3"]), USAGE, &["--cache-type-k"]),
        case(&run(&["--flash-attn", "maybe"]), USAGE, &["maybe"]),
        // perplexity
        case(&ppl(&["-c", "4"]), USAGE, &["-c must be at least 8"]),
        case(&ppl(&["--chunks", "0"]), USAGE, &["--chunks"]),
        case(&ppl(&["-t", "0"]), USAGE, &["-t"]),
        case(&ppl(&["-t", "100000"]), USAGE, &["maximum"]),
        case(&ppl(&["-c", "99999999999"]), USAGE, &["maximum"]),
        case(
            &["perplexity", "-m", "synth:llama-15m", "-f", s(&f.missing)],
            RUNTIME,
            &["missing.gguf"],
        ),
        case(
            &["perplexity", "-m", "synth:llama-15m", "-f", s(&f.directory)],
            RUNTIME,
            &["directory.gguf", "directory"],
        ),
        case(
            &["perplexity", "-m", "synth:llama-15m", "-f", s(&f.not_utf8)],
            RUNTIME,
            &["latin1.txt", "UTF-8"],
        ),
        case(
            &["perplexity", "-m", "synth:llama-15m", "-f", s(&f.tiny_text)],
            RUNTIME,
            &["fewer than one chunk"],
        ),
        // tokenize
        case(&["tokenize", "-m", "synth:llama-15m"], USAGE, &["-p TEXT"]),
        case(
            &["tokenize", "-m", "synth:llama-15m", "-p", "a", "-f", text],
            USAGE,
            &["cannot be used with"],
        ),
        // synth
        case(
            &["synth", "--arch", "nope", "-o", out],
            USAGE,
            &["no synthetic preset 'nope'"],
        ),
        case(
            &["synth", "--arch", "llama-15m", "--ftype", "q5", "-o", out],
            USAGE,
            &["--ftype"],
        ),
        case(
            &["synth", "--arch", "llama-15m", "--seed", "-1", "-o", out],
            USAGE,
            &["'-1'"],
        ),
        case(
            &["synth", "--arch", "llama-15m", "-o", s(&in_missing_dir)],
            RUNTIME,
            &["x.gguf"],
        ),
        // pp / tg / bench
        case(&["bench", "-p", "0"], USAGE, &["-p"]),
        case(
            &["bench", "--kernels", "fast"],
            USAGE,
            &["--kernels", "fast"],
        ),
        case(&["tg", "--kernels", "ggml,"], USAGE, &["--kernels"]),
        case(
            &["parallel", "--kernels", "cuda"],
            USAGE,
            &["--kernels", "cuda"],
        ),
        case(&run(&["--kernels", "avx2"]), USAGE, &["--kernels"]),
        case(&["pp", "-t", "0"], USAGE, &["-t"]),
        case(&["bench", "-r", "0"], USAGE, &["-r"]),
        case(&["bench", "-r", "-1"], USAGE, &["'-1'"]),
        case(&["bench", "-b", "0"], USAGE, &["-b"]),
        case(&["bench", "-ub", "0"], USAGE, &["-ub"]),
        case(&["bench", "-d", "x"], USAGE, &["-d"]),
        case(&["bench", "-p", "99999999"], USAGE, &["-p"]),
        case(&["bench", "-t", "100000"], USAGE, &["maximum"]),
        case(&["pp", "-n", "5"], USAGE, &["rbench pp takes -p only"]),
        case(&["tg", "-p", "5"], USAGE, &["rbench tg takes -n only"]),
        case(&["bench", "-pg", "5"], USAGE, &["-pg"]),
        case(
            &["bench", "-ctv", "q8_0", "-fa", "off"],
            USAGE,
            &["flash attention"],
        ),
        case(&["bench", "-o", "xml"], USAGE, &["xml"]),
        // Runtime: an absurd context is refused before allocating, with the numbers.
        case(
            &run(&["-n", "4", "-c", "2000000000"]),
            RUNTIME,
            &["not enough memory", "KV cache", "-c", "q8_0"],
        ),
    ];
    // A machine with 24 MB: the 19 MiB model fits, its 4096-token context not.
    cases.push(Case {
        memory: Some("25000000"),
        ..case(
            &run(&["-n", "4", "-c", "4096"]),
            RUNTIME,
            &["not enough memory", "RBENCH_MEM_AVAILABLE", "-c"],
        )
    });
    // A machine with 1 MB: the model itself is larger than the RAM.
    cases.push(Case {
        memory: Some("1000000"),
        ..case(
            &run(&["-n", "4"]),
            RUNTIME,
            &["larger than this machine's RAM"],
        )
    });
    check(&cases);
}

/// Starts `args`, sends SIGINT (with the `kill` command) once stderr shows
/// `ready`, and returns the output of the stopped process.
fn interrupt_when(args: &[&str], ready: &str) -> Output {
    let mut child = rbench_cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let wanted = ready.to_string();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        let mut signalled = false;
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if !signalled && text(&seen).contains(&wanted) {
                signalled = true;
                let _ = tx.send(());
            }
        }
        seen
    });
    let start = Instant::now();
    let got_ready = rx.recv_timeout(Duration::from_secs(120)).is_ok();
    if got_ready {
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    } else {
        let _ = child.kill();
    }
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert!(
        got_ready,
        "never saw {ready:?} in {:.0} s: {}",
        start.elapsed().as_secs_f64(),
        text(&stderr)
    );
    Output {
        status,
        stdout: stdout.into_bytes(),
        stderr,
    }
}

#[test]
fn ctrl_c_stops_a_benchmark_after_the_current_repetition() {
    let out = interrupt_when(
        &[
            "bench",
            "-m",
            "synth:llama-15m",
            "-p",
            "512",
            "-r",
            "50",
            "--progress",
        ],
        "repetition 1/50",
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    // The interrupted test's finished repetitions are a row; tg128 never ran.
    assert!(stdout.contains("| pp512"), "{stdout}");
    assert!(!stdout.contains("tg128"), "{stdout}");
    assert!(
        !stderr.contains("repetition 50/50"),
        "ran to the end: {stderr}"
    );
    assert!(stderr.contains("interrupted by Ctrl-C"), "{stderr}");
}

#[test]
fn ctrl_c_stops_perplexity_after_the_current_chunk_with_a_partial_figure() {
    let f = files();
    let out = interrupt_when(
        &[
            "perplexity",
            "-m",
            "synth:llama-15m",
            "-f",
            s(&f.text),
            "-c",
            "64",
            "-t",
            "1",
        ],
        "[1]",
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stdout.contains("PPL = "), "{stdout}");
    assert!(stderr.contains("interrupted by Ctrl-C after"), "{stderr}");
    assert!(stderr.contains("chunks"), "{stderr}");
}

#[test]
fn ctrl_c_stops_parallel_after_a_worker_count_and_saves_what_finished() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("par.json");
    let out = interrupt_when(
        &[
            "parallel",
            "-m",
            "synth:llama-15m",
            "--workers",
            "1,8",
            "--requests",
            "2",
            "-p",
            "32",
            "-n",
            "800",
            "-t",
            "1",
            "-o",
            "json",
            "--save",
            save.to_str().unwrap(),
        ],
        "workers 8:",
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("1 of 2 worker counts"),
        "{err}"
    );
    // stdout and the saved envelope hold the finished worker count only.
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&save).unwrap()).unwrap();
    assert_eq!(saved["kind"], "parallel");
    assert_eq!(saved["result"], printed);
    let runs = printed["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["workers"], 1);
    assert_eq!(runs[0]["output_tokens"], 2 * 800);
    assert_eq!(printed["interrupted"], true);
}
