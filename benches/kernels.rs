//! rbench's few-column matmul kernels against ggml's `mul_mat` on the same
//! weights and activations, both as a node of a ggml graph on ggml's
//! threads: `cargo bench --bench kernels` (plain timing loop, no harness).
//!
//! Reported: weight GB/s (weight bytes / time: every weight byte is read
//! once per product) and int8 GOP/s (2·rows·k·N), for N = 1, 2, 4, 8, 16
//! columns and 1 and 2 threads. ggml and rbench runs alternate (A B A B)
//! and the median of each is kept, so load from other processes hits both
//! alike. `KB_REPS` sets the repetitions (default 9).
//! `KB_COLUMNS` (e.g. `1,2`) picks the column counts, `KB_TYPES` (e.g.
//! `q4_K,q6_K`) the weight types, `KB_INVARIANT=1` the batch-invariant
//! paths (no tiled path for many columns), `KB_ISA` (`avx2`, `scalar`)
//! another instruction set than the best one this CPU has.
//!
//! The ceiling beside the GB/s is the machine's memory read bandwidth,
//! measured first as `rbench sysinfo` measures it (one thread, and all
//! threads of the run). Matrices that fit in the caches can beat it.

use std::time::Instant;

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use rbench::ggml::{
    alloc_ctx_tensors, cpu_extra_buffer_types, tensor_get_f32, tensor_set, tensor_set_f32,
    weight_supported, BufferType, Context, CpuBackend, Gallocr, Graph, WeightOp,
};
use rbench::kernels;
use rbench::quant::{random_blocks, GgmlType};
use rbench::system::{measure_read_bandwidth, BandwidthTest};

struct Case {
    name: &'static str,
    ty: GgmlType,
    k: usize,
    rows: usize,
}

