//! Tests of the wrapper: ops computed on the CPU backend against naive Rust
//! reference implementations, buffers, the graph allocator, and the errors
//! that replace ggml's aborts.

use half::f16;

use super::*;
use crate::quant::GgmlType;

// ---------------------------------------------------------------- helpers

/// Deterministic values in [-1, 1).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// ggml's `mul_mat(a, b)` for `a` = `[k, n]`, `b` = `[k, m]`: `[n, m]`.
fn naive_mul_mat(a: &[f32], b: &[f32], k: usize, n: usize, m: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * m];
    for j in 0..m {
        for i in 0..n {
            out[j * n + i] = (0..k)
                .map(|x| a[i * k + x] as f64 * b[j * k + x] as f64)
                .sum::<f64>() as f32;
        }
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `|a - b| / |b|` over whole vectors.
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

fn cpu(n_threads: usize) -> CpuBackend {
    let mut backend = CpuBackend::new().unwrap();
    backend.set_n_threads(n_threads).unwrap();
    backend
}

/// Allocates the graph with a fresh allocator, runs `set_inputs`, computes.
fn run_graph(graph: &Graph<'_>, set_inputs: impl FnOnce()) {
    let mut galloc = Gallocr::new(BufferType::cpu()).unwrap();
    galloc.alloc_graph(graph).unwrap();
    set_inputs();
    cpu(2).compute(graph).unwrap();
}

fn quantize(ty: GgmlType, data: &[f32], n_per_row: usize) -> Vec<u8> {
    runtime::ensure_init();
    let size = ty.bytes_for(data.len() as u64).unwrap() as usize;
    let mut out = vec![0u8; size];
    let n_rows = data.len() / n_per_row;
    assert_eq!(n_rows * n_per_row, data.len());
    // SAFETY: `data` holds n_rows rows of n_per_row floats and `out` exactly
    // the bytes of that many `ty` elements; no importance matrix is passed
    // (Q8_0 and Q4_K do not need one).
    let written = unsafe {
        sys::ggml_quantize_chunk(
            ty.id(),
            data.as_ptr(),
            out.as_mut_ptr().cast(),
            0,
            n_rows as i64,
            n_per_row as i64,
            std::ptr::null(),
        )
    };
    assert_eq!(written, size);
    out
}

fn dequantize(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let n = bytes.len() / ty.type_size() * ty.block_size();
    assert_eq!(ty.bytes_for(n as u64), Some(bytes.len() as u64));
    // SAFETY: ggml returns its static traits entry for every valid type id.
    let traits = unsafe { &*sys::ggml_get_type_traits(ty.id()) };
    let to_float = traits.to_float.expect("type has a to_float kernel");
    let mut out = vec![0f32; n];
    // SAFETY: `bytes` holds exactly `n` elements of `ty`, `out` has room for `n` floats.
    unsafe { to_float(bytes.as_ptr().cast(), out.as_mut_ptr(), n as i64) };
    out
}

fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| f16::from_f32(x).to_f32()).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

// ---------------------------------------------------------------- ops

#[test]
fn mul_mat_f32_matches_naive() {
    let (k, n, m) = (64, 16, 5);
    let (av, bv) = (values(1, k * n), values(2, k * m));
    let ctx = Context::for_graph(16).unwrap();
    let a = ctx
        .new_tensor_2d(GgmlType::F32, k as i64, n as i64)
        .unwrap();
    let b = ctx
        .new_tensor_2d(GgmlType::F32, k as i64, m as i64)
        .unwrap();
    a.set_input();
    b.set_input();
    let out = ctx.mul_mat(a, b).unwrap();
    ctx.mul_mat_set_prec_f32(out).unwrap();
    assert_eq!(out.ne(), [n as i64, m as i64, 1, 1]);
    assert_eq!(out.ty(), GgmlType::F32);
    let mut graph = Graph::new(&ctx, 16).unwrap();
    graph.build_forward_expand(out).unwrap();
    assert_eq!(graph.n_nodes(), 1);
    assert_eq!(graph.n_leafs(), 2);
    assert!(graph.node(0).unwrap().same_as(out));
    assert!(graph.node(1).is_none());
    run_graph(&graph, || {
        tensor_set_f32(a, &av).unwrap();
        tensor_set_f32(b, &bv).unwrap();
    });
    let got = tensor_get_f32(out).unwrap();
    let want = naive_mul_mat(&av, &bv, k, n, m);
    assert!(max_abs_diff(&got, &want) < 1e-4, "{got:?} vs {want:?}");
}

#[test]
fn mul_mat_quantized_weights_match_dequantized_naive() {
    for ty in [GgmlType::Q8_0, GgmlType::Q4_K] {
        let (k, n, m) = (512, 16, 3);
        let wv = values(3, k * n);
        let xv = values(4, k * m);
        let q = quantize(ty, &wv, k);
        let deq = dequantize(ty, &q);
        // The quantization is real: it changes the weights, within reason.
        let q_err = rel_l2(&deq, &wv);
        assert!(
            q_err > 1e-4 && q_err < 0.1,
            "{ty}: quantization error {q_err}"
        );

        let ctx = Context::for_graph(16).unwrap();
        let w = ctx.new_tensor_2d(ty, k as i64, n as i64).unwrap();
        let x = ctx
            .new_tensor_2d(GgmlType::F32, k as i64, m as i64)
            .unwrap();
        w.set_input();
        x.set_input();
        let out = ctx.mul_mat(w, x).unwrap();
        let mut graph = Graph::new(&ctx, 16).unwrap();
        graph.build_forward_expand(out).unwrap();
        run_graph(&graph, || {
            tensor_set(w, &q, 0).unwrap();
            tensor_set_f32(x, &xv).unwrap();
        });
        let got = tensor_get_f32(out).unwrap();
        let want = naive_mul_mat(&deq, &xv, k, n, m);
        // ggml also quantizes the activations (to Q8_0 / Q8_K).
        let err = rel_l2(&got, &want);
        assert!(err < 0.01, "{ty}: relative error {err}");
        let vs_float = rel_l2(&got, &naive_mul_mat(&wv, &xv, k, n, m));
        assert!(vs_float < 0.1, "{ty}: error vs unquantized {vs_float}");
    }
}

#[test]
fn add_mul_rms_norm_scale_match_naive() {
    let (d, rows) = (8, 3);
    let (xv, wv) = (values(5, d * rows), values(6, d));
    let eps = 1e-5;
    let ctx = Context::for_graph(16).unwrap();
    let x = ctx
        .new_tensor_2d(GgmlType::F32, d as i64, rows as i64)
        .unwrap();
    let w = ctx.new_tensor_1d(GgmlType::F32, d as i64).unwrap();
    x.set_input();
    w.set_input();
    let normed = ctx.rms_norm(x, eps).unwrap();
    let weighted = ctx.mul(normed, w).unwrap();
    let residual = ctx.add(weighted, x).unwrap();
    let out = ctx.scale(residual, 0.5).unwrap().named("out");
    let mut graph = Graph::new(&ctx, 16).unwrap();
    graph.build_forward_expand(out).unwrap();
    run_graph(&graph, || {
        tensor_set_f32(x, &xv).unwrap();
        tensor_set_f32(w, &wv).unwrap();
    });
    let got = tensor_get_f32(out).unwrap();
    let mut want = Vec::new();
    for r in xv.chunks(d) {
        let ms = r.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        want.extend(r.iter().zip(&wv).map(|(v, wi)| 0.5 * (v * inv * wi + v)));
    }
    assert!(max_abs_diff(&got, &want) < 1e-5, "{got:?} vs {want:?}");
    assert_eq!(out.name(), "out");
}

#[test]
fn norm_matches_naive() {
    let d = 16;
    let xv = values(7, d * 2);
    let ctx = Context::for_graph(8).unwrap();
    let x = ctx.new_tensor_2d(GgmlType::F32, d as i64, 2).unwrap();
    x.set_input();
    let out = ctx.norm(x, 1e-6).unwrap();
    let mut graph = Graph::new(&ctx, 8).unwrap();
    graph.build_forward_expand(out).unwrap();
    run_graph(&graph, || tensor_set_f32(x, &xv).unwrap());
    let got = tensor_get_f32(out).unwrap();
    let mut want = Vec::new();
    for r in xv.chunks(d) {
        let mean = r.iter().sum::<f32>() / d as f32;
        let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / d as f32;
        want.extend(r.iter().map(|v| (v - mean) / (var + 1e-6).sqrt()));
    }
    assert!(max_abs_diff(&got, &want) < 1e-4);
}

