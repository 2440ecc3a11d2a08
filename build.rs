//! Records build facts (version, git commit, ggml version, target features,
//! profile) that `rbench` prints in reports and JSON.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let commit = if dirty && commit != "unknown" {
        format!("{commit}-dirty")
    } else {
        commit
    };
    println!("cargo:rustc-env=RBENCH_GIT_COMMIT={commit}");

    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let wanted = [
        "sse4.2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512vnni",
        "avx512bf16",
        "avxvnni",
        "neon",
        "dotprod",
        "i8mm",
        "sve",
    ];
    let enabled: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|f| features.split(',').any(|x| x == *f))
        .collect();
    println!(
        "cargo:rustc-env=RBENCH_TARGET_FEATURES={}",
        enabled.join(",")
    );
    println!(
        "cargo:rustc-env=RBENCH_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=RBENCH_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    // ggml version of the pinned llama-cpp-sys-2 (ggml/CMakeLists.txt of that crate).
    println!("cargo:rustc-env=RBENCH_GGML_VERSION=0.26.0");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
    println!("cargo:rerun-if-changed=build.rs");
}
