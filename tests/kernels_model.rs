//! rbench's kernels inside the real test model's graph.

mod common;

use common::test_model;
use rbench::engine::{Batch, Engine, EngineConfig};
use rbench::kernels::Kernels;
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

/// The one-column kernels sum exactly as ggml's `vec_dot` does (same
/// per-lane integers, scale products and FMA order), so generation with
/// rbench's kernels gives ggml's logits bit for bit. (Without this, rounding
/// differences move this model's logits by up to ~1 after a few tokens,
/// as ggml's own repacked and plain kernels do against each other.)
#[test]
fn one_token_decode_is_bit_identical_to_ggml() {
    let Some(path) = test_model("one_token_decode_is_bit_identical_to_ggml") else {
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

/// A few tokens at once go through the multi-column kernels, whose sums
/// are ordered differently from ggml's tiled kernels: equal to rounding.
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
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    // Rounding, not a wrong product: a wrong row or scale moves logits by
    // whole units; rounding here moves them by well under 1% of the largest.
    assert!(diff < 0.01 * scale, "max difference {diff} of {scale}");
    let argmax = |v: &[f32]| {
        (0..v.len())
            .max_by(|&i, &j| v[i].total_cmp(&v[j]))
            .unwrap_or(0)
    };
    // The same next token, unless the two are within rounding of a tie (on
    // the test model " degrees" leads by 1.7 logits, beyond the parity
    // tests' near-tie bound of 1.0, so this holds on any CPU).
    let (ia, ib) = (argmax(a), argmax(b));
    assert!(
        ia == ib || (a[ia] - a[ib]).abs() < 1.0,
        "ggml picks {ia}, rbench {ib}: {} logits apart",
        a[ia] - a[ib]
    );
    let mut rest = a.clone();
    rest[ia] = f32::NEG_INFINITY;
    eprintln!("top-two margin {:.3} logits", a[ia] - rest[argmax(&rest)]);
}