#[test]
fn soft_max_ext_with_causal_mask_matches_naive() {
    let (n_kv, n_q) = (6usize, 4usize);
    let scores = values(8, n_kv * n_q);
    let mut mask = vec![0f32; n_kv * n_q];
    for q in 0..n_q {
        for j in 0..n_kv {
            if j > q + 2 {
                mask[q * n_kv + j] = f32::NEG_INFINITY;
            }
        }
    }
    let scale = 0.5;
    let ctx = Context::for_graph(8).unwrap();
    let a = ctx
        .new_tensor_2d(GgmlType::F32, n_kv as i64, n_q as i64)
        .unwrap();
    let m = ctx
        .new_tensor_2d(GgmlType::F32, n_kv as i64, n_q as i64)
        .unwrap();
    a.set_input();
    m.set_input();
    let out = ctx.soft_max_ext(a, Some(m), scale, 0.0).unwrap();
    let mut graph = Graph::new(&ctx, 8).unwrap();
    graph.build_forward_expand(out).unwrap();
    run_graph(&graph, || {
        tensor_set_f32(a, &scores).unwrap();
        tensor_set_f32(m, &mask).unwrap();
    });
    let got = tensor_get_f32(out).unwrap();
    let mut want = Vec::new();
    for q in 0..n_q {
        let z: Vec<f32> = (0..n_kv)
            .map(|j| scores[q * n_kv + j] * scale + mask[q * n_kv + j])
            .collect();
        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = z.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        want.extend(e.iter().map(|v| v / sum));
    }
    assert!(max_abs_diff(&got, &want) < 1e-6, "{got:?} vs {want:?}");
    // Masked entries are exactly zero.
    assert_eq!(got[n_kv - 1], 0.0);
}

/// Hand-written rotary embedding of `x` = `[head_dim, n_head, n_tokens]`.
fn rope_reference(
    x: &[f32],
    head_dim: usize,
    n_head: usize,
    pos: &[i32],
    n_dims: usize,
    neox: bool,
) -> Vec<f32> {
    let mut out = x.to_vec();
    for (t, &p) in pos.iter().enumerate() {
        for h in 0..n_head {
            let base = (t * n_head + h) * head_dim;
            for i in 0..n_dims / 2 {
                let theta = p as f32 * 10000f32.powf(-2.0 * i as f32 / n_dims as f32);
                let (i0, i1) = if neox {
                    (i, i + n_dims / 2)
                } else {
                    (2 * i, 2 * i + 1)
                };
                let (x0, x1) = (x[base + i0], x[base + i1]);
                out[base + i0] = x0 * theta.cos() - x1 * theta.sin();
                out[base + i1] = x0 * theta.sin() + x1 * theta.cos();
            }
        }
    }
    out
}

#[test]
fn rope_ext_matches_handwritten_rope() {
    let (head_dim, n_head, n_tok) = (8usize, 2usize, 3usize);
    let pos = [0i32, 5, 11];
    let xv = values(9, head_dim * n_head * n_tok);
    for (mode, neox) in [(RopeMode::NORMAL, false), (RopeMode::NEOX, true)] {
        for n_dims in [8usize, 4] {
            let ctx = Context::for_graph(8).unwrap();
            let x = ctx
                .new_tensor_3d(GgmlType::F32, head_dim as i64, n_head as i64, n_tok as i64)
                .unwrap();
            let p = ctx.new_tensor_1d(GgmlType::I32, n_tok as i64).unwrap();
            x.set_input();
            p.set_input();
            let out = ctx
                .rope_ext(
                    x, p, None, n_dims, mode, 0, 10000.0, 1.0, 0.0, 1.0, 32.0, 1.0,
                )
                .unwrap();
            let mut graph = Graph::new(&ctx, 8).unwrap();
            graph.build_forward_expand(out).unwrap();
            run_graph(&graph, || {
                tensor_set_f32(x, &xv).unwrap();
                tensor_set_i32(p, &pos).unwrap();
            });
            let got = tensor_get_f32(out).unwrap();
            let want = rope_reference(&xv, head_dim, n_head, &pos, n_dims, neox);
            assert!(
                max_abs_diff(&got, &want) < 1e-4,
                "mode {mode:?} n_dims {n_dims}: {got:?} vs {want:?}"
            );
            // Position 0 is the identity; later positions really rotate.
            assert!(max_abs_diff(&got[..head_dim * n_head], &xv[..head_dim * n_head]) < 1e-6);
            assert!(max_abs_diff(&got, &xv) > 0.1);
        }
    }
}

#[test]
fn flash_attn_ext_matches_naive_attention() {
    let (d, n_q, n_kv, n_head, n_head_kv) = (16usize, 3usize, 7usize, 4usize, 2usize);
    let qv = values(10, d * n_q * n_head);
    let kv = round_f16(&values(11, d * n_kv * n_head_kv));
    let vv = round_f16(&values(12, d * n_kv * n_head_kv));
    let mut mask = vec![0f32; n_kv * n_q];
    for q in 0..n_q {
        for j in (n_kv - n_q + q + 1)..n_kv {
            mask[q * n_kv + j] = f32::NEG_INFINITY;
        }
    }
    let scale = 1.0 / (d as f32).sqrt();

    let ctx = Context::for_graph(16).unwrap();
    let q = ctx
        .new_tensor_3d(GgmlType::F32, d as i64, n_q as i64, n_head as i64)
        .unwrap();
    let k = ctx
        .new_tensor_3d(GgmlType::F16, d as i64, n_kv as i64, n_head_kv as i64)
        .unwrap();
    let v = ctx
        .new_tensor_3d(GgmlType::F16, d as i64, n_kv as i64, n_head_kv as i64)
        .unwrap();
    let m = ctx
        .new_tensor_2d(GgmlType::F16, n_kv as i64, n_q as i64)
        .unwrap();
    for t in [q, k, v, m] {
        t.set_input();
    }
    let out = ctx
        .flash_attn_ext(q, k, v, Some(m), scale, 0.0, 0.0)
        .unwrap();
    ctx.flash_attn_ext_set_prec_f32(out).unwrap();
    assert_eq!(out.ne(), [d as i64, n_head as i64, n_q as i64, 1]);
    let mut graph = Graph::new(&ctx, 16).unwrap();
    graph.build_forward_expand(out).unwrap();
    run_graph(&graph, || {
        tensor_set_f32(q, &qv).unwrap();
        tensor_set_f32(k, &kv).unwrap();
        tensor_set_f32(v, &vv).unwrap();
        tensor_set_f32(m, &mask).unwrap();
    });
    let got = tensor_get_f32(out).unwrap();

    let qr = round_f16(&qv); // the CPU kernel dots in F16
    let mut want = vec![0f32; d * n_head * n_q];
    for h in 0..n_head {
        let hk = h / (n_head / n_head_kv);
        for qi in 0..n_q {
            let qrow = &qr[(h * n_q + qi) * d..][..d];
            let s: Vec<f64> = (0..n_kv)
                .map(|j| {
                    let krow = &kv[(hk * n_kv + j) * d..][..d];
                    let dot: f64 = qrow
                        .iter()
                        .zip(krow)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum();
                    dot * scale as f64 + mask[qi * n_kv + j] as f64
                })
                .collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for c in 0..d {
                let acc: f64 = (0..n_kv)
                    .map(|j| e[j] / sum * vv[(hk * n_kv + j) * d + c] as f64)
                    .sum();
                want[(qi * n_head + h) * d + c] = acc as f32;
            }
        }
    }
    assert!(
        max_abs_diff(&got, &want) < 5e-3,
        "{}",
        max_abs_diff(&got, &want)
    );
}

/// rbench's attention node and ggml's flash attention, in one graph over
/// the same cache views as the model builder makes (heads interleaved per
/// cell, a prompt after cached cells, padded mask rows), on 1 to 3 threads.
#[test]
fn custom_attention_matches_flash_attn_ext_over_cache_views() {
    if !crate::kernels::attention::available() {
        eprintln!("skipped custom_attention_matches_flash_attn_ext_over_cache_views: no AVX-512");
        return;
    }
    // 70 tokens: ggml takes its tiled F32 path (64 or more rows).
    let (d, n_tok, cached, n_head, n_head_kv) = (32usize, 70usize, 30usize, 4usize, 2usize);
    let n_kv = cached + n_tok;
    let n_ctx = n_kv + 10;
    let (mask_cols, mask_rows) = (n_kv + 6, n_tok + 2);
    let qv = values(20, d * n_head * n_tok);
    let cache_k = values(21, d * n_head_kv * n_ctx);
    let cache_v = values(22, d * n_head_kv * n_ctx);
    let mut mask = vec![f32::NEG_INFINITY; mask_cols * mask_rows];
    for t in 0..n_tok {
        for c in 0..=cached + t {
            // A sliding window of 40 cells, as Gemma's local layers have.
            if cached + t - c < 40 {
                mask[t * mask_cols + c] = 0.0;
            }
        }
    }
    let scale = 1.0 / (d as f32).sqrt();

    let cache_ctx = Context::for_tensors(2).unwrap();
    let kc = cache_ctx
        .new_tensor_2d(GgmlType::F16, (d * n_head_kv) as i64, n_ctx as i64)
        .unwrap();
    let vc = cache_ctx
        .new_tensor_2d(GgmlType::F16, (d * n_head_kv) as i64, n_ctx as i64)
        .unwrap();
    let _cache = alloc_ctx_tensors(&cache_ctx, BufferType::cpu()).unwrap();
    tensor_set_f32(kc, &cache_k).unwrap();
    tensor_set_f32(vc, &cache_v).unwrap();

    for threads in 1..=3 {
        let ctx = Context::for_graph(16).unwrap();
        let q = ctx
            .new_tensor_3d(GgmlType::F32, d as i64, n_head as i64, n_tok as i64)
            .unwrap();
        let m = ctx
            .new_tensor_2d(GgmlType::F16, mask_cols as i64, mask_rows as i64)
            .unwrap();
        q.set_input();
        m.set_input();
        let (row_k, row_v) = (kc.nb()[1], vc.nb()[1]);
        let kview = ctx
            .view_3d(
                kc,
                d as i64,
                n_kv as i64,
                n_head_kv as i64,
                row_k,
                row_k / n_head_kv,
                0,
            )
            .unwrap();
        let vview = ctx
            .view_3d(
                vc,
                d as i64,
                n_kv as i64,
                n_head_kv as i64,
                row_v,
                row_v / n_head_kv,
                0,
            )
            .unwrap();
        let mview = ctx
            .view_2d(m, n_kv as i64, n_tok as i64, m.nb()[1], 0)
            .unwrap();
        assert_eq!(attention_problem(q, kview, vview, mview), None);
        let ours = ctx.custom_attention(q, kview, vview, mview, scale).unwrap();
        let qp = ctx.permute(q, 0, 2, 1, 3).unwrap();
        let theirs = ctx
            .flash_attn_ext(qp, kview, vview, Some(m), scale, 0.0, 0.0)
            .unwrap();
        ctx.flash_attn_ext_set_prec_f32(theirs).unwrap();
        assert_eq!(ours.ne(), theirs.ne());
        let mut graph = Graph::new(&ctx, 16).unwrap();
        graph.build_forward_expand(ours).unwrap();
        graph.build_forward_expand(theirs).unwrap();
        let mut galloc = Gallocr::new(BufferType::cpu()).unwrap();
        galloc.alloc_graph(&graph).unwrap();
        tensor_set_f32(q, &qv).unwrap();
        tensor_set_f32(m, &mask).unwrap();
        cpu(threads).compute(&graph).unwrap();
        let (a, b) = (
            tensor_get_f32(ours).unwrap(),
            tensor_get_f32(theirs).unwrap(),
        );
        // Both compute in F32 from the same F16 K/V; they differ by summation order.
        assert!(
            max_abs_diff(&a, &b) < 1e-5,
            "threads {threads}: {}",
            max_abs_diff(&a, &b)
        );
    }
}