const CASES: [Case; 8] = [
    // The test model's tied output projection (token_embd, ~170 MiB).
    Case {
        name: "output 262144x640",
        ty: GgmlType::Q8_0,
        k: 640,
        rows: 262144,
    },
    // Its FFN gate/up projections, 18 layers' worth so they do not sit in cache.
    Case {
        name: "ffn_up 2048x640 x18",
        ty: GgmlType::Q5_0,
        k: 640,
        rows: 2048 * 18,
    },
    // Its FFN down projections (Q4_K in the file's Q4_K_M mix) ...
    Case {
        name: "ffn_down 640x2048 x18",
        ty: GgmlType::Q4_K,
        k: 2048,
        rows: 640 * 18,
    },
    // Q5_K, which Q4_K_M files of other shapes use (Q5_K_M files more).
    Case {
        name: "ffn_down 640x2048 x18",
        ty: GgmlType::Q5_K,
        k: 2048,
        rows: 640 * 18,
    },
    // ... and the ones kept at Q6_K.
    Case {
        name: "ffn_down 640x2048 x18",
        ty: GgmlType::Q6_K,
        k: 2048,
        rows: 640 * 18,
    },
    // A typical Q4_K_M file (Llama 3.2 1B): FFN gate/up at Q4_K, four
    // layers' worth (38 MB, beyond the last-level cache) ...
    Case {
        name: "llama-1b ffn_up 8192x2048 x4",
        ty: GgmlType::Q4_K,
        k: 2048,
        rows: 8192 * 4,
    },
    // A Q4_0 file's FFN gate/up (36 MB).
    Case {
        name: "llama-1b ffn_up 8192x2048 x4",
        ty: GgmlType::Q4_0,
        k: 2048,
        rows: 8192 * 4,
    },
    // ... and FFN down at Q6_K (55 MB).
    Case {
        name: "llama-1b ffn_down 2048x8192 x4",
        ty: GgmlType::Q6_K,
        k: 8192,
        rows: 2048 * 4,
    },
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let reps: usize = std::env::var("KB_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(9);
    // `KB_COLUMNS=1,2` limits the column counts (default 1, 2, 4, 8, 16).
    let columns: Vec<usize> = std::env::var("KB_COLUMNS")
        .ok()
        .map(|s| s.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1, 2, 4, 8, 16]);
    // `KB_INVARIANT=1` times the batch-invariant paths (no tiled path).
    let invariant = std::env::var("KB_INVARIANT").is_ok_and(|v| v == "1");
    // `KB_ISA=avx2` times another instruction set than the best one.
    let isa = std::env::var("KB_ISA")
        .ok()
        .and_then(|name| {
            kernels::Isa::ALL
                .into_iter()
                .find(|i| i.name() == name && i.available())
        })
        .unwrap_or_else(|| kernels::best().isa());
    println!(
        "rbench kernel: {}{}; median of {reps} alternating runs",
        isa.name(),
        if invariant {
            " (batch-invariant paths)"
        } else {
            ""
        }
    );
    let bandwidth = measure_read_bandwidth(BandwidthTest::QUICK, 2, None);
    let ceiling = |threads: usize| {
        if threads == 1 {
            bandwidth.single_thread_gbs
        } else {
            bandwidth.all_threads_gbs
        }
    };
    println!(
        "memory read ceiling (rbench sysinfo's test): {:.1} GB/s one thread, {:.1} GB/s two",
        ceiling(1),
        ceiling(2)
    );
    // `KB_TYPES=q4_K,q6_K` limits the weight types.
    let types = std::env::var("KB_TYPES").ok();
    for case in CASES {
        if !isa.kernel().is_some_and(|k| k.supports(case.ty)) {
            continue;
        }
        if types
            .as_deref()
            .is_some_and(|t| !t.split(',').any(|t| t.trim() == case.ty.name()))
        {
            continue;
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let wbytes = random_blocks(case.ty, case.k * case.rows, &mut rng).unwrap();
        let weights = Context::for_tensors(1).unwrap();
        let w = weights
            .new_tensor_2d(case.ty, case.k as i64, case.rows as i64)
            .unwrap();
        let _wbuf = alloc_ctx_tensors(&weights, BufferType::cpu()).unwrap();
        tensor_set(w, &wbytes, 0).unwrap();
        // The same weights in ggml's repacked layout, where ggml has one for
        // the type on this CPU (its best kernel then).
        let repacked = Context::for_tensors(1).unwrap();
        let w_repacked = cpu_extra_buffer_types()
            .into_iter()
            .next()
            .filter(|&buft| weight_supported(buft, w, WeightOp::MulMat))
            .map(|buft| {
                let t = repacked
                    .new_tensor_2d(case.ty, case.k as i64, case.rows as i64)
                    .unwrap();
                let buf = alloc_ctx_tensors(&repacked, buft).unwrap();
                tensor_set(t, &wbytes, 0).unwrap();
                (t, buf)
            });
        let gb = wbytes.len() as f64 / 1e9;
        println!(
            "\n{} {} ({:.0} MB)\n| threads | N | ggml GB/s | ggml repacked GB/s | rbench GB/s | of ceiling | rbench GOP/s | rbench / best ggml |",
            case.name,
            case.ty,
            gb * 1e3
        );
        println!("|---|---|---|---|---|---|---|---|");
        for threads in [1, 2] {
            let mut cpu = CpuBackend::new().unwrap();
            cpu.set_n_threads(threads).unwrap();
            for &n in &columns {
                let xv: Vec<f32> = (0..case.k * n).map(|i| ((i as f32) * 0.37).sin()).collect();
                let ctx = Context::for_graph(8).unwrap();
                let x = ctx
                    .new_tensor_2d(GgmlType::F32, case.k as i64, n as i64)
                    .unwrap();
                x.set_input();
                let a = ctx.mul_mat(w, x).unwrap();
                let b = ctx.custom_mul_mat(w, x, isa, invariant).unwrap();
                let c = w_repacked
                    .as_ref()
                    .map(|(t, _)| ctx.mul_mat(*t, x).unwrap());
                let graph_of = |t| {
                    let mut g = Graph::new(&ctx, 8).unwrap();
                    g.build_forward_expand(t).unwrap();
                    let mut alloc = Gallocr::new(BufferType::cpu()).unwrap();
                    alloc.alloc_graph(&g).unwrap();
                    tensor_set_f32(x, &xv).unwrap();
                    (g, alloc)
                };
                let (ga, _alloc_a) = graph_of(a);
                let (gb_, _alloc_b) = graph_of(b);
                let gc = c.map(graph_of);
                // Warm up (page faults, thread start), and check agreement.
                cpu.compute(&ga).unwrap();
                cpu.compute(&gb_).unwrap();
                let (ra, rb) = (tensor_get_f32(a).unwrap(), tensor_get_f32(b).unwrap());
                let scale = ra.iter().fold(0f32, |m, v| m.max(v.abs()));
                let diff = ra
                    .iter()
                    .zip(&rb)
                    .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                assert!(diff <= 1e-4 * scale, "results differ: {diff} of {scale}");
                if let Some((g, _)) = &gc {
                    cpu.compute(g).unwrap();
                }
                let (mut ta, mut tb, mut tc) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..reps {
                    let t = Instant::now();
                    cpu.compute(&ga).unwrap();
                    ta.push(t.elapsed().as_secs_f64());
                    let t = Instant::now();
                    cpu.compute(&gb_).unwrap();
                    tb.push(t.elapsed().as_secs_f64());
                    if let Some((g, _)) = &gc {
                        let t = Instant::now();
                        cpu.compute(g).unwrap();
                        tc.push(t.elapsed().as_secs_f64());
                    }
                }
                let tc = (!tc.is_empty()).then(|| median(tc));
                let (ta, tb) = (median(ta), median(tb));
                let best_ggml = tc.map_or(ta, |tc| ta.min(tc));
                let ops = 2.0 * case.rows as f64 * case.k as f64 * n as f64;
                println!(
                    "| {threads} | {n} | {:.1} | {} | {:.1} | {:.0}% | {:.0} | {:.2} |",
                    gb / ta,
                    tc.map_or("-".to_string(), |tc| format!("{:.1}", gb / tc)),
                    gb / tb,
                    100.0 * gb / tb / ceiling(threads),
                    ops / tb / 1e9,
                    best_ggml / tb
                );
            }
        }
    }
}
