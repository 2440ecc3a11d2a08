//! rbench's kernels inside the real test model's graph.

mod common;

use common::test_model;
use rbench::engine::{Batch, Engine, EngineConfig};
use rbench::kernels::Kernels;
use rbench::model::synth::{self, SynthFtype};
use rbench::model::weights::LoadOptions;
use rbench::model::Model;

/// Logits of every step when `tokens` are decoded one at a time.
fn one_token_steps(model: &Model, kernels: Kernels, tokens: &[u32]) -> Vec<Vec<f32>> {
    let cfg = EngineConfig {
        n_ctx: 256,
        n_threads: 2,
        kernels,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(model, cfg).unwrap();
    let mut steps = Vec::new();
    for (pos, &t) in (0i32..).zip(tokens) {
        let mut b = Batch::new();
        b.add(t, pos, &[0], true).unwrap();
        steps.push(engine.decode(&b).unwrap().last().unwrap().to_vec());
    }
    steps
}

/// The block-32 one-column kernels sum exactly as ggml's `vec_dot` does
/// (same per-lane integers, scale products and FMA order), so generation of
/// a Q8_0 model with rbench's kernels gives ggml's logits bit for bit, step
/// after step. (The K-quant kernels keep their own canonical order: see
/// `one_token_decode_of_the_test_model_agrees_with_ggml`.)
#[test]
fn one_token_decode_of_block32_weights_is_bit_identical_to_ggml() {
    let preset = synth::preset("llama-tiny").unwrap();
    let path = synth::ensure_cached(preset, SynthFtype::Q8_0).unwrap();
    // Plain layout on both sides: repacked (AMX) weights would leave both
    // runs to ggml.
    let opts = LoadOptions {
        repack: false,
        ..LoadOptions::default()
    };
    let model = Model::load(&path, &opts).unwrap();
    let tokens = [1u32, 523, 77, 3001, 9, 12000, 450, 31000, 8, 2];
    let ggml = one_token_steps(&model, Kernels::Ggml, &tokens);
    let ours = one_token_steps(&model, Kernels::Rbench, &tokens);
    for (step, (a, b)) in ggml.iter().zip(&ours).enumerate() {
        let differing = a
            .iter()
            .zip(b)
            .filter(|(p, q)| p.to_bits() != q.to_bits())
            .count();
        assert_eq!(
            differing, 0,
            "step {step}: {differing} logits differ from ggml's"
        );
    }
}

/// On the test model (Q8_0, Q5_0, Q4_K and Q6_K) one-token decoding runs
/// the K-quant weights through rbench's kernels (on plain twins where ggml
/// repacked them), which sum in another order than ggml's: each step picks
/// ggml's token unless the two are within rounding of a tie, and no logit
/// moves by more than this model's amplified rounding (measured up to ~3%
/// of the largest logit; a wrong row or scale moves them by whole units).
#[test]
fn one_token_decode_of_the_test_model_agrees_with_ggml() {
    let Some(path) = test_model("one_token_decode_of_the_test_model_agrees_with_ggml") else {
        return;
    };
    let model = Model::load(&path, &LoadOptions::default()).unwrap();
    let tokens = model
        .tokenizer
        .encode(
            "The capital of France is Paris, and the capital of Italy is",
            true,
        )
        .unwrap();
    let ggml = one_token_steps(&model, Kernels::Ggml, &tokens);
    let ours = one_token_steps(&model, Kernels::Rbench, &tokens);
    for (step, (a, b)) in ggml.iter().zip(&ours).enumerate() {
        assert_close(&format!("step {step}"), a, b);
    }
}

/// `b` is `a` up to this model's amplified rounding: max difference under
/// 10% of the largest logit, and the same top token unless `a` has a
/// near-tie (within 1 logit, the parity tests' bound) there.
fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    assert!(
        diff < 0.1 * scale,
        "{what}: max difference {diff} of {scale}"
    );
    let (ia, ib) = (argmax(a), argmax(b));
    assert!(
        ia == ib || (a[ia] - a[ib]).abs() < 1.0,
        "{what}: ggml picks {ia}, rbench {ib}: {} logits apart",
        a[ia] - a[ib]
    );
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len())
        .max_by(|&i, &j| v[i].total_cmp(&v[j]))
        .unwrap_or(0)
}