#[test]
fn custom_attention_refuses_what_it_cannot_run() {
    let ctx = Context::for_graph(16).unwrap();
    let q = ctx.new_tensor_3d(GgmlType::F32, 32, 4, 8).unwrap();
    let k = ctx.new_tensor_3d(GgmlType::F16, 32, 20, 2).unwrap();
    let m = ctx.new_tensor_2d(GgmlType::F16, 20, 8).unwrap();
    let k8 = ctx.new_tensor_3d(GgmlType::Q8_0, 32, 20, 2).unwrap();
    let k3 = ctx.new_tensor_3d(GgmlType::F16, 32, 20, 3).unwrap();
    let short_mask = ctx.new_tensor_2d(GgmlType::F16, 19, 8).unwrap();
    let q24 = ctx.new_tensor_3d(GgmlType::F32, 24, 4, 8).unwrap();
    let k24 = ctx.new_tensor_3d(GgmlType::F16, 24, 20, 2).unwrap();
    for (q, k, m) in [(q, k8, m), (q, k3, m), (q, k, short_mask), (q24, k24, m)] {
        assert!(attention_problem(q, k, k, m).is_some());
        assert!(ctx.custom_attention(q, k, k, m, 1.0).is_err());
    }
    assert_eq!(
        attention_problem(q, k, k, m).is_none(),
        crate::kernels::attention::available()
    );
}

#[test]
fn set_rows_writes_cache_cells_and_get_rows_reads_them() {
    let (d, cells) = (4i64, 6i64);
    let cache_ctx = Context::for_tensors(1).unwrap();
    let cache = cache_ctx
        .new_tensor_2d(GgmlType::F16, d, cells)
        .unwrap()
        .named("cache");
    let cache_buf = alloc_ctx_tensors(&cache_ctx, BufferType::cpu()).unwrap();
    assert!(cache_buf.size() >= cache.n_bytes());
    assert!(cache_buf.is_host() && !cache_buf.is_read_only());
    tensor_set_f32(cache, &vec![7.0; (d * cells) as usize]).unwrap();

    let src_v = values(13, (d * 2) as usize);
    let ctx = Context::for_graph(16).unwrap();
    let src = ctx.new_tensor_2d(GgmlType::F32, d, 2).unwrap();
    let idx = ctx.new_tensor_1d(GgmlType::I64, 2).unwrap();
    let gather = ctx.new_tensor_1d(GgmlType::I32, 3).unwrap();
    for t in [src, idx, gather] {
        t.set_input();
    }
    let stored = ctx.set_rows(cache, src, idx).unwrap();
    let out = ctx.get_rows(stored, gather).unwrap();
    assert_eq!(out.ne(), [d, 3, 1, 1]);
    let mut graph = Graph::new(&ctx, 16).unwrap();
    graph.build_forward_expand(out).unwrap();
    run_graph(&graph, || {
        tensor_set_f32(src, &src_v).unwrap();
        let idx_bytes: Vec<u8> = [5i64, 1].iter().flat_map(|i| i.to_le_bytes()).collect();
        tensor_set(idx, &idx_bytes, 0).unwrap();
        tensor_set_i32(gather, &[1, 5, 0]).unwrap();
    });
    let got = tensor_get_f32(out).unwrap();
    let src_r = round_f16(&src_v);
    let mut want = src_r[4..8].to_vec();
    want.extend_from_slice(&src_r[..4]);
    want.extend_from_slice(&[7.0; 4]);
    assert_eq!(got, want);

    // The cache itself changed in exactly those cells.
    let all = tensor_get_f32(cache).unwrap();
    assert_eq!(&all[4..8], &src_r[4..8]);
    assert_eq!(&all[20..24], &src_r[..4]);
    assert!(all[..4].iter().chain(&all[8..20]).all(|&v| v == 7.0));

    cache_buf.clear(0).unwrap();
    assert!(tensor_get_f32(cache).unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn views_permute_transpose_reshape_cont() {
    let xv: Vec<f32> = (0..24).map(|i| i as f32).collect();
    let ctx = Context::for_graph(32).unwrap();
    let x = ctx.new_tensor_3d(GgmlType::F32, 4, 3, 2).unwrap();
    x.set_input();
    let permuted = ctx.permute(x, 0, 2, 1, 3).unwrap();
    assert_eq!(permuted.ne(), [4, 2, 3, 1]);
    assert!(!permuted.is_contiguous());
    let p = ctx.cont(permuted).unwrap();
    let rows = ctx.cont(ctx.view_2d(x, 4, 2, 16, 16).unwrap()).unwrap();
    let flat = ctx.reshape_2d(x, 4, 6).unwrap();
    let tr = ctx.cont(ctx.transpose(flat).unwrap()).unwrap();
    let strided = ctx
        .cont(ctx.view_3d(x, 2, 3, 2, 16, 48, 4).unwrap())
        .unwrap();
    let tail = ctx.cont(ctx.view_1d(x, 5, 19 * 4).unwrap()).unwrap();
    let r4 = ctx.reshape_4d(x, 2, 2, 3, 2).unwrap();
    let r3 = ctx.reshape_3d(r4, 12, 2, 1).unwrap();
    let v4 = ctx
        .cont(ctx.view_4d(r4, 1, 2, 3, 2, 8, 16, 48, 4).unwrap())
        .unwrap();
    let outs = [p, rows, tr, strided, tail, r3, v4];
    let mut graph = Graph::new(&ctx, 32).unwrap();
    for t in outs {
        t.set_output();
        graph.build_forward_expand(t).unwrap();
    }
    run_graph(&graph, || tensor_set_f32(x, &xv).unwrap());

    let x_at = |i0: usize, i1: usize, i2: usize| xv[i0 + 4 * i1 + 12 * i2];
    let mut want_p = Vec::new();
    for j2 in 0..3 {
        for j1 in 0..2 {
            for i0 in 0..4 {
                want_p.push(x_at(i0, j2, j1));
            }
        }
    }
    assert_eq!(tensor_get_f32(p).unwrap(), want_p);
    assert_eq!(tensor_get_f32(rows).unwrap(), xv[4..12].to_vec());
    let want_tr: Vec<f32> = (0..4)
        .flat_map(|j1| (0..6).map(move |j0| (j1 + 4 * j0) as f32))
        .collect();
    assert_eq!(tensor_get_f32(tr).unwrap(), want_tr);
    let mut want_s = Vec::new();
    for i2 in 0..2 {
        for i1 in 0..3 {
            for i0 in 0..2 {
                want_s.push(x_at(1 + i0, i1, i2));
            }
        }
    }
    assert_eq!(tensor_get_f32(strided).unwrap(), want_s);
    assert_eq!(tensor_get_f32(tail).unwrap(), xv[19..24].to_vec());
    assert_eq!(tensor_get_f32(r3).unwrap(), xv);
    // Every other element starting at 1: the odd numbers.
    let odd: Vec<f32> = (0..12).map(|i| (2 * i + 1) as f32).collect();
    assert_eq!(tensor_get_f32(v4).unwrap(), odd);
}

#[test]
fn unary_glu_concat_sqr_sum_rows_argmax_cast() {
    let d = 6usize;
    let (av, bv) = (values(14, d * 2), values(15, d * 2));
    let ctx = Context::for_graph(32).unwrap();
    let a = ctx.new_tensor_2d(GgmlType::F32, d as i64, 2).unwrap();
    let b = ctx.new_tensor_2d(GgmlType::F32, d as i64, 2).unwrap();
    a.set_input();
    b.set_input();
    let outs = [
        ctx.silu(a).unwrap(),
        ctx.gelu(a).unwrap(),
        ctx.tanh(a).unwrap(),
        ctx.swiglu_split(a, b).unwrap(),
        ctx.geglu_split(a, b).unwrap(),
        ctx.concat(a, b, 1).unwrap(),
        ctx.sqr(a).unwrap(),
        ctx.sum_rows(a).unwrap(),
        ctx.cast(a, GgmlType::F16).unwrap(),
    ];
    let am = ctx.argmax(a).unwrap();
    let copy_dst = ctx.new_tensor_1d(GgmlType::F32, (d * 2) as i64).unwrap();
    copy_dst.set_output();
    let copied = ctx.cpy(a, copy_dst).unwrap();
    let mut graph = Graph::new(&ctx, 32).unwrap();
    for t in outs.iter().chain([&am, &copied]) {
        t.set_output();
        graph.build_forward_expand(*t).unwrap();
    }
    run_graph(&graph, || {
        tensor_set_f32(a, &av).unwrap();
        tensor_set_f32(b, &bv).unwrap();
    });
    let silu = |x: f32| x / (1.0 + (-x).exp());
    let gelu = |x: f32| 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044_715 * x * x * x)).tanh());
    let map = |f: &dyn Fn(f32) -> f32| av.iter().map(|&x| f(x)).collect::<Vec<f32>>();
    let got = |i: usize| tensor_get_f32(outs[i]).unwrap();
    assert!(max_abs_diff(&got(0), &map(&silu)) < 1e-5);
    assert!(max_abs_diff(&got(1), &map(&gelu)) < 2e-3); // ggml's GELU uses an f16 table
    assert!(max_abs_diff(&got(2), &map(&|x: f32| x.tanh())) < 1e-5);
    let swiglu: Vec<f32> = av.iter().zip(&bv).map(|(&x, &y)| silu(x) * y).collect();
    assert!(max_abs_diff(&got(3), &swiglu) < 1e-5);
    let geglu: Vec<f32> = av.iter().zip(&bv).map(|(&x, &y)| gelu(x) * y).collect();
    assert!(max_abs_diff(&got(4), &geglu) < 2e-3);
    assert_eq!(outs[5].ne(), [d as i64, 4, 1, 1]);
    assert_eq!(got(5), [av.clone(), bv.clone()].concat());
    assert!(max_abs_diff(&got(6), &map(&|x: f32| x * x)) < 1e-7);
    let sums: Vec<f32> = av.chunks(d).map(|r| r.iter().sum()).collect();
    assert!(max_abs_diff(&got(7), &sums) < 1e-5);
    assert_eq!(outs[8].ty(), GgmlType::F16);
    assert_eq!(got(8), round_f16(&av));
    let argmax: Vec<i32> = av
        .chunks(d)
        .map(|r| (0..d).fold(0, |best, i| if r[i] > r[best] { i } else { best }) as i32)
        .collect();
    assert_eq!(tensor_get_i32(am).unwrap(), argmax);
    assert_eq!(tensor_get_f32(copy_dst).unwrap(), av);
}

