//! One decode step of synthetic models through the engine API, the hot path
//! of generation: `cargo bench --bench decode` (plain timing loop, no harness).
//! Prints the median and spread of single-token steps at a filled context.

use std::time::Instant;

use rbench::bench::stats::{percentile, Summary};
use rbench::engine::{Batch, Engine, EngineConfig};
use rbench::model::synth::{self, SynthFtype};
use rbench::model::weights::LoadOptions;
use rbench::model::Model;

fn main() {
    let dir = std::env::temp_dir().join("rbench-bench-decode");
    std::fs::create_dir_all(&dir).expect("temp dir");
    for name in ["llama-15m", "llama-125m", "gemma3-270m"] {
        let preset = synth::preset(name).expect("preset");
        let path = dir.join(format!("{name}.gguf"));
        if !path.exists() {
            synth::write_synthetic(preset, SynthFtype::Q4KM, 1, &path).expect("write model");
        }
        let model = Model::load(&path, &LoadOptions::default()).expect("load model");
        let mut engine = Engine::new(
            &model,
            EngineConfig {
                n_ctx: 512,
                ..EngineConfig::default()
            },
        )
        .expect("engine");
        let prompt: Vec<u32> = (0..128u32).map(|i| 3 + i % 90).collect();
        engine
            .decode(&Batch::from_prompt(&prompt, 0, 0).expect("batch"))
            .expect("prompt");
        let mut samples = Vec::new();
        for step in 0..64 {
            let pos = prompt.len() as i32 + step;
            let mut b = Batch::new();
            b.add(3 + (step as u32 % 90), pos, &[0], true)
                .expect("token");
            let t = Instant::now();
            engine.decode(&b).expect("decode");
            samples.push(t.elapsed().as_secs_f64() * 1e3);
        }
        match (Summary::of(&samples), percentile(&samples, 50.0), percentile(&samples, 90.0)) {
            (Some(s), Some(p50), Some(p90)) => println!(
                "{name:<12} decode step at depth 128: mean {:.3} ms, sd {:.3} ms, p50 {p50:.3} ms, p90 {p90:.3} ms ({} threads)",
                s.mean,
                s.stddev,
                engine.config().n_threads
            ),
            _ => println!("{name}: no samples"),
        }
    }
}