/// A few tokens at once go through the multi-column kernels, whose sums
/// are ordered differently from ggml's tiled kernels: equal to rounding
/// (amplified by this model, see [`assert_close`]).
#[test]
fn few_token_batches_agree_with_ggml() {
    let Some(path) = test_model("few_token_batches_agree_with_ggml") else {
        return;
    };
    let model = Model::load(&path, &LoadOptions::default()).unwrap();
    let tokens = model
        .tokenizer
        .encode("Water boils at one hundred", true)
        .unwrap();
    let mut logits = Vec::new();
    for kernels in [Kernels::Ggml, Kernels::Rbench] {
        let cfg = EngineConfig {
            n_ctx: 256,
            n_threads: 2,
            kernels,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(&model, cfg).unwrap();
        let out = engine
            .decode(&Batch::from_prompt(&tokens, 0, 0).unwrap())
            .unwrap();
        logits.push(out.last().unwrap().to_vec());
    }
    let (a, b) = (&logits[0], &logits[1]);
    // (On the test model " degrees" leads by 1.7 logits, beyond the
    // near-tie bound, so the top token is the same on any CPU.)
    assert_close("prompt", a, b);
    let ia = argmax(a);
    let mut rest = a.clone();
    rest[ia] = f32::NEG_INFINITY;
    eprintln!("top-two margin {:.3} logits", a[ia] - rest[argmax(&rest)]);
}

/// Where ggml repacks K-quant weights (AMX, CPU_REPACK) and rbench has
/// kernels for them, each keeps a plain twin for generation, and only
/// K-quants do; with too little memory for both copies there are none.
#[test]
fn repacked_k_quants_keep_plain_twins_that_memory_can_hold() {
    let preset = synth::preset("llama-tiny").unwrap();
    let k_quants = synth::ensure_cached(preset, SynthFtype::Q4KM).unwrap();
    let model = Model::load(&k_quants, &LoadOptions::default()).unwrap();
    let repacks =
        !rbench::ggml::cpu_extra_buffer_types().is_empty() && model.weights.repacked_bytes > 0;
    if !(repacks && rbench::kernels::twin_worthy(rbench::quant::GgmlType::Q4_K)) {
        eprintln!("skipped: this CPU repacks no K-quants or has no rbench kernel for them");
        return;
    }
    assert!(model.weights.twin_bytes > 0);
    assert!(model.weights.twin_bytes <= model.weights.repacked_bytes);
    let note = model.weights.twins_note().unwrap();
    assert!(note.contains("kept twice"), "{note}");

    let block32 = synth::ensure_cached(preset, SynthFtype::Q8_0).unwrap();
    let model = Model::load(&block32, &LoadOptions::default()).unwrap();
    assert_eq!(model.weights.twin_bytes, 0);

    // `rbench tg` on the K-quant model, with this much memory (or the
    // machine's): its stderr.
    let tg_stderr = |memory: Option<u64>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rbench"));
        cmd.args(["tg", "-m", k_quants.to_str().unwrap()])
            .args(["-n", "2", "-r", "1", "-t", "2"]);
        if let Some(bytes) = memory {
            cmd.env("RBENCH_MEM_AVAILABLE", bytes.to_string());
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    assert!(tg_stderr(None).contains("kept twice"));
    // Memory for the model but not for a second copy and 1 GiB: no twins.
    let scarce = std::fs::metadata(&k_quants).unwrap().len() + (100 << 20);
    let stderr = tg_stderr(Some(scarce));
    assert!(!stderr.contains("kept twice"), "{stderr}");
}

/// Without repacking (batch-invariant runs), the K-quant weights rbench's
/// kernels multiply are read from a huge-page copy of the mapping where
/// memory holds it; the numbers are the mapping's bit for bit.
#[test]
fn plain_k_quants_are_copied_into_huge_pages_without_changing_a_logit() {
    let preset = synth::preset("llama-tiny").unwrap();
    let k_quants = synth::ensure_cached(preset, SynthFtype::Q4KM).unwrap();
    if !rbench::kernels::twin_worthy(rbench::quant::GgmlType::Q4_K) {
        eprintln!("skipped: this CPU has no rbench kernel for K-quants");
        return;
    }
    let plain = |copies: bool| LoadOptions {
        repack: false,
        plain_twins: copies,
        ..LoadOptions::default()
    };
    let copied = Model::load(&k_quants, &plain(true)).unwrap();
    let mapped = Model::load(&k_quants, &plain(false)).unwrap();
    assert_eq!(mapped.weights.huge_copy_bytes, 0);
    assert!(mapped.weights.huge_copy_note().is_none());
    let file_bytes = std::fs::metadata(&k_quants).unwrap().len();
    // Every matrix but the embedding's lookups (llama-tiny's are all
    // K-quants), never more than the file holds.
    assert!(copied.weights.huge_copy_bytes > file_bytes / 2);
    assert!(copied.weights.huge_copy_bytes < file_bytes);
    let note = copied.weights.huge_copy_note().unwrap();
    assert!(note.contains("huge pages"), "{note}");

    let tokens = [1u32, 523, 77, 3001, 9];
    let a = one_token_steps(&copied, Kernels::Rbench, &tokens);
    let b = one_token_steps(&mapped, Kernels::Rbench, &tokens);
    assert_eq!(a, b);
}