#[test]
fn expert_routing_ops_match_naive() {
    // 4 experts [k, n], 3 tokens, 2 slots each.
    let (k, n, n_expert, t, used) = (8usize, 5usize, 4usize, 3usize, 2usize);
    let wv = values(21, k * n * n_expert);
    let xv = values(22, k * t);
    let scores = values(23, n_expert * t);
    let ctx = Context::for_graph(32).unwrap();
    let w = ctx
        .new_tensor_3d(GgmlType::F32, k as i64, n as i64, n_expert as i64)
        .unwrap();
    let x = ctx
        .new_tensor_3d(GgmlType::F32, k as i64, 1, t as i64)
        .unwrap();
    let s = ctx
        .new_tensor_2d(GgmlType::F32, n_expert as i64, t as i64)
        .unwrap();
    for i in [w, x, s] {
        i.set_input();
    }
    let top = ctx.argsort_top_k(s, used).unwrap();
    let top_c = ctx.cont(top).unwrap();
    let y = ctx.mul_mat_id(w, x, top).unwrap();
    let sums = ctx.sum_rows(s).unwrap();
    let ratio = ctx.div(s, sums).unwrap();
    let clamped = ctx.clamp(s, -0.25, 0.25).unwrap();
    let sig = ctx.sigmoid(s).unwrap();
    let mut graph = Graph::new(&ctx, 32).unwrap();
    for o in [top_c, y, ratio, clamped, sig] {
        o.set_output();
        graph.build_forward_expand(o).unwrap();
    }
    run_graph(&graph, || {
        tensor_set_f32(w, &wv).unwrap();
        tensor_set_f32(x, &xv).unwrap();
        tensor_set_f32(s, &scores).unwrap();
    });
    assert_eq!(y.ne(), [n as i64, used as i64, t as i64, 1]);
    let ids = tensor_get_i32(top_c).unwrap();
    let got = tensor_get_f32(y).unwrap();
    for tok in 0..t {
        let row = &scores[tok * n_expert..(tok + 1) * n_expert];
        let mut order: Vec<usize> = (0..n_expert).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let picked: Vec<usize> = ids[tok * used..(tok + 1) * used]
            .iter()
            .map(|&e| e as usize)
            .collect();
        assert_eq!(picked, order[..used], "token {tok}: largest first");
        for (slot, &e) in picked.iter().enumerate() {
            let expert = &wv[e * k * n..(e + 1) * k * n];
            let want = naive_mul_mat(expert, &xv[tok * k..(tok + 1) * k], k, n, 1);
            let at = (tok * used + slot) * n;
            assert!(
                max_abs_diff(&got[at..at + n], &want) < 1e-5,
                "token {tok} slot {slot}"
            );
        }
    }
    let want_ratio: Vec<f32> = scores
        .chunks(n_expert)
        .flat_map(|r| {
            let sum: f32 = r.iter().sum();
            r.iter().map(move |v| v / sum)
        })
        .collect();
    assert!(max_abs_diff(&tensor_get_f32(ratio).unwrap(), &want_ratio) < 1e-4);
    let want_clamp: Vec<f32> = scores.iter().map(|v| v.clamp(-0.25, 0.25)).collect();
    assert_eq!(tensor_get_f32(clamped).unwrap(), want_clamp);
    let want_sig: Vec<f32> = scores.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
    assert!(max_abs_diff(&tensor_get_f32(sig).unwrap(), &want_sig) < 1e-5);
    // What ggml would assert on is an error.
    assert!(ctx.argsort_top_k(s, n_expert + 1).is_err());
    assert!(ctx.mul_mat_id(w, x, s).is_err(), "F32 ids");
    let too_many = ctx.new_tensor_2d(GgmlType::I32, 5, t as i64).unwrap();
    assert!(ctx.mul_mat_id(w, x, too_many).is_err());
}

// ---------------------------------------------------------------- buffers

