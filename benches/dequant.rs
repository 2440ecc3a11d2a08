//! Throughput of the Rust quant paths next to ggml's own kernels:
//! `cargo bench --bench dequant` (plain timing loop, no harness).

use std::hint::black_box;
use std::time::Instant;

use rbench::ggml::traits::{ggml_quantize, ggml_to_float};
use rbench::quant::{
    dequantize, fill_random_blocks, quantize, GgmlType, RUST_DEQUANT_TYPES, RUST_QUANTIZE_TYPES,
};

/// Best-of-`reps` seconds for `f`.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let n = 1 << 22;
    println!("dequantize {n} elements (Melem/s; output GB/s)");
    for ty in RUST_DEQUANT_TYPES {
        let mut bytes = vec![0u8; ty.bytes_for(n as u64).unwrap() as usize];
        fill_random_blocks(ty, &mut bytes, 1).unwrap();
        let mut out = vec![0f32; n];
        let rust = time(5, || dequantize(ty, black_box(&bytes), &mut out).unwrap());
        let ggml = if ggml_to_float(ty, &bytes, &mut out).is_ok() {
            let t = time(5, || {
                ggml_to_float(ty, black_box(&bytes), &mut out).unwrap()
            });
            format!("{:8.0} Melem/s", n as f64 / t / 1e6)
        } else {
            "no kernel".to_string()
        };
        println!(
            "  {:5} rust {:8.0} Melem/s ({:5.1} GB/s)   ggml {ggml}",
            ty.name(),
            n as f64 / rust / 1e6,
            n as f64 * 4.0 / rust / 1e9,
        );
    }

    let n = 1 << 20;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i as f32 * 0.618).sin() * 0.03) * (1.0 + (i % 7) as f32 * 0.1))
        .collect();
    println!("quantize {n} elements (Melem/s)");
    for ty in RUST_QUANTIZE_TYPES {
        let rust = time(3, || {
            black_box(quantize(ty, black_box(&x)).unwrap());
        });
        let ggml = time(3, || {
            black_box(ggml_quantize(ty, black_box(&x), 4096).unwrap());
        });
        println!(
            "  {:5} rust {:7.1}   ggml {:7.1}",
            ty.name(),
            n as f64 / rust / 1e6,
            n as f64 / ggml / 1e6
        );
    }

    let bytes = 1usize << 28;
    println!("fill_random_blocks {} MiB (GB/s)", bytes >> 20);
    for ty in [
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q8_0,
        GgmlType::F16,
    ] {
        let len = bytes / ty.type_size() * ty.type_size();
        let mut buf = vec![0u8; len];
        let t = time(3, || fill_random_blocks(ty, &mut buf, 3).unwrap());
        println!("  {:5} {:6.2}", ty.name(), len as f64 / t / 1e9);
    }
}
