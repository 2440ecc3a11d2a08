//! ggml's RPC backend end to end: `rbench rpc-server`s on loopback ports,
//! a client placing layers on them with `--rpc`, and what happens when a
//! server goes away or stops answering.

mod common;
use common::{cache_dir, gpl3_perplexity, rbench, success_stdout as ok, test_model};
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `rbench rpc-server` on a free loopback port, stopped on drop.
struct Server {
    child: Child,
    endpoint: String,
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_rbench"))
            .args(["rpc-server", "--port", &port.to_string(), "-t", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rpc-server");
        let endpoint = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&endpoint).is_err() {
            assert!(
                Instant::now() < deadline,
                "rpc-server on {endpoint} never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, endpoint }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.pid()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn two_servers() -> (Server, Server, String) {
    let (a, b) = (Server::start(), Server::start());
    let list = format!("{},{}", a.endpoint, b.endpoint);
    (a, b, list)
}

/// The settings the servers compute with: ggml's kernels on the file's
/// layout, attention without flash (rbench's own kernels and attention
/// run only where weights and cache are in this machine's memory).
const SAME_MATH: [&str; 5] = ["--kernels", "ggml", "-fa", "off", "--no-repack"];

fn perplexity(model: &Path, extra: &[&str]) -> (f64, String) {
    let mut args = vec!["-t", "2"];
    args.extend_from_slice(extra);
    gpl3_perplexity(model, 8, &args)
}

#[test]
fn perplexity_split_over_two_servers_matches_the_local_run() {
    let Some(model) = test_model("perplexity_split_over_two_servers_matches_the_local_run") else {
        return;
    };
    let (_a, _b, list) = two_servers();
    let (local, _) = perplexity(&model, &SAME_MATH);
    let mut remote_args = SAME_MATH.to_vec();
    remote_args.extend(["--rpc", &list, "-ngl", "99", "-ts", "1,1"]);
    let (remote, stderr) = perplexity(&model, &remote_args);
    assert!(
        stderr.contains("CPU: 0/18 layers")
            && stderr.contains("RPC0: ")
            && stderr.contains("RPC1: "),
        "the layers were not split over both servers:\n{stderr}"
    );
    eprintln!("PPL local {local:.4}, over RPC {remote:.4}");
    assert!(
        (remote / local - 1.0).abs() < 0.001,
        "PPL over RPC {remote} is not within 0.1% of the local {local}"
    );
}

#[test]
fn greedy_completions_over_rpc_equal_the_local_ones() {
    let Some(model) = test_model("greedy_completions_over_rpc_equal_the_local_ones") else {
        return;
    };
    let (_a, _b, list) = two_servers();
    let reference =
        std::fs::read_to_string(common::reference_data("greedy-gemma3-270m.jsonl")).unwrap();
    let mut prompts = 0;
    for line in reference.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let prompt = row["prompt"].as_str().unwrap();
        let complete = |extra: &[&str]| {
            let mut args = vec![
                "run",
                "-m",
                model.to_str().unwrap(),
                "-p",
                prompt,
                "-n",
                "32",
                "--temp",
                "0",
            ];
            args.extend_from_slice(&SAME_MATH);
            args.extend_from_slice(extra);
            ok(&rbench(&args))
        };
        let local = complete(&[]);
        let remote = complete(&["--rpc", &list, "-ngl", "99", "-ts", "1,1"]);
        assert_eq!(remote, local, "{prompt:?}");
        prompts += 1;
    }
    assert!(prompts >= 5, "only {prompts} reference prompts");
}

#[test]
fn bench_rows_carry_the_rpc_backend_and_endpoints() {
    let (a, b, list) = two_servers();
    let stdout = ok(&rbench(&[
        "bench",
        "-m",
        "synth:llama-15m",
        "-p",
        "64",
        "-n",
        "16",
        "-r",
        "1",
        "--rpc",
        &list,
        "-ngl",
        "99",
        "-o",
        "json",
    ]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rows.len(), 2, "{stdout}");
    for row in &rows {
        assert_eq!(row["backends"], "RPC", "{row}");
        assert_eq!(row["n_gpu_layers"], 99, "{row}");
        let info = row["gpu_info"].as_str().unwrap();
        // By default layers follow free memory: both servers report this
        // machine's, so both hold some.
        assert!(
            info.contains(&a.endpoint) && info.contains(&b.endpoint),
            "{row}"
        );
        assert!(row["avg_ts"].as_f64().unwrap() > 0.0, "{row}");
    }
}

#[test]
fn the_device_list_shows_remote_devices() {
    let server = Server::start();
    let stdout = ok(&rbench(&[
        "bench",
        "--rpc",
        &server.endpoint,
        "--list-devices",
    ]));
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("RPC0") && l.contains(&server.endpoint) && l.contains("MiB free")),
        "{stdout}"
    );
}

/// A long `bench` on both servers, its stderr lines collected as they come.
struct LongBench {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl LongBench {
    /// Starts it and waits until it is repeating a test.
    fn start(list: &str, timeout_s: &str) -> LongBench {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rbench"))
            .args([
                "bench",
                "-m",
                "synth:llama-15m",
                "-p",
                "256",
                "-n",
                "64",
                "-r",
                "1000",
                "--progress",
                "--rpc",
                list,
                "-ngl",
                "99",
                "-ts",
                "1/1",
                "--rpc-timeout",
                timeout_s,
            ])
            .env("RBENCH_CACHE_DIR", cache_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bench");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = BufReader::new(child.stderr.take().unwrap());
        let lines = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in pipe.lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let run = LongBench { child, stderr };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !run.text().contains("repetition 2/") {
            assert!(
                Instant::now() < deadline && run.child.id() > 0,
                "bench did not start repeating:\n{}",
                run.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        run
    }

    fn text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits for the run to end, at most `limit`: its exit code, the error
    /// line and how long it took.
    fn ended_within(mut self, limit: Duration) -> (Option<i32>, String, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let took = start.elapsed();
                // The reader thread sees the pipe close just after the exit.
                std::thread::sleep(Duration::from_millis(200));
                let text = self.text();
                let error = text
                    .lines()
                    .find(|l| l.starts_with("error:"))
                    .unwrap_or_else(|| panic!("no error line:\n{text}"))
                    .to_string();
                return (status.code(), error, took);
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "the run did not end within {limit:?} of the server's failure:\n{}",
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_server_killed_mid_run_ends_it_naming_the_endpoint() {
    let (a, mut b, list) = two_servers();
    let run = LongBench::start(&list, "10");
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let (code, error, took) = run.ended_within(Duration::from_secs(15));
    assert_eq!(code, Some(1), "{error}");
    assert!(
        error.starts_with("error: RPC server")
            && error.contains(&b.endpoint)
            && !error.contains(&a.endpoint),
        "the error does not name the killed server {}: {error}",
        b.endpoint
    );
    eprintln!("ended {took:?} after the kill: {error}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_stopped_server_times_out_naming_the_endpoint() {
    let (a, b, list) = two_servers();
    // Long enough that the live server, slowed by the other tests on a
    // 2-core machine, still answers in time (2 s did not, in CI).
    let run = LongBench::start(&list, "8");
    let stopped = Command::new("kill")
        .args(["-STOP", &a.pid()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let (code, error, took) = run.ended_within(Duration::from_secs(30));
    assert_eq!(code, Some(1), "{error}");
    assert!(
        error.contains(&a.endpoint)
            && !error.contains(&b.endpoint)
            && error.contains("8 s time-out"),
        "the error does not name the stopped server {}: {error}",
        a.endpoint
    );
    eprintln!("ended {took:?} after the stop: {error}");
}

#[test]
fn bad_endpoints_and_unreachable_servers_are_clear_errors() {
    let bad = rbench(&["bench", "-m", "synth:llama-15m", "--rpc", "no-port-here"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("HOST:PORT"));
    // A bad time-out is refused even without --rpc.
    let bad = rbench(&["pp", "-m", "synth:llama-15m", "--rpc-timeout=-1"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("0 (no limit) or more seconds"));
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("127.0.0.1:{closed}");
    for cmd in ["bench", "run"] {
        let out = rbench(&[cmd, "-m", "synth:llama-15m", "-p", "8", "--rpc", &endpoint]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {stderr}");
        assert!(
            stderr.contains(&endpoint) && stderr.contains("cannot connect"),
            "{cmd}: {stderr}"
        );
    }
}

#[test]
fn rpc_server_refuses_a_taken_port_and_warns_off_loopback() {
    let server = Server::start();
    let port = server.endpoint.rsplit(':').next().unwrap();
    let again = rbench(&["rpc-server", "--port", port]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("cannot listen"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let unknown = rbench(&["rpc-server", "--device", "NoSuchGPU"]);
    assert_eq!(unknown.status.code(), Some(2));

    let free = TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut open = Command::new(env!("CARGO_BIN_EXE_rbench"))
        .args([
            "rpc-server",
            "--host",
            "0.0.0.0",
            "--port",
            &free.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let _ = open.kill();
    let _ = open.wait();
    let mut stderr = String::new();
    open.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("warning:") && stderr.contains("trusted network"),
        "{stderr}"
    );
}

/// A stand-in for a server of another protocol version: answers every
/// HELLO with version 2.0.0.
fn old_version_server() -> String {
    use std::io::Write as _;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            // | cmd (1 byte) | request size (u64) | request (connection caps) |
            let mut head = [0u8; 9];
            if conn.read_exact(&mut head).is_err() {
                continue; // the client's reachability probe
            }
            let n = u64::from_le_bytes(head[1..9].try_into().unwrap()) as usize;
            let mut caps = vec![0u8; n];
            if conn.read_exact(&mut caps).is_err() {
                continue;
            }
            // | response size (u64) | major, minor, patch, padding, caps |
            let mut reply = ((4 + n) as u64).to_le_bytes().to_vec();
            reply.extend([2, 0, 0, 0]);
            reply.extend(std::iter::repeat_n(0u8, n));
            let _ = conn.write_all(&reply);
        }
    });
    endpoint
}

#[test]
fn a_server_of_another_protocol_version_is_named() {
    let endpoint = old_version_server();
    let out = rbench(&["bench", "-m", "synth:llama-15m", "--rpc", &endpoint]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        error.contains(&endpoint) && error.contains("another version"),
        "{stderr}"
    );
}