/// Bytes whose start is 64-byte aligned, like an mmap'ed file.
struct AlignedBytes {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBytes {
    fn new(len: usize) -> AlignedBytes {
        let storage = vec![0u8; len + 64];
        let start = (64 - storage.as_ptr() as usize % 64) % 64;
        AlignedBytes {
            storage,
            start,
            len,
        }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

impl AsRef<[u8]> for AlignedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

#[test]
fn zero_copy_host_buffer_feeds_a_graph() {
    let (k, n, m) = (32usize, 8usize, 3usize);
    let wv = values(16, k * n);
    let xv = values(17, k * m);
    let w_offset = 64;
    let mut file = AlignedBytes::new(4096);
    file.bytes_mut()[w_offset..w_offset + 4 * k * n].copy_from_slice(&f32_bytes(&wv));
    let buffer = BackendBuffer::from_host_bytes(file).unwrap();
    assert!(buffer.is_read_only() && buffer.is_host());
    assert_eq!(buffer.size(), 4096);

    let weights = Context::for_tensors(4).unwrap();
    let w = weights
        .new_tensor_2d(GgmlType::F32, k as i64, n as i64)
        .unwrap()
        .named("w");
    weights.place_tensor(w, &buffer, w_offset).unwrap();
    drop(buffer); // the context keeps it alive
    let mut back = vec![0u8; 4 * k * n];
    tensor_get(w, &mut back, 0).unwrap();
    assert_eq!(back, f32_bytes(&wv));

    let ctx = Context::for_graph(8).unwrap();
    let x = ctx
        .new_tensor_2d(GgmlType::F32, k as i64, m as i64)
        .unwrap();
    x.set_input();
    let out = ctx.mul_mat(w, x).unwrap();
    let mut graph = Graph::new(&ctx, 8).unwrap();
    graph.build_forward_expand(out).unwrap();
    run_graph(&graph, || tensor_set_f32(x, &xv).unwrap());
    let got = tensor_get_f32(out).unwrap();
    assert!(max_abs_diff(&got, &naive_mul_mat(&wv, &xv, k, n, m)) < 1e-4);

    // The borrowed memory is never written.
    assert!(matches!(
        tensor_set_f32(w, &wv),
        Err(GgmlError::ReadOnly { .. })
    ));
    let ctx2 = Context::for_graph(8).unwrap();
    let src = ctx2
        .new_tensor_2d(GgmlType::F32, k as i64, n as i64)
        .unwrap();
    let into_w = ctx2.cpy(src, w).unwrap();
    let mut g2 = Graph::new(&ctx2, 8).unwrap();
    g2.build_forward_expand(into_w).unwrap();
    let mut galloc = Gallocr::new(BufferType::cpu()).unwrap();
    galloc.alloc_graph(&g2).unwrap();
    assert!(matches!(
        cpu(1).compute(&g2),
        Err(GgmlError::ReadOnly { .. })
    ));
}

#[test]
fn host_buffer_placement_is_checked() {
    let mut file = AlignedBytes::new(256);
    file.bytes_mut()[0] = 1;
    let buffer = BackendBuffer::from_host_bytes(file).unwrap();
    assert!(matches!(buffer.clear(0), Err(GgmlError::ReadOnly { .. })));
    let ctx = Context::for_tensors(8).unwrap();
    let t = ctx.new_tensor_1d(GgmlType::F32, 16).unwrap();
    assert!(matches!(
        ctx.place_tensor(t, &buffer, 2),
        Err(GgmlError::Misaligned { align: 4, .. })
    ));
    assert!(matches!(
        ctx.place_tensor(t, &buffer, 200),
        Err(GgmlError::OutOfBounds { .. })
    ));
    assert!(matches!(
        ctx.place_tensor(t, &buffer, usize::MAX - 8),
        Err(GgmlError::OutOfBounds { .. })
    ));
    ctx.place_tensor(t, &buffer, 192).unwrap();
    assert!(matches!(
        ctx.place_tensor(t, &buffer, 0),
        Err(GgmlError::AlreadyAllocated { .. })
    ));
    let other = Context::for_tensors(1).unwrap();
    let foreign = other.new_tensor_1d(GgmlType::F32, 4).unwrap();
    assert!(matches!(
        ctx.place_tensor(foreign, &buffer, 0),
        Err(GgmlError::ForeignTensor { .. })
    ));

    // Bytes that do not start aligned: the buffer starts at the next aligned
    // address, offsets before it are refused.
    struct Shifted(AlignedBytes);
    impl AsRef<[u8]> for Shifted {
        fn as_ref(&self) -> &[u8] {
            &self.0.as_ref()[3..]
        }
    }
    let shifted = BackendBuffer::from_host_bytes(Shifted(AlignedBytes::new(128))).unwrap();
    assert_eq!(shifted.size(), 125 - 29);
    let b = ctx.new_tensor_1d(GgmlType::I8, 8).unwrap();
    assert!(matches!(
        ctx.place_tensor(b, &shifted, 0),
        Err(GgmlError::OutOfBounds { .. })
    ));
    ctx.place_tensor(b, &shifted, 29).unwrap();
    assert!(BackendBuffer::from_host_bytes(vec![0u8; 0]).is_err());
}

#[test]
fn alloc_ctx_tensors_allocates_once() {
    let ctx = Context::for_tensors(4).unwrap();
    let a = ctx.new_tensor_1d(GgmlType::F32, 10).unwrap();
    let b = ctx.new_tensor_2d(GgmlType::Q8_0, 64, 2).unwrap();
    assert!(!a.has_data());
    let buf = alloc_ctx_tensors(&ctx, BufferType::cpu()).unwrap();
    assert!(a.has_data() && b.has_data());
    assert!(buf.size() >= a.n_bytes() + b.n_bytes());
    assert_eq!(buf.name(), "CPU");
    buf.set_usage_weights();
    assert!(matches!(
        alloc_ctx_tensors(&ctx, BufferType::cpu()),
        Err(GgmlError::NothingToAllocate)
    ));
    let empty = Context::for_tensors(1).unwrap();
    assert!(matches!(
        alloc_ctx_tensors(&empty, BufferType::cpu()),
        Err(GgmlError::NothingToAllocate)
    ));
}

#[test]
fn tensor_data_io_is_checked() {
    let ctx = Context::for_tensors(4).unwrap();
    let t = ctx.new_tensor_1d(GgmlType::F32, 4).unwrap();
    assert!(matches!(
        tensor_set_f32(t, &[1.0; 4]),
        Err(GgmlError::NotAllocated { .. })
    ));
    let _buf = alloc_ctx_tensors(&ctx, BufferType::cpu()).unwrap();
    tensor_set_f32(t, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    tensor_set(t, &5f32.to_le_bytes(), 12).unwrap();
    assert_eq!(tensor_get_f32(t).unwrap(), [1.0, 2.0, 3.0, 5.0]);
    let mut two = [0u8; 8];
    tensor_get(t, &mut two, 4).unwrap();
    assert_eq!(two, f32_bytes(&[2.0, 3.0])[..]);
    assert!(matches!(
        tensor_set(t, &[0u8; 4], 13),
        Err(GgmlError::OutOfBounds { .. })
    ));
    assert!(matches!(
        tensor_get(t, &mut [0u8; 17], 0),
        Err(GgmlError::OutOfBounds { .. })
    ));
    assert!(matches!(
        tensor_set(t, &[0u8; 1], usize::MAX),
        Err(GgmlError::OutOfBounds { .. })
    ));
    assert!(matches!(
        tensor_set_f32(t, &[1.0; 3]),
        Err(GgmlError::InvalidArgument(_))
    ));
    assert!(matches!(
        tensor_set_i32(t, &[1; 4]),
        Err(GgmlError::TypeMismatch { .. })
    ));
    assert!(matches!(
        tensor_get_i32(t),
        Err(GgmlError::TypeMismatch { .. })
    ));
}

// ---------------------------------------------------------------- CPU extra buffer types

#[test]
fn cpu_extra_buffer_types_include_repack_on_avx2() {
    let extra = cpu_extra_buffer_types();
    let names: Vec<String> = extra.iter().map(|b| b.name()).collect();
    if cfg!(target_feature = "avx2") || cpu_features().contains(&"avx2") {
        assert!(names.iter().any(|n| n == "CPU_REPACK"), "{names:?}");
    }
    for buft in &extra {
        assert!(buft.is_cpu_extra());
        assert!(cpu(1).backend().supports_buffer_type(*buft));
    }
    assert!(!BufferType::cpu().is_cpu_extra());
}

fn repack_buft() -> Option<BufferType> {
    cpu_extra_buffer_types()
        .into_iter()
        .find(|b| b.name() == "CPU_REPACK")
}

#[test]
fn weight_supported_follows_the_repack_kernels() {
    let Some(repack) = repack_buft() else {
        eprintln!("skipped: no CPU_REPACK buffer type on this machine");
        return;
    };
    let ctx = Context::for_tensors(8).unwrap();
    let q4k = ctx.new_tensor_2d(GgmlType::Q4_K, 256, 64).unwrap();
    let q4k_odd_rows = ctx.new_tensor_2d(GgmlType::Q4_K, 256, 12).unwrap();
    let f32w = ctx.new_tensor_2d(GgmlType::F32, 256, 64).unwrap();
    let q6k = ctx.new_tensor_2d(GgmlType::Q6_K, 256, 64).unwrap();
    let has_avx2 = cpu_features().contains(&"avx2");
    assert_eq!(weight_supported(repack, q4k, WeightOp::MulMat), has_avx2);
    assert!(!weight_supported(repack, q4k_odd_rows, WeightOp::MulMat));
    assert!(!weight_supported(repack, f32w, WeightOp::MulMat));
    assert!(!weight_supported(repack, q4k, WeightOp::GetRows));
    if has_avx2 && !cpu_features().contains(&"neon") {
        // x86 has no repacked Q6_K kernel.
        assert!(!weight_supported(repack, q6k, WeightOp::MulMat));
    }
    // Plain CPU memory takes everything.
    for w in [q4k, q4k_odd_rows, f32w, q6k] {
        assert!(weight_supported(BufferType::cpu(), w, WeightOp::MulMat));
        assert!(weight_supported(BufferType::cpu(), w, WeightOp::GetRows));
    }
    // The probe does not touch the weight.
    assert!(q4k.buffer_ptr().is_null() && !q4k.has_data());
}

#[test]
fn q4_k_weight_in_cpu_repack_gives_the_plain_result() {
    let Some(repack) = repack_buft() else {
        eprintln!("skipped: no CPU_REPACK buffer type on this machine");
        return;
    };
    let (k, n) = (512usize, 32usize);
    let wv = values(18, k * n);
    let q = quantize(GgmlType::Q4_K, &wv, k);

    let plain_ctx = Context::for_tensors(1).unwrap();
    let w_plain = plain_ctx
        .new_tensor_2d(GgmlType::Q4_K, k as i64, n as i64)
        .unwrap();
    let _plain_buf = alloc_ctx_tensors(&plain_ctx, BufferType::cpu()).unwrap();
    tensor_set(w_plain, &q, 0).unwrap();

    let rep_ctx = Context::for_tensors(2).unwrap();
    let w_rep = rep_ctx
        .new_tensor_2d(GgmlType::Q4_K, k as i64, n as i64)
        .unwrap();
    let unsupported = rep_ctx.new_tensor_2d(GgmlType::Q4_K, k as i64, 12).unwrap();
    assert!(weight_supported(repack, w_rep, WeightOp::MulMat));
    let rep_buf = alloc_ctx_tensors(&rep_ctx, repack).unwrap();
    assert_eq!(rep_buf.name(), "CPU_REPACK");
    assert!(matches!(
        tensor_set(w_rep, &q[..144], 0),
        Err(GgmlError::Unsupported(_))
    ));
    tensor_set(w_rep, &q, 0).unwrap();
    assert!(matches!(
        tensor_get(w_rep, &mut [0u8; 16], 0),
        Err(GgmlError::Unsupported(_))
    ));
    let q12 = quantize(GgmlType::Q4_K, &wv[..k * 12], k);
    assert!(matches!(
        tensor_set(unsupported, &q12, 0),
        Err(GgmlError::Unsupported(_))
    ));

    for m in [1usize, 7] {
        let xv = values(19 + m as u64, k * m);
        let ctx = Context::for_graph(16).unwrap();
        let x = ctx
            .new_tensor_2d(GgmlType::F32, k as i64, m as i64)
            .unwrap();
        x.set_input();
        let y_plain = ctx.mul_mat(w_plain, x).unwrap();
        let y_rep = ctx.mul_mat(w_rep, x).unwrap();
        let mut graph = Graph::new(&ctx, 16).unwrap();
        for y in [y_plain, y_rep] {
            y.set_output();
            graph.build_forward_expand(y).unwrap();
        }
        run_graph(&graph, || tensor_set_f32(x, &xv).unwrap());
        let (a, b) = (
            tensor_get_f32(y_plain).unwrap(),
            tensor_get_f32(y_rep).unwrap(),
        );
        let err = rel_l2(&b, &a);
        assert!(err < 1e-4, "m={m}: repacked vs plain relative error {err}");
        let vs_naive = rel_l2(
            &b,
            &naive_mul_mat(&dequantize(GgmlType::Q4_K, &q), &xv, k, n, m),
        );
        assert!(vs_naive < 0.01, "m={m}: {vs_naive}");
    }

    // A repacked weight used in an op without a repacked kernel is refused.
    let ctx = Context::for_graph(8).unwrap();
    let rows = ctx.new_tensor_1d(GgmlType::I32, 2).unwrap();
    let got = ctx.get_rows(w_rep, rows).unwrap();
    let mut graph = Graph::new(&ctx, 8).unwrap();
    graph.build_forward_expand(got).unwrap();
    let mut galloc = Gallocr::new(BufferType::cpu()).unwrap();
    galloc.alloc_graph(&graph).unwrap();
    tensor_set_i32(rows, &[0, 1]).unwrap();
    assert!(matches!(
        cpu(1).compute(&graph),
        Err(GgmlError::Unsupported(_))
    ));
}

// ---------------------------------------------------------------- graph allocator

/// `softmax(silu(rms_norm(w·x + bias)))` with input `x` = `[k, m]`.
fn build_mlp<'a>(
    ctx: &'a Context,
    w: Tensor<'a>,
    bias: Tensor<'a>,
    k: usize,
    m: usize,
) -> (Tensor<'a>, Tensor<'a>) {
    let x = ctx
        .new_tensor_2d(GgmlType::F32, k as i64, m as i64)
        .unwrap();
    x.set_input();
    let h = ctx.mul_mat(w, x).unwrap();
    let h = ctx.add(h, bias).unwrap();
    let h = ctx.rms_norm(h, 1e-6).unwrap();
    let h = ctx.silu(h).unwrap();
    let out = ctx.soft_max_ext(h, None, 0.7, 0.0).unwrap();
    out.set_output();
    (x, out)
}

#[test]
fn gallocr_sizes_the_buffer_and_thread_counts_agree() {
    let (k, n, m) = (256usize, 64usize, 8usize);
    let (wv, xv, bv) = (values(30, k * n), values(31, k * m), values(32, n));
    let weights = Context::for_tensors(2).unwrap();
    let w = weights
        .new_tensor_2d(GgmlType::F32, k as i64, n as i64)
        .unwrap();
    let bias = weights.new_tensor_1d(GgmlType::F32, n as i64).unwrap();
    let _wbuf = alloc_ctx_tensors(&weights, BufferType::cpu()).unwrap();
    tensor_set_f32(w, &wv).unwrap();
    tensor_set_f32(bias, &bv).unwrap();

    let mut galloc = Gallocr::new(BufferType::cpu()).unwrap();
    assert_eq!(galloc.buffer_size(), 0);
    {
        let ctx = Context::for_graph(16).unwrap();
        let (_, out) = build_mlp(&ctx, w, bias, k, m);
        let mut graph = Graph::new(&ctx, 16).unwrap();
        graph.build_forward_expand(out).unwrap();
        galloc.reserve(&graph).unwrap();
    }
    let reserved = galloc.buffer_size();
    assert!(reserved >= 4 * (k * m + n * m), "compute buffer {reserved}");

    let ctx = Context::for_graph(16).unwrap();
    let (x, out) = build_mlp(&ctx, w, bias, k, m);
    let mut graph = Graph::new(&ctx, 16).unwrap();
    graph.build_forward_expand(out).unwrap();
    galloc.alloc_graph(&graph).unwrap();
    assert_eq!(galloc.buffer_size(), reserved);
    assert!(galloc.in_use());
    tensor_set_f32(x, &xv).unwrap();
    let mut backend = cpu(1);
    backend.compute(&graph).unwrap();
    let one = tensor_get_f32(out).unwrap();
    backend.set_n_threads(2).unwrap();
    assert_eq!(backend.n_threads(), 2);
    backend.compute(&graph).unwrap();
    let two = tensor_get_f32(out).unwrap();
    assert_eq!(
        one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        two.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // Each thread count has its own pool of workers; switching between them
    // (and computing repeatedly on one) keeps the results.
    for n_threads in [4, 2, 3, 1, 2] {
        backend.set_n_threads(n_threads).unwrap();
        for _ in 0..2 {
            backend.compute(&graph).unwrap();
            let again = tensor_get_f32(out).unwrap();
            assert!(one
                .iter()
                .zip(&again)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
    // Rows are softmax outputs of real data.
    for row in one.chunks(n) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    assert!(one.iter().any(|&v| (v - 1.0 / n as f32).abs() > 1e-4));

    // While that context lives, the allocator cannot move its buffer.
    assert!(matches!(
        galloc.alloc_graph(&graph),
        Err(GgmlError::GallocrInUse)
    ));
    assert!(matches!(
        galloc.reserve(&graph),
        Err(GgmlError::GallocrInUse)
    ));
    drop(graph);
    drop(ctx);
    assert!(!galloc.in_use());
    let ctx = Context::for_graph(16).unwrap();
    let (x, out) = build_mlp(&ctx, w, bias, k, m);
    let mut graph = Graph::new(&ctx, 16).unwrap();
    graph.build_forward_expand(out).unwrap();
    galloc.alloc_graph(&graph).unwrap();
    tensor_set_f32(x, &xv).unwrap();
    backend.compute(&graph).unwrap();
    assert_eq!(tensor_get_f32(out).unwrap(), two);
}

#[test]
fn scheduler_on_the_cpu_computes_what_the_cpu_backend_computes() {
    let (k, n, m) = (256usize, 64usize, 8usize);
    let (wv, xv, bv) = (values(40, k * n), values(41, k * m), values(42, n));
    let weights = Context::for_tensors(2).unwrap();
    let w = weights
        .new_tensor_2d(GgmlType::F32, k as i64, n as i64)
        .unwrap();
    let bias = weights.new_tensor_1d(GgmlType::F32, n as i64).unwrap();
    let _wbuf = alloc_ctx_tensors(&weights, BufferType::cpu()).unwrap();
    tensor_set_f32(w, &wv).unwrap();
    tensor_set_f32(bias, &bv).unwrap();

    let expected = {
        let ctx = Context::for_graph(16).unwrap();
        let (x, out) = build_mlp(&ctx, w, bias, k, m);
        let mut graph = Graph::new(&ctx, 16).unwrap();
        graph.build_forward_expand(out).unwrap();
        let mut galloc = Gallocr::new(BufferType::cpu()).unwrap();
        galloc.alloc_graph(&graph).unwrap();
        tensor_set_f32(x, &xv).unwrap();
        cpu(1).compute(&graph).unwrap();
        tensor_get_f32(out).unwrap()
    };

    let cpu_device = Device::cpu().expect("ggml registers a CPU device");
    // Only the CPU may be the last (fallback) backend.
    assert!(matches!(
        Scheduler::new(Vec::new(), 16, false),
        Err(GgmlError::InvalidArgument(_))
    ));
    let mut sched = Scheduler::new(vec![cpu_device.init_backend().unwrap()], 16, true).unwrap();
    sched.set_cpu_threads(2).unwrap();
    assert!(sched.set_cpu_threads(0).is_err());
    let ctx = Context::for_graph(16).unwrap();
    let (x, out) = build_mlp(&ctx, w, bias, k, m);
    let mut graph = Graph::new(&ctx, 16).unwrap();
    graph.build_forward_expand(out).unwrap();
    sched.reserve(&graph).unwrap();
    assert!(sched.buffer_size(0) >= 4 * (k * m + n * m));
    assert_eq!(sched.buffer_size(1), 0, "there is no second backend");
    sched.alloc_graph(&graph).unwrap();
    assert_eq!(sched.n_splits(), 1, "one backend, one split");
    tensor_set_f32(x, &xv).unwrap();
    sched.compute(&graph).unwrap();
    assert_eq!(
        tensor_get_f32(out)
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>(),
        expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // The graph's context pins the scheduler's buffers.
    assert!(matches!(
        sched.alloc_graph(&graph),
        Err(GgmlError::GallocrInUse)
    ));
    assert!(matches!(
        sched.set_cpu_threads(1),
        Err(GgmlError::GallocrInUse)
    ));
    drop(graph);
    drop(ctx);
    sched.set_cpu_threads(1).unwrap();
}

#[test]
fn gallocr_refuses_unallocated_tensors_of_other_contexts() {
    let other = Context::for_tensors(1).unwrap();
    let foreign = other.new_tensor_1d(GgmlType::F32, 4).unwrap();
    let ctx = Context::for_graph(8).unwrap();
    let out = ctx.sqr(foreign).unwrap();
    let mut graph = Graph::new(&ctx, 8).unwrap();
    graph.build_forward_expand(out).unwrap();
    let mut galloc = Gallocr::new(BufferType::cpu()).unwrap();
    assert!(matches!(
        galloc.alloc_graph(&graph),
        Err(GgmlError::ForeignTensor { .. })
    ));
    assert!(!galloc.in_use());
}

// ---------------------------------------------------------------- kept graphs

/// `y = w · (x + c)`: `w` in a lasting context, `c` in a shared one, `x` the
/// kept graph's input. Returns the graph's context-local ids of `x`.
fn keep_affine<'e>(kept: &KeptGraph<'e>, w: Tensor<'_>, c: Tensor<'_>) -> TensorId {
    let ctx = kept.context();
    let x = ctx.new_tensor_1d(GgmlType::F32, 4).unwrap();
    x.set_input();
    let y = ctx.mul_mat(w, ctx.add(x, c).unwrap()).unwrap();
    let mut graph = Graph::new(ctx, 8).unwrap();
    graph.build_forward_expand(y).unwrap();
    let id = ctx.tensor_id(x).unwrap();
    kept.keep(graph).unwrap();
    id
}

#[test]
fn kept_graph_computes_again_with_new_inputs_and_holds_shared_contexts() {
    let lasting = Context::for_tensors(1).unwrap();
    let w = lasting.new_tensor_2d(GgmlType::F32, 4, 3).unwrap();
    let _w_buf = alloc_ctx_tensors(&lasting, BufferType::cpu()).unwrap();
    let wv = values(3, 12);
    tensor_set_f32(w, &wv).unwrap();
    let shared = std::rc::Rc::new(Context::for_tensors(1).unwrap());
    let c = shared.new_tensor_1d(GgmlType::F32, 4).unwrap();
    alloc_ctx_tensors(&shared, BufferType::cpu()).unwrap();
    let cv = values(4, 4);
    tensor_set_f32(c, &cv).unwrap();

    let kept = KeptGraph::new(
        Context::for_graph(8).unwrap(),
        vec![shared.clone()],
        vec![&lasting],
    );
    let x = keep_affine(&kept, w, c);
    // The kept graph alone keeps the shared context (and its buffer) alive.
    drop(shared);
    let mut galloc = Gallocr::new(BufferType::cpu()).unwrap();
    galloc.alloc_graph(kept.graph().unwrap()).unwrap();
    let mut backend = cpu(2);
    for seed in [5, 6, 7] {
        let xv = values(seed, 4);
        tensor_set_f32(kept.context().tensor(x).unwrap(), &xv).unwrap();
        backend.compute_kept(&kept).unwrap();
        let graph = kept.graph().unwrap();
        let got = tensor_get_f32(graph.node(graph.n_nodes() - 1).unwrap()).unwrap();
        let sum: Vec<f32> = xv.iter().zip(&cv).map(|(a, b)| a + b).collect();
        let want = naive_mul_mat(&wv, &sum, 4, 3, 1);
        assert!(max_abs_diff(&got, &want) < 1e-5, "{got:?} vs {want:?}");
    }
    // The allocator stays pinned by the kept graph until it is dropped.
    let other = Context::for_graph(4).unwrap();
    let z = other.new_tensor_1d(GgmlType::F32, 4).unwrap();
    let mut g2 = Graph::new(&other, 4).unwrap();
    g2.build_forward_expand(other.sqr(z).unwrap()).unwrap();
    assert!(matches!(
        galloc.alloc_graph(&g2),
        Err(GgmlError::GallocrInUse)
    ));
    drop(kept);
    galloc.alloc_graph(&g2).unwrap();
}

#[test]
fn kept_graph_refuses_tensors_it_cannot_hold_and_a_second_graph() {
    let unlisted = Context::for_tensors(2).unwrap();
    let w = unlisted.new_tensor_2d(GgmlType::F32, 4, 3).unwrap();
    let c = unlisted.new_tensor_1d(GgmlType::F32, 4).unwrap();
    let kept = KeptGraph::new(Context::for_graph(8).unwrap(), Vec::new(), Vec::new());
    let ctx = kept.context();
    let x = ctx.new_tensor_1d(GgmlType::F32, 4).unwrap();
    let y = ctx.mul_mat(w, ctx.add(x, c).unwrap()).unwrap();
    let mut graph = Graph::new(ctx, 8).unwrap();
    graph.build_forward_expand(y).unwrap();
    assert!(matches!(
        kept.keep(graph),
        Err(GgmlError::ForeignTensor { .. })
    ));
    assert!(kept.graph().is_none());
    assert!(matches!(
        cpu(1).compute_kept(&kept),
        Err(GgmlError::InvalidArgument(_))
    ));

    // A graph living in another context is refused too.
    let elsewhere = Context::for_graph(4).unwrap();
    let mut graph = Graph::new(&elsewhere, 4).unwrap();
    graph
        .build_forward_expand(elsewhere.sqr(x).unwrap())
        .unwrap();
    assert!(matches!(
        kept.keep(graph),
        Err(GgmlError::InvalidArgument(_))
    ));

    // Listed, the same tensors are kept; a second graph is refused.
    let listed = KeptGraph::new(Context::for_graph(8).unwrap(), Vec::new(), vec![&unlisted]);
    keep_affine(&listed, w, c);
    let mut again = Graph::new(listed.context(), 8).unwrap();
    let z = listed.context().new_tensor_1d(GgmlType::F32, 4).unwrap();
    again
        .build_forward_expand(listed.context().sqr(z).unwrap())
        .unwrap();
    assert!(matches!(
        listed.keep(again),
        Err(GgmlError::InvalidArgument(_))
    ));
}

// ---------------------------------------------------------------- errors instead of aborts

#[test]
fn context_and_graph_capacity_are_errors() {
    let ctx = Context::for_tensors(2).unwrap();
    ctx.new_tensor_1d(GgmlType::F32, 1).unwrap();
    ctx.new_tensor_1d(GgmlType::F32, 1).unwrap();
    assert!(matches!(
        ctx.new_tensor_1d(GgmlType::F32, 1),
        Err(GgmlError::ContextFull { .. })
    ));
    assert!(matches!(
        Graph::new(&ctx, 4),
        Err(GgmlError::ContextFull { .. })
    ));

    let ctx = Context::for_graph(8).unwrap();
    let x = ctx.new_tensor_1d(GgmlType::F32, 4).unwrap();
    let a = ctx.sqr(x).unwrap();
    let b = ctx.sqr(a).unwrap();
    let c = ctx.sqr(b).unwrap();
    let mut graph = Graph::new(&ctx, 2).unwrap();
    assert!(matches!(
        graph.build_forward_expand(c),
        Err(GgmlError::GraphFull { nodes: 3, .. })
    ));
    // The failed expand left the graph as it was.
    assert_eq!(graph.n_nodes(), 0);
    graph.build_forward_expand(b).unwrap();
    assert_eq!((graph.n_nodes(), graph.n_leafs()), (2, 1));
    graph.build_forward_expand(b).unwrap();
    assert_eq!(graph.n_nodes(), 2);
    assert!(Graph::new(&ctx, 0).is_err());
}

#[test]
fn shape_errors_are_reported_not_aborted() {
    let ctx = Context::for_graph(64).unwrap();
    let f32t = |ne: &[i64]| match ne.len() {
        1 => ctx.new_tensor_1d(GgmlType::F32, ne[0]).unwrap(),
        2 => ctx.new_tensor_2d(GgmlType::F32, ne[0], ne[1]).unwrap(),
        _ => ctx
            .new_tensor_3d(GgmlType::F32, ne[0], ne[1], ne[2])
            .unwrap(),
    };
    let invalid = |r: Result<Tensor<'_>>| matches!(r, Err(GgmlError::InvalidOp { .. }));
    let a = f32t(&[8, 4]);
    let b = f32t(&[6, 4]);
    assert!(invalid(ctx.mul_mat(a, b)));
    assert!(invalid(ctx.add(a, b)));
    assert!(invalid(ctx.mul(a, f32t(&[3]))));
    assert!(invalid(
        ctx.mul_mat(ctx.transpose(a).unwrap(), f32t(&[4, 2]))
    ));
    assert!(invalid(ctx.reshape_2d(a, 5, 6)));
    assert!(invalid(ctx.reshape_2d(ctx.transpose(a).unwrap(), 4, 8)));
    assert!(invalid(ctx.view_1d(a, 33, 0)));
    assert!(invalid(ctx.view_1d(a, 8, 100)));
    assert!(invalid(ctx.view_2d(a, 8, 4, 40, 0)));
    assert!(invalid(ctx.view_1d(a, -1, 0)));
    assert!(invalid(ctx.view_4d(
        a,
        1,
        3,
        3,
        3,
        usize::MAX,
        usize::MAX,
        usize::MAX,
        0
    )));
    assert!(invalid(ctx.permute(a, 0, 1, 1, 3)));
    assert!(invalid(ctx.permute(a, 0, 1, 2, 4)));
    assert!(invalid(ctx.concat(a, b, 1)));
    assert!(invalid(ctx.concat(a, a, 4)));
    assert!(invalid(ctx.argmax(f32t(&[4, 2, 2]))));
    assert!(invalid(ctx.swiglu_split(a, b)));
    assert!(invalid(ctx.cpy(a, b)));
    assert!(invalid(ctx.cast(a, GgmlType::Q4_K)));
    let views_of_views = ctx.view_1d(a, 16, 64).unwrap();
    assert!(invalid(ctx.view_1d(views_of_views, 16, 4)));
    ctx.view_1d(views_of_views, 15, 4).unwrap();

    let q = ctx.new_tensor_2d(GgmlType::Q4_K, 256, 2).unwrap();
    assert!(ctx.new_tensor_2d(GgmlType::Q4_K, 100, 2).is_err());
    assert!(ctx.new_tensor_1d(GgmlType::F32, -3).is_err());
    assert!(ctx.new_tensor_2d(GgmlType::F32, i64::MAX, 4).is_err());
    assert!(invalid(ctx.view_1d(q, 100, 0)));
    assert!(invalid(ctx.rms_norm(q, 1e-6)));

    // rope
    let x = f32t(&[8, 2, 3]);
    let pos = ctx.new_tensor_1d(GgmlType::I32, 3).unwrap();
    let rope = |pos, n_dims| {
        ctx.rope_ext(
            x,
            pos,
            None,
            n_dims,
            RopeMode::NEOX,
            0,
            1e4,
            1.0,
            0.0,
            1.0,
            32.0,
            1.0,
        )
    };
    assert!(invalid(rope(pos, 7)));
    assert!(invalid(rope(pos, 10)));
    assert!(invalid(rope(
        ctx.new_tensor_1d(GgmlType::I32, 4).unwrap(),
        8
    )));
    assert!(invalid(rope(f32t(&[3]), 8)));
    let short_ff = f32t(&[2]);
    assert!(invalid(ctx.rope_ext(
        x,
        pos,
        Some(short_ff),
        8,
        RopeMode::NORMAL,
        0,
        1e4,
        1.0,
        0.0,
        1.0,
        32.0,
        1.0
    )));
    rope(pos, 8).unwrap();

    // softmax / attention masks
    let scores = f32t(&[6, 4]);
    assert!(invalid(ctx.soft_max_ext(
        scores,
        Some(f32t(&[6, 3])),
        1.0,
        0.0
    )));
    assert!(invalid(ctx.soft_max_ext(scores, None, 1.0, 8.0)));
    let q = f32t(&[16, 3, 4]);
    let k = ctx.new_tensor_3d(GgmlType::F16, 16, 7, 2).unwrap();
    let v = ctx.new_tensor_3d(GgmlType::F16, 16, 7, 2).unwrap();
    let m = |n_kv, n_q| ctx.new_tensor_2d(GgmlType::F16, n_kv, n_q).unwrap();
    assert!(invalid(ctx.flash_attn_ext(
        q,
        k,
        v,
        Some(m(6, 3)),
        1.0,
        0.0,
        0.0
    )));
    assert!(invalid(ctx.flash_attn_ext(
        q,
        k,
        v,
        Some(m(7, 2)),
        1.0,
        0.0,
        0.0
    )));
    assert!(invalid(ctx.flash_attn_ext(
        q,
        k,
        v,
        Some(f32t(&[7, 3])),
        1.0,
        0.0,
        0.0
    )));
    let k3 = ctx.new_tensor_3d(GgmlType::F16, 16, 7, 3).unwrap();
    assert!(invalid(ctx.flash_attn_ext(q, k3, k3, None, 1.0, 0.0, 0.0)));
    let v_short = ctx.new_tensor_3d(GgmlType::F16, 16, 5, 2).unwrap();
    assert!(invalid(
        ctx.flash_attn_ext(q, k, v_short, None, 1.0, 0.0, 0.0)
    ));
    ctx.flash_attn_ext(q, k, v, Some(m(7, 3)), 1.0, 0.0, 0.0)
        .unwrap();

    // rows
    let table = f32t(&[8, 10]);
    assert!(invalid(ctx.get_rows(table, f32t(&[2]))));
    let idx64 = ctx.new_tensor_1d(GgmlType::I64, 2).unwrap();
    assert!(invalid(ctx.set_rows(table, f32t(&[8, 3]), idx64)));
    assert!(invalid(ctx.set_rows(table, f32t(&[8, 2]), f32t(&[2]))));
    ctx.set_rows(table, f32t(&[8, 2]), idx64).unwrap();
    let i32_weights = ctx.new_tensor_2d(GgmlType::I32, 8, 2).unwrap();
    assert!(invalid(ctx.mul_mat(i32_weights, f32t(&[8, 1]))));
    let iq_table = ctx.new_tensor_2d(GgmlType::IQ2_XXS, 256, 4).unwrap();
    let rows = ctx.new_tensor_2d(GgmlType::F32, 256, 2).unwrap();
    assert!(invalid(ctx.set_rows(iq_table, rows, idx64)));
    let k_i8 = ctx.new_tensor_3d(GgmlType::I8, 16, 7, 2).unwrap();
    assert!(invalid(ctx.flash_attn_ext(q, k_i8, v, None, 1.0, 0.0, 0.0)));

    assert!(matches!(
        ctx.mul_mat_set_prec_f32(table),
        Err(GgmlError::InvalidOp { .. })
    ));
    assert!(matches!(
        ctx.flash_attn_ext_set_prec_f32(table),
        Err(GgmlError::InvalidOp { .. })
    ));
}

#[test]
fn compute_refuses_unallocated_graphs() {
    let ctx = Context::for_graph(8).unwrap();
    let x = ctx.new_tensor_1d(GgmlType::F32, 4).unwrap();
    let out = ctx.sqr(x).unwrap();
    let mut graph = Graph::new(&ctx, 8).unwrap();
    graph.build_forward_expand(out).unwrap();
    assert!(matches!(
        cpu(1).compute(&graph),
        Err(GgmlError::NotAllocated { .. })
    ));
}

#[test]
fn tensor_ids_and_names() {
    let ctx = Context::for_tensors(4).unwrap();
    let a = ctx
        .new_tensor_1d(GgmlType::F32, 4)
        .unwrap()
        .named("blk.0.attn_q.weight");
    let id = ctx.tensor_id(a).unwrap();
    assert!(ctx.tensor(id).unwrap().same_as(a));
    assert!(ctx
        .tensor_by_name("blk.0.attn_q.weight")
        .unwrap()
        .same_as(a));
    assert!(ctx.tensor_by_name("missing").is_none());
    let sq = ctx.sqr(a).unwrap().named("sq");
    assert!(ctx.tensor_by_name("sq").is_none());
    assert!(matches!(
        ctx.tensor_id(sq),
        Err(GgmlError::InvalidArgument(_))
    ));
    let other = Context::for_tensors(1).unwrap();
    assert!(matches!(
        other.tensor(id),
        Err(GgmlError::ForeignTensor { .. })
    ));
    assert!(matches!(
        other.tensor_id(a),
        Err(GgmlError::ForeignTensor { .. })
    ));
    assert!(ctx.owns(a) && !other.owns(a));

    let long = "x".repeat(70) + "é";
    a.set_name(&long);
    assert_eq!(a.name(), "x".repeat(63));
    a.set_name("ab\0cd");
    assert_eq!(a.name(), "ab");
    let accented = "é".repeat(40);
    a.set_name(&accented);
    assert_eq!(a.name(), "é".repeat(31));
    assert_eq!(a.op_name(), "NONE");
    assert_eq!(sq.op_name(), "SQR");
    assert_eq!(
        (a.element_size(), a.n_bytes(), a.n_elements(), a.n_dims()),
        (4, 16, 4, 1)
    );
    assert_eq!(a.nb(), [4, 16, 16, 16]);
    let dbg = format!("{a:?}");
    assert!(dbg.contains("F32") && dbg.contains("NONE"), "{dbg}");
}

#[test]
fn devices_are_listed() {
    let devices = Device::all();
    let cpu_dev = Device::cpu().expect("the CPU backend is registered");
    assert!(devices.contains(&cpu_dev));
    assert_eq!(cpu_dev.kind(), DeviceKind::Cpu);
    assert!(!cpu_dev.name().is_empty());
    let (_, total) = cpu_dev.memory();
    assert!(total > 0);
    let mut backend = cpu_dev.init_backend().unwrap();
    assert!(backend.is_cpu());
    backend.set_n_threads(1).unwrap();
    assert!(backend.set_n_threads(0).is_err());
    assert!(backend.device() == Some(cpu_dev));
    let buft = backend.default_buffer_type().unwrap();
    assert!(buft.is_host());
    assert!(buft.alignment() >= 16);
}
