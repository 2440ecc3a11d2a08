use rbench::engine::{Batch, Engine, EngineConfig};
use rbench::model::{weights::LoadOptions, Model};
fn main() {
    let path = std::env::args().nth(1).unwrap();
    for (repack, fa) in [(false, false), (false, false), (true, false), (false, true)] {
        {
            let model = Model::load(std::path::Path::new(&path), &LoadOptions { repack }).unwrap();
            let mut e = Engine::new(
                &model,
                EngineConfig {
                    n_ctx: 256,
                    flash_attn: fa,
                    n_threads: std::env::var("T").map(|t| t.parse().unwrap()).unwrap_or(2),
                    ..Default::default()
                },
            )
            .unwrap();
            let tok = &model.tokenizer;
            let ids = tok
                .encode("Once upon a time, in a small village, there lived a", true)
                .unwrap();
            let full = e
                .decode(&Batch::from_prompt(&ids, 0, 0).unwrap())
                .unwrap()
                .last()
                .unwrap()
                .to_vec();
            e.clear();
            let n = ids.len();
            e.decode(&Batch::from_prompt(&ids[..n - 1], 0, 0).unwrap())
                .unwrap();
            let inc = e
                .decode(&Batch::from_prompt(&ids[n - 1..], (n - 1) as i32, 0).unwrap())
                .unwrap()
                .last()
                .unwrap()
                .to_vec();
            let maxd = full
                .iter()
                .zip(&inc)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            println!(
                "repack={repack} fa={fa}: man {:.4}/{:.4} family {:.4}/{:.4} max|diff| {maxd:.4}",
                full[880], inc[880], full[2523], inc[2523]
            );
        }
    }
}
