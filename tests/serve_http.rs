//! `rbench serve` driven over HTTP by a real client: the binary is started
//! on a free loopback port (`--port 0`, the address read from its log).

mod common;

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SYNTH: &str = "synth:llama-15m";

struct Server {
    child: Child,
    base: String,
    log: std::sync::Mutex<mpsc::Receiver<String>>,
}

impl Server {
    fn start(model: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rbench"))
            .args(["serve", "-m", model, "--port", "0", "-t", "2"])
            .args(extra)
            .env("RBENCH_CACHE_DIR", common::cache_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rbench serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[serve] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut base = None;
        loop {
            let line = log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the server printed its address and became ready");
            if let Some(rest) = line.split("listening on ").nth(1) {
                base = rest.split_whitespace().next().map(str::to_string);
            }
            if line.contains("rbench serve: ready") {
                break;
            }
        }
        Server {
            child,
            base: base.expect("address"),
            log: std::sync::Mutex::new(log),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The next `count` logged lines that `keep` accepts, waiting up to 30 s
    /// for them: the server may log a request just after answering it.
    fn wait_log_lines(&self, count: usize, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let log = self.log.lock().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut found = Vec::new();
        while found.len() < count {
            match log.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if keep(&line) => found.push(line),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        found
    }

    fn metric(&self, client: &Client, name: &str) -> f64 {
        let text = client
            .get(self.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("rbench:{name} ")))
            .unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
            .parse()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

fn post(client: &Client, server: &Server, path: &str, body: &Value) -> Response {
    client.post(server.url(path)).json(body).send().unwrap()
}

/// The `data:` payloads of a server-sent event stream, `[DONE]` included.
fn sse_events(response: Response) -> Vec<String> {
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    BufReader::new(response)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect()
}

fn stream_text(events: &[String], chat: bool) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|v| {
            let c = v["choices"].get(0)?;
            let t = if chat {
                &c["delta"]["content"]
            } else {
                &c["text"]
            };
            t.as_str().map(str::to_string)
        })
        .collect()
}

#[test]
fn completions_and_chat_stream_and_report_usage_and_cached_tokens() {
    let server = Server::start(SYNTH, &["--parallel", "4"]);
    let c = client();
    let ids: Vec<u32> = (10..50).collect();
    let body = json!({"prompt": ids, "max_tokens": 12, "temperature": 0, "ignore_eos": true});
    let first: Value = post(&c, &server, "/v1/completions", &body).json().unwrap();
    assert_eq!(first["object"], "text_completion");
    assert_eq!(first["choices"][0]["finish_reason"], "length");
    assert_eq!(first["usage"]["prompt_tokens"], 40);
    assert_eq!(first["usage"]["completion_tokens"], 12);
    assert_eq!(first["usage"]["total_tokens"], 52);
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    // llama-server's `timings`, so load clients can compare.
    assert_eq!(first["timings"]["predicted_n"], 12);
    assert_eq!(first["timings"]["prompt_n"], 40);
    assert!(first["timings"]["prompt_ms"].as_f64().unwrap() > 0.0);

    // The same prompt streamed: the same text, now from the cache.
    let mut stream_body = body.clone();
    stream_body["stream"] = json!(true);
    stream_body["stream_options"] = json!({"include_usage": true});
    let events = sse_events(post(&c, &server, "/v1/completions", &stream_body));
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert_eq!(stream_text(&events, false), first["choices"][0]["text"]);
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 12);
    assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 39);
    let finish: Value = serde_json::from_str(&events[events.len() - 3]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length");

    // Chat, whole and streamed.
    let chat = json!({
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
        "max_completion_tokens": 6, "temperature": 0, "ignore_eos": true,
        "logprobs": true, "top_logprobs": 3,
    });
    let whole: Value = post(&c, &server, "/v1/chat/completions", &chat)
        .json()
        .unwrap();
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    assert_eq!(whole["usage"]["completion_tokens"], 6);
    let content = whole["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert_eq!(content.len(), 6);
    for entry in content {
        let top = entry["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(entry["logprob"], top[0]["logprob"]);
        assert!(entry["logprob"].as_f64().unwrap() <= 0.0);
    }
    let mut chat_stream = chat.clone();
    chat_stream["stream"] = json!(true);
    let events = sse_events(post(&c, &server, "/v1/chat/completions", &chat_stream));
    let first_chunk: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first_chunk["object"], "chat.completion.chunk");
    assert_eq!(first_chunk["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        stream_text(&events, true),
        whole["choices"][0]["message"]["content"]
    );

    // /v1/models, /tokenize, /detokenize.
    let models: Value = c
        .get(server.url("/v1/models"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let root = models["data"][0]["root"].as_str().unwrap();
    let id = models["data"][0]["id"].as_str().unwrap();
    assert!(root.ends_with(&format!("{id}.gguf")), "{root} {id}");
    // The id names the model in requests.
    let named = json!({"model": id, "prompt": "x", "max_tokens": 1});
    assert_eq!(post(&c, &server, "/v1/completions", &named).status(), 200);
    let tokens: Value = post(&c, &server, "/tokenize", &json!({"prompt": "hello world"}))
        .json()
        .unwrap();
    assert_eq!(tokens["count"], tokens["tokens"].as_array().unwrap().len());
    let text: Value = post(
        &c,
        &server,
        "/detokenize",
        &json!({"tokens": tokens["tokens"]}),
    )
    .json()
    .unwrap();
    assert_eq!(text["prompt"], "hello world");
    assert_eq!(c.get(server.url("/health")).send().unwrap().status(), 200);
}

#[test]
fn stop_strings_end_the_text_before_them() {
    // Real text needs the real model (a synthetic one writes byte noise).
    let Some(model) = common::test_model("stop_strings_end_the_text_before_them") else {
        return;
    };
    let server = Server::start(model.to_str().unwrap(), &["--parallel", "2"]);
    let c = client();
    let body = json!({"prompt": "Once upon a time, in a small village,", "max_tokens": 24, "temperature": 0, "ignore_eos": true});
    let full: Value = post(&c, &server, "/v1/completions", &body).json().unwrap();
    let text = full["choices"][0]["text"].as_str().unwrap().to_string();
    // A stop string from the middle of the text (it may span tokens).
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() >= 12, "{text:?}");
    let stop: String = chars[6..9].iter().collect();
    let cut = text.find(&stop).unwrap();
    for stream in [false, true] {
        let mut b = body.clone();
        b["stop"] = json!([stop.clone()]);
        b["stream"] = json!(stream);
        let got = if stream {
            let events = sse_events(post(&c, &server, "/v1/completions", &b));
            let finish: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
            assert_eq!(finish["choices"][0]["finish_reason"], "stop");
            stream_text(&events, false)
        } else {
            let v: Value = post(&c, &server, "/v1/completions", &b).json().unwrap();
            assert_eq!(v["choices"][0]["finish_reason"], "stop");
            assert!(v["usage"]["completion_tokens"].as_u64().unwrap() < 24);
            v["choices"][0]["text"].as_str().unwrap().to_string()
        };
        assert_eq!(got, text[..cut], "stream: {stream}");
    }
}

#[test]
fn bad_requests_get_their_status_codes_and_the_server_keeps_serving() {
    let server = Server::start(
        SYNTH,
        &[
            "--parallel",
            "1",
            "--max-queue",
            "1",
            "--api-key",
            "sesame",
            "--max-body",
            "4096",
            "-c",
            "256",
        ],
    );
    let c = client();
    let send = |path: &str, body: &str, key: Option<&str>| {
        let mut r = c
            .post(server.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let resp = r.send().unwrap();
        let status = resp.status().as_u16();
        let retry = resp.headers().get("retry-after").is_some();
        let v: Value = resp.json().unwrap_or(Value::Null);
        (status, v, retry)
    };
    let key = Some("sesame");
    let ok = r#"{"prompt": "hi", "max_tokens": 2}"#;
    assert_eq!(send("/v1/completions", ok, None).0, 401);
    assert_eq!(send("/v1/completions", ok, Some("sesamf")).0, 401);
    let cases: &[(&str, &str, u16, &str)] = &[
        ("/v1/completions", "{not json", 400, "invalid request body"),
        (
            "/v1/completions",
            r#"{"prompt": "hi", "max_tokens": "two"}"#,
            400,
            "invalid request body",
        ),
        (
            "/v1/completions",
            r#"{"prompt": "hi", "temperature": -1}"#,
            400,
            "temperature",
        ),
        (
            "/v1/completions",
            r#"{"prompt": "hi", "model": "gpt-4o"}"#,
            404,
            "gpt-4o",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": []}"#,
            400,
            "messages",
        ),
        (
            "/v1/completions",
            r#"{"prompt": "hi", "n": 3}"#,
            400,
            "n must be 1",
        ),
        (
            "/v1/completions",
            r#"{"prompt": [1, 2, 99999999]}"#,
            400,
            "vocabulary",
        ),
    ];
    for (path, body, status, needle) in cases {
        let (got, v, _) = send(path, body, key);
        assert_eq!(got, *status, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{body}: {message}");
        assert!(v["error"]["type"].is_string());
    }
    // A prompt over the context: both sizes named.
    let long: Vec<u32> = (0..300).map(|i| 10 + i % 50).collect();
    let (got, v, _) = send("/v1/completions", &json!({"prompt": long}).to_string(), key);
    assert_eq!(got, 400);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("300") && message.contains("256"),
        "{message}"
    );
    // A body over --max-body.
    let big = json!({"prompt": "x".repeat(5000)}).to_string();
    assert_eq!(send("/v1/completions", &big, key).0, 413);
    assert_eq!(
        c.get(server.url("/v2/nothing")).send().unwrap().status(),
        404
    );
    // One running, one waiting: the third gets 429 with Retry-After.
    let slow = json!({"prompt": [3, 4, 5], "max_tokens": 200, "ignore_eos": true}).to_string();
    let (statuses, retried): (Vec<u16>, Vec<bool>) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let slow = slow.clone();
                let send = &send;
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(150 * i));
                    let (status, _, retry) = send("/v1/completions", &slow, key);
                    (status, retry)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).unzip()
    });
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        2,
        "{statuses:?}"
    );
    let busy = statuses.iter().position(|&s| s == 429).expect("one 429");
    assert!(retried[busy]);
    // Still serving.
    assert_eq!(send("/v1/completions", ok, key).0, 200);
}

#[test]
fn thirty_two_streams_complete_and_a_disconnect_frees_its_cells() {
    let server = Server::start(
        SYNTH,
        &["--parallel", "8", "--no-prefix-cache", "-c", "128"],
    );
    let c = client();
    let lengths: Vec<u64> = (0..32).map(|i| 4 + (i * 7) % 29).collect();
    std::thread::scope(|s| {
        for (i, &n) in lengths.iter().enumerate() {
            let (c, server) = (&c, &server);
            s.spawn(move || {
                let prompt: Vec<u64> = (0..(5 + i as u64 % 9)).map(|t| 3 + t + i as u64).collect();
                let body = json!({
                    "prompt": prompt, "max_tokens": n, "ignore_eos": true, "temperature": 0.8,
                    "seed": i, "stream": true, "stream_options": {"include_usage": true},
                });
                let events = sse_events(post(c, server, "/v1/completions", &body));
                assert_eq!(events.last().unwrap(), "[DONE]");
                let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
                assert_eq!(usage["usage"]["completion_tokens"], n, "request {i}");
            });
        }
    });
    assert_eq!(server.metric(&c, "num_requests_running"), 0.0);
    assert_eq!(server.metric(&c, "kv_cells_used"), 0.0);

    // A client that goes away mid-stream.
    let body = json!({"prompt": [7, 8, 9], "max_tokens": 100, "ignore_eos": true, "stream": true});
    let response = post(&c, &server, "/v1/completions", &body);
    let mut lines = BufReader::new(response).lines();
    let first = lines.find(|l| l.as_ref().is_ok_and(|l| l.starts_with("data: ")));
    assert!(first.is_some());
    assert!(server.metric(&c, "kv_cells_used") > 0.0);
    drop(lines);
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.metric(&c, "kv_cells_used") > 0.0 {
        assert!(Instant::now() < deadline, "the cells were not freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.metric(&c, "request_cancelled_total"), 1.0);
    assert_eq!(server.metric(&c, "num_requests_running"), 0.0);
}

#[test]
fn prefix_cache_miss_hit_prefix_hit_and_a_shared_system_prompt() {
    let server = Server::start(SYNTH, &["--parallel", "2", "-c", "512"]);
    let c = client();
    let cached = |prompt: &[u32]| -> u64 {
        let body = json!({"prompt": prompt, "max_tokens": 4, "temperature": 0, "ignore_eos": true});
        let v: Value = post(&c, &server, "/v1/completions", &body).json().unwrap();
        v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
    };
    let a: Vec<u32> = (100..140).collect();
    let b: Vec<u32> = (200..240).collect();
    let mut a_longer = a.clone();
    a_longer.extend(300..310);
    assert_eq!(cached(&a), 0);
    assert_eq!(cached(&a), 39);
    assert_eq!(cached(&b), 0);
    assert_eq!(cached(&a_longer), 40);
    assert_eq!(cached(&a), 39);
    let logged = server.wait_log_lines(5, |l| l.starts_with("cmpl-"));
    let outcomes: Vec<&str> = logged
        .iter()
        .map(|l| {
            l.split(" tokens (")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(outcomes, ["MISS", "HIT", "MISS", "PREFIX_HIT", "HIT"]);

    // 20 requests behind one 256-token system prompt.
    let saved_before = server.metric(&c, "prefix_cache_tokens_saved_total");
    let system: Vec<u32> = (0..256).map(|i| 20 + (i * 13) % 200).collect();
    for r in 0..20u32 {
        let mut p = system.clone();
        p.extend([400 + r, 401 + r, 402]);
        let got = cached(&p);
        assert_eq!(got, if r == 0 { 0 } else { 256 }, "request {r}");
    }
    let saved = server.metric(&c, "prefix_cache_tokens_saved_total") - saved_before;
    assert_eq!(saved, 19.0 * 256.0);
}

#[test]
fn a_request_over_the_timeout_gets_504_or_an_error_event() {
    let server = Server::start(SYNTH, &["--parallel", "2", "--timeout", "1", "-c", "8192"]);
    let c = client();
    let body = json!({"prompt": [3, 4, 5], "max_tokens": 8000, "ignore_eos": true});
    let started = Instant::now();
    let response = post(&c, &server, "/v1/completions", &body);
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(10));
    let v: Value = response.json().unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--timeout"));
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let events = sse_events(post(&c, &server, "/v1/completions", &stream));
    assert_eq!(events.last().unwrap(), "[DONE]");
    let error: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(error["error"]["code"], 504, "{error}");
    // Both were cancelled: nothing runs any more.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric(&c, "num_requests_running") > 0.0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_stops_the_server_with_exit_130() {
    let mut server = Server::start(SYNTH, &["--parallel", "1"]);
    let pid = server.child.id().to_string();
    let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "still running after Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(130));
}

/// At temperature 0 the server answers what `rbench run --prompts-file`
/// (the batch-invariant mode) answers, while other requests are served.
#[test]
fn greedy_completions_equal_rbench_run_whatever_else_runs() {
    let Some(model) = common::test_model("greedy_completions_equal_rbench_run_whatever_else_runs")
    else {
        return;
    };
    let model = model.to_str().unwrap().to_string();
    let reference = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/reference/greedy-gemma3-270m.jsonl"),
    )
    .or_else(|_| std::fs::read_to_string(common::reference_data("greedy-gemma3-270m.jsonl")))
    .expect("reference prompts");
    let prompts: Vec<String> = reference
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["prompt"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prompts.txt");
    let lines: Vec<String> = prompts.iter().map(|p| json!(p).to_string()).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = common::rbench(&[
        "run",
        "-m",
        &model,
        "--prompts-file",
        file.to_str().unwrap(),
        "--parallel",
        "8",
        "-n",
        "32",
        "--temp",
        "0",
        "-o",
        "jsonl",
        "-t",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["completion"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(expected.len(), prompts.len());

    let server = Server::start(&model, &["--parallel", "4"]);
    let c = client();
    std::thread::scope(|s| {
        // Noise: sampled requests of other lengths sharing the steps.
        for i in 0..3 {
            let (c, server) = (&c, &server);
            s.spawn(move || {
                let body = json!({"prompt": format!("Noise {i}: tell me a story"), "max_tokens": 40 + 9 * i, "temperature": 1.0, "seed": i, "ignore_eos": true});
                assert_eq!(post(c, server, "/v1/completions", &body).status(), 200);
            });
        }
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| {
                let (c, server) = (&c, &server);
                s.spawn(move || {
                    let body = json!({"prompt": p, "max_tokens": 32, "temperature": 0});
                    let v: Value = post(c, server, "/v1/completions", &body).json().unwrap();
                    v["choices"][0]["text"].as_str().unwrap().to_string()
                })
            })
            .collect();
        let got: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(got, expected);
    });
    // Again, now from the prefix cache: still the same.
    for (p, want) in prompts.iter().zip(&expected) {
        let body = json!({"prompt": p, "max_tokens": 32, "temperature": 0});
        let v: Value = post(&c, &server, "/v1/completions", &body).json().unwrap();
        assert!(
            v["usage"]["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert_eq!(v["choices"][0]["text"].as_str().unwrap(), want);
    }
}
