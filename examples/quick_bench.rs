//! Rough pp/tg timing through the engine API (a stand-in until `rbench bench`).
use rbench::engine::{Batch, Engine, EngineConfig};
use rbench::model::{weights::LoadOptions, Model};
use std::time::Instant;
fn main() {
    let path = std::env::args().nth(1).expect("model path");
    let fa = std::env::args().nth(2).is_none_or(|s| s == "on");
    let repack = std::env::args().nth(3).is_none_or(|s| s == "on");
    let model = Model::load(
        std::path::Path::new(&path),
        &LoadOptions {
            repack,
            ..Default::default()
        },
    )
    .unwrap();
    let mut e = Engine::new(
        &model,
        EngineConfig {
            n_ctx: 1024,
            flash_attn: fa,
            ..Default::default()
        },
    )
    .unwrap();
    let n_vocab = model.hparams.n_vocab;
    let toks: Vec<u32> = (0..512u32).map(|i| (i * 7919 + 13) % n_vocab).collect();
    // QB_PP512=1: only pp512 (for profiling prompt processing alone).
    let only_pp512 = std::env::var_os("QB_PP512").is_some();
    let sizes: &[usize] = if only_pp512 { &[512] } else { &[128, 512] };
    for &n in sizes {
        let mut best = f64::MAX;
        for _ in 0..4 {
            e.clear();
            let t = Instant::now();
            e.decode(&Batch::from_prompt(&toks[..n], 0, 0).unwrap())
                .unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("pp{n}: {:.1} t/s", n as f64 / best);
    }
    if only_pp512 {
        return;
    }
    e.clear();
    e.decode(&Batch::from_prompt(&toks[..1], 0, 0).unwrap())
        .unwrap();
    let t = Instant::now();
    for i in 1..129 {
        let mut b = Batch::new();
        b.add(toks[i % 512], i as i32, &[0], true).unwrap();
        e.decode(&b).unwrap();
    }
    println!(
        "tg128: {:.1} t/s (fa {fa}, repack {repack})",
        128.0 / t.elapsed().as_secs_f64()
    );
}
