//! GPU offload on a real Vulkan device: the test model with its layers on
//! the device (`-ngl 9`, `-ngl 99`) against the same binary on the CPU.
//! Built only with `--features vulkan` (`scripts/check-vulkan.sh` runs it
//! on Mesa's software device, lavapipe). Without a Vulkan device the tests
//! skip, except under `RBENCH_VULKAN=1` (set by the script) or CI, where
//! they fail.
#![cfg(feature = "vulkan")]

mod common;
use common::{gpl3_perplexity, rbench, success_stdout as ok, test_model};
use std::path::{Path, PathBuf};

/// The first Vulkan device's name ("Vulkan0"), when there is one.
fn vulkan_device(test: &str) -> Option<String> {
    let out = rbench(&["sysinfo", "--no-bandwidth", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = v["devices"].as_array().and_then(|ds| {
        ds.iter()
            .filter_map(|d| d["name"].as_str())
            .find(|n| n.starts_with("Vulkan"))
            .map(str::to_string)
    });
    if found.is_none() {
        let required =
            std::env::var_os("RBENCH_VULKAN").is_some() || std::env::var_os("CI").is_some();
        assert!(
            !required,
            "{test}: no Vulkan device (sysinfo devices: {})",
            v["devices"]
        );
        eprintln!("skipped {test}: no Vulkan device");
    }
    found
}

/// The test model and the Vulkan device, or why the test is skipped.
fn model_and_device(test: &str) -> Option<(PathBuf, String)> {
    let model = test_model(test)?;
    Some((model, vulkan_device(test)?))
}

/// PPL over the first `chunks` chunks of GPL-3 at `-c 256`.
fn perplexity(model: &Path, placement: &[&str], chunks: usize) -> (f64, String) {
    gpl3_perplexity(model, chunks, placement)
}

#[test]
fn perplexity_on_the_device_matches_the_cpu() {
    let Some((model, device)) = model_and_device("perplexity_on_the_device_matches_the_cpu") else {
        return;
    };
    // The software device computes a few tokens a second: 4 chunks (1024
    // tokens, 512 scored) keep the test to minutes.
    let chunks = 4;
    let (cpu, _) = perplexity(&model, &["-dev", "none"], chunks);
    for ngl in ["0", "9", "99"] {
        let (ppl, stderr) = perplexity(&model, &["-dev", &device, "-ngl", ngl], chunks);
        if ngl != "0" {
            assert!(
                stderr.contains("placement: CPU:") && stderr.contains(&device),
                "-ngl {ngl}: no placement line naming {device}:\n{stderr}"
            );
        }
        eprintln!("-ngl {ngl}: PPL {ppl:.4} (CPU {cpu:.4})");
        assert!(
            (ppl / cpu - 1.0).abs() < 0.01,
            "-ngl {ngl}: PPL {ppl} is not within 1% of the CPU's {cpu}"
        );
    }
}

/// The greedy completion of `prompt`, `n` tokens.
fn complete(model: &Path, prompt: &str, n: usize, placement: &[&str]) -> String {
    let n = n.to_string();
    let mut args = vec![
        "run",
        "-m",
        model.to_str().unwrap(),
        "-p",
        prompt,
        "-n",
        &n,
        "--temp",
        "0",
    ];
    args.extend_from_slice(placement);
    ok(&rbench(&args))
}

#[test]
fn greedy_completions_on_the_device_equal_the_cpus() {
    let test = "greedy_completions_on_the_device_equal_the_cpus";
    let Some((model, device)) = model_and_device(test) else {
        return;
    };
    // Two of the greedy reference prompts (tests/data/greedy-gemma3-270m.jsonl),
    // 12 tokens each: ggml's Vulkan kernels round differently from the
    // CPU's, and a near-tie further on could flip, as on another CPU.
    let prompts = ["The capital of France is", "def add(a, b):\n"];
    for prompt in prompts {
        let cpu = complete(&model, prompt, 12, &["-dev", "none"]);
        for ngl in ["9", "99"] {
            let gpu = complete(&model, prompt, 12, &["-dev", &device, "-ngl", ngl]);
            assert_eq!(gpu, cpu, "{prompt:?} at -ngl {ngl}");
        }
    }
}

#[test]
fn bench_rows_name_the_vulkan_backend_where_offloaded() {
    let test = "bench_rows_name_the_vulkan_backend_where_offloaded";
    let Some((model, device)) = model_and_device(test) else {
        return;
    };
    let stdout = ok(&rbench(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "1",
        "-dev",
        &device,
        "-ngl",
        "0,99",
        "-o",
        "json",
    ]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rows.len(), 4, "pp and tg at two -ngl values: {stdout}");
    for row in &rows {
        let ngl = row["n_gpu_layers"].as_u64().unwrap();
        let want = if ngl == 0 { "CPU" } else { "Vulkan" };
        assert_eq!(row["backends"], want, "{row}");
        assert_eq!(row["devices"], device.as_str(), "{row}");
        if ngl > 0 {
            assert!(!row["gpu_info"].as_str().unwrap().is_empty(), "{row}");
        }
        assert!(row["avg_ts"].as_f64().unwrap() > 0.0, "{row}");
    }
}

#[test]
fn an_offloaded_parallel_plan_lists_the_device() {
    let test = "an_offloaded_parallel_plan_lists_the_device";
    let Some((model, device)) = model_and_device(test) else {
        return;
    };
    let stdout = ok(&rbench(&[
        "parallel",
        "-m",
        model.to_str().unwrap(),
        "--workers",
        "1,2",
        "-p",
        "32",
        "-n",
        "8",
        "-dev",
        &device,
        "-ngl",
        "99",
        "--dry-run",
        "-o",
        "json",
    ]));
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let devices = plan["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{plan}");
    assert_eq!(devices[0]["device"], device.as_str());
    assert_eq!(
        devices[0]["layers"], 18,
        "the test model's 18 layers: {plan}"
    );
    assert!(devices[0]["kv_cache_bytes"].as_u64().unwrap() > 0);
    assert_eq!(plan["host_kv_cache_bytes"], 0, "{plan}");
}

#[test]
fn a_plan_that_overfills_the_device_is_refused_naming_it() {
    let test = "a_plan_that_overfills_the_device_is_refused_naming_it";
    let Some(device) = vulkan_device(test) else {
        return;
    };
    // Qwen2-1.5B in F16: about 2.4 GiB of layer weights, more than the
    // software device's 2 GiB. The plan reads the preset; nothing is written.
    let model = "synth:qwen2-1.5b:f16";
    let args = [
        "parallel",
        "-m",
        model,
        "--workers",
        "1",
        "-p",
        "32",
        "-n",
        "8",
        "-dev",
        &device,
        "-ngl",
        "99",
    ];
    let out = rbench(&[&args[..], &["--dry-run", "-o", "json"]].concat());
    let plan: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(plan["fits"], false, "{plan}");
    assert_eq!(plan["devices"][0]["fits"], false, "{plan}");
    let out = rbench(&args);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("not enough memory on device {device}")) && err.contains("-ngl"),
        "{err}"
    );
    // With the layers on the CPU the same plan fits the device.
    let out = rbench(&[&args[..11], &["-ngl", "0", "--dry-run", "-o", "json"]].concat());
    let plan: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert!(plan["devices"].as_array().unwrap().is_empty(), "{plan}");
}

#[test]
fn weights_too_large_for_the_device_are_refused_naming_it() {
    let test = "weights_too_large_for_the_device_are_refused_naming_it";
    let Some(device) = vulkan_device(test) else {
        return;
    };
    // 2.4 GiB of layer weights (Qwen2-1.5B in F16, written once into the
    // tests' cache) against the software device's 2 GiB.
    let out = rbench(&[
        "bench",
        "-m",
        "synth:qwen2-1.5b:f16",
        "-dev",
        &device,
        "-ngl",
        "99",
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("device {device} is out of memory"))
            && err.contains("GiB")
            && err.contains("bytes"),
        "{err}"
    );
}
