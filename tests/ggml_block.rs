//! End-to-end use of the safe ggml API the way the model graph builders use
//! it: weights in their own context (kept as `TensorId`s in a struct), an F16
//! KV cache written with `set_rows`, one graph context per step allocated by
//! a reused `Gallocr`, flash attention with GQA and a causal mask. A prefill
//! of three tokens and one decode step are checked against a naive Rust
//! forward pass of the same tiny transformer block.

use half::f16;
use rbench::ggml::{
    alloc_ctx_tensors, tensor_get_f32, tensor_get_i32, tensor_set_f32, tensor_set_i32,
    BackendBuffer, BufferType, Context, CpuBackend, Gallocr, Graph, RopeMode, Tensor, TensorId,
};
use rbench::quant::GgmlType;

const N_EMBD: usize = 32;
const N_HEAD: usize = 4;
const N_HEAD_KV: usize = 2;
const HEAD_DIM: usize = 8;
const N_FF: usize = 48;
const N_VOCAB: usize = 16;
const N_CTX: usize = 8;
const EPS: f32 = 1e-6;
const ROPE_BASE: f32 = 10000.0;

fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
        })
        .collect()
}

/// Weight shapes `[ne0, ne1]` (ggml order: input size first).
const WEIGHTS: [(&str, usize, usize); 12] = [
    ("tok_embd", N_EMBD, N_VOCAB),
    ("attn_norm", N_EMBD, 1),
    ("wq", N_EMBD, N_HEAD * HEAD_DIM),
    ("wk", N_EMBD, N_HEAD_KV * HEAD_DIM),
    ("wv", N_EMBD, N_HEAD_KV * HEAD_DIM),
    ("wo", N_HEAD * HEAD_DIM, N_EMBD),
    ("ffn_norm", N_EMBD, 1),
    ("w_gate", N_EMBD, N_FF),
    ("w_up", N_EMBD, N_FF),
    ("w_down", N_FF, N_EMBD),
    ("out_norm", N_EMBD, 1),
    ("output", N_EMBD, N_VOCAB),
];

/// Weights kept next to their context, as a model struct would.
struct Model {
    ctx: Context,
    ids: Vec<TensorId>,
    data: Vec<Vec<f32>>,
    _buffer: BackendBuffer,
}

impl Model {
    fn new() -> Model {
        let ctx = Context::for_tensors(WEIGHTS.len()).unwrap();
        let mut ids = Vec::new();
        let mut data = Vec::new();
        for (i, &(name, ne0, ne1)) in WEIGHTS.iter().enumerate() {
            let t = ctx
                .new_tensor_2d(GgmlType::F32, ne0 as i64, ne1 as i64)
                .unwrap()
                .named(name);
            ids.push(ctx.tensor_id(t).unwrap());
            let scale = if name.ends_with("norm") { 0.5 } else { 0.4 };
            let mut v = values(100 + i as u64, ne0 * ne1, scale);
            if name.ends_with("norm") {
                v.iter_mut().for_each(|x| *x += 1.0);
            }
            data.push(v);
        }
        let buffer = alloc_ctx_tensors(&ctx, BufferType::cpu()).unwrap();
        buffer.set_usage_weights();
        for (id, v) in ids.iter().zip(&data) {
            tensor_set_f32(ctx.tensor(*id).unwrap(), v).unwrap();
        }
        Model {
            ctx,
            ids,
            data,
            _buffer: buffer,
        }
    }

    fn index(name: &str) -> usize {
        WEIGHTS.iter().position(|w| w.0 == name).unwrap()
    }

    fn t(&self, name: &str) -> Tensor<'_> {
        self.ctx.tensor(self.ids[Self::index(name)]).unwrap()
    }

    fn w(&self, name: &str) -> &[f32] {
        &self.data[Self::index(name)]
    }
}

struct KvCache {
    ctx: Context,
    k: TensorId,
    v: TensorId,
    buffer: BackendBuffer,
}

impl KvCache {
    fn new() -> KvCache {
        let ctx = Context::for_tensors(2).unwrap();
        let row = (N_HEAD_KV * HEAD_DIM) as i64;
        let k = ctx
            .new_tensor_2d(GgmlType::F16, row, N_CTX as i64)
            .unwrap()
            .named("cache_k");
        let v = ctx
            .new_tensor_2d(GgmlType::F16, row, N_CTX as i64)
            .unwrap()
            .named("cache_v");
        let (k, v) = (ctx.tensor_id(k).unwrap(), ctx.tensor_id(v).unwrap());
        let buffer = alloc_ctx_tensors(&ctx, BufferType::cpu()).unwrap();
        buffer.clear(0).unwrap();
        KvCache { ctx, k, v, buffer }
    }
}

fn norm_mul<'a>(ctx: &'a Context, x: Tensor<'a>, w: Tensor<'a>) -> Tensor<'a> {
    let n = ctx.rms_norm(x, EPS).unwrap();
    ctx.mul(n, w).unwrap()
}

/// The first `n_cells` cells of a cache as `[head_dim, n_cells, n_head_kv]`.
fn kv_view<'a>(ctx: &'a Context, cache: Tensor<'a>, n_cells: usize) -> Tensor<'a> {
    let row_bytes = cache.nb()[1];
    let view = ctx
        .view_3d(
            cache,
            HEAD_DIM as i64,
            N_HEAD_KV as i64,
            n_cells as i64,
            2 * HEAD_DIM,
            row_bytes,
            0,
        )
        .unwrap();
    ctx.permute(view, 0, 2, 1, 3).unwrap()
}

/// Runs the block on `tokens` at positions `pos0..`; returns the logits of
/// every token and the argmax of the last one.
fn step(
    model: &Model,
    cache: &KvCache,
    galloc: &mut Gallocr,
    backend: &mut CpuBackend,
    tokens: &[i32],
    pos0: usize,
) -> (Vec<f32>, i32) {
    let n_tok = tokens.len();
    let n_cells = pos0 + n_tok;
    let ctx = Context::for_graph(128).unwrap();
    let mut graph = Graph::new(&ctx, 128).unwrap();
    let (k_cache, v_cache) = (
        cache.ctx.tensor(cache.k).unwrap(),
        cache.ctx.tensor(cache.v).unwrap(),
    );
    let hd = HEAD_DIM as i64;

    let tok = ctx
        .new_tensor_1d(GgmlType::I32, n_tok as i64)
        .unwrap()
        .named("tokens");
    let pos = ctx
        .new_tensor_1d(GgmlType::I32, n_tok as i64)
        .unwrap()
        .named("pos");
    let mask = ctx
        .new_tensor_2d(GgmlType::F16, n_cells as i64, n_tok as i64)
        .unwrap()
        .named("mask");
    for t in [tok, pos, mask] {
        t.set_input();
    }

    let inp = ctx.get_rows(model.t("tok_embd"), tok).unwrap();
    let x = norm_mul(&ctx, inp, model.t("attn_norm"));
    let rope = |t| {
        ctx.rope_ext(
            t,
            pos,
            None,
            HEAD_DIM,
            RopeMode::NEOX,
            0,
            ROPE_BASE,
            1.0,
            0.0,
            1.0,
            32.0,
            1.0,
        )
        .unwrap()
    };
    let q = ctx
        .reshape_3d(
            ctx.mul_mat(model.t("wq"), x).unwrap(),
            hd,
            N_HEAD as i64,
            n_tok as i64,
        )
        .unwrap();
    let q = rope(q);
    let k = ctx
        .reshape_3d(
            ctx.mul_mat(model.t("wk"), x).unwrap(),
            hd,
            N_HEAD_KV as i64,
            n_tok as i64,
        )
        .unwrap();
    let k = rope(k);
    let v = ctx.mul_mat(model.t("wv"), x).unwrap();

    // Write this step's K/V into cache cells pos0.. before attention reads them.
    let row = (N_HEAD_KV * HEAD_DIM) as i64;
    let k_rows = ctx.reshape_2d(k, row, n_tok as i64).unwrap();
    graph
        .build_forward_expand(ctx.set_rows(k_cache, k_rows, pos).unwrap())
        .unwrap();
    graph
        .build_forward_expand(ctx.set_rows(v_cache, v, pos).unwrap())
        .unwrap();

    let q = ctx.permute(q, 0, 2, 1, 3).unwrap();
    let scale = 1.0 / (HEAD_DIM as f32).sqrt();
    let attn = ctx
        .flash_attn_ext(
            q,
            kv_view(&ctx, k_cache, n_cells),
            kv_view(&ctx, v_cache, n_cells),
            Some(mask),
            scale,
            0.0,
            0.0,
        )
        .unwrap();
    ctx.flash_attn_ext_set_prec_f32(attn).unwrap();
    let attn = ctx
        .reshape_2d(attn, (N_HEAD * HEAD_DIM) as i64, n_tok as i64)
        .unwrap();
    let h = ctx
        .add(ctx.mul_mat(model.t("wo"), attn).unwrap(), inp)
        .unwrap();

    let y = norm_mul(&ctx, h, model.t("ffn_norm"));
    let gate = ctx.mul_mat(model.t("w_gate"), y).unwrap();
    let up = ctx.mul_mat(model.t("w_up"), y).unwrap();
    let down = ctx
        .mul_mat(model.t("w_down"), ctx.swiglu_split(gate, up).unwrap())
        .unwrap();
    let h = ctx.add(down, h).unwrap();
    let logits = ctx
        .mul_mat(model.t("output"), norm_mul(&ctx, h, model.t("out_norm")))
        .unwrap()
        .named("logits");
    let last = ctx
        .view_2d(
            logits,
            N_VOCAB as i64,
            1,
            logits.nb()[1],
            (n_tok - 1) * logits.nb()[1],
        )
        .unwrap();
    let best = ctx.argmax(last).unwrap();
    for t in [logits, best] {
        t.set_output();
        graph.build_forward_expand(t).unwrap();
    }

    galloc.alloc_graph(&graph).unwrap();
    tensor_set_i32(tok, tokens).unwrap();
    let positions: Vec<i32> = (pos0..n_cells).map(|p| p as i32).collect();
    tensor_set_i32(pos, &positions).unwrap();
    let mut m = vec![f32::NEG_INFINITY; n_cells * n_tok];
    for i in 0..n_tok {
        m[i * n_cells..i * n_cells + pos0 + i + 1].fill(0.0);
    }
    tensor_set_f32(mask, &m).unwrap();
    backend.compute(&graph).unwrap();
    (
        tensor_get_f32(logits).unwrap(),
        tensor_get_i32(best).unwrap()[0],
    )
}

// ------------------------------------------------------------ naive reference

fn matvec(w: &[f32], x: &[f32], n_out: usize) -> Vec<f32> {
    let n_in = x.len();
    (0..n_out)
        .map(|o| (0..n_in).map(|i| w[o * n_in + i] * x[i]).sum())
        .collect()
}

fn rms_norm_mul(x: &[f32], w: &[f32]) -> Vec<f32> {
    let inv = 1.0 / (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32 + EPS).sqrt();
    x.iter().zip(w).map(|(v, g)| v * inv * g).collect()
}

fn rope_neox(head: &mut [f32], pos: usize) {
    let half = head.len() / 2;
    for i in 0..half {
        let theta = pos as f32 * ROPE_BASE.powf(-2.0 * i as f32 / head.len() as f32);
        let (a, b) = (head[i], head[i + half]);
        head[i] = a * theta.cos() - b * theta.sin();
        head[i + half] = a * theta.sin() + b * theta.cos();
    }
}

fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| f16::from_f32(x).to_f32()).collect()
}

/// Logits of every position of `tokens`, computed one token at a time.
fn naive_forward(model: &Model, tokens: &[i32]) -> Vec<Vec<f32>> {
    let (mut ks, mut vs): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (Vec::new(), Vec::new());
    let mut out = Vec::new();
    for (p, &tok) in tokens.iter().enumerate() {
        let inp = model.w("tok_embd")[tok as usize * N_EMBD..][..N_EMBD].to_vec();
        let x = rms_norm_mul(&inp, model.w("attn_norm"));
        let mut q = matvec(model.w("wq"), &x, N_HEAD * HEAD_DIM);
        let mut k = matvec(model.w("wk"), &x, N_HEAD_KV * HEAD_DIM);
        let v = matvec(model.w("wv"), &x, N_HEAD_KV * HEAD_DIM);
        q.chunks_mut(HEAD_DIM).for_each(|h| rope_neox(h, p));
        k.chunks_mut(HEAD_DIM).for_each(|h| rope_neox(h, p));
        ks.push(round_f16(&k));
        vs.push(round_f16(&v));
        let q = round_f16(&q);
        let mut attn = vec![0f32; N_HEAD * HEAD_DIM];
        for h in 0..N_HEAD {
            let hk = h / (N_HEAD / N_HEAD_KV);
            let qh = &q[h * HEAD_DIM..][..HEAD_DIM];
            let scores: Vec<f32> = ks
                .iter()
                .map(|kc| {
                    qh.iter()
                        .zip(&kc[hk * HEAD_DIM..][..HEAD_DIM])
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
                        / (HEAD_DIM as f32).sqrt()
                })
                .collect();
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f32 = e.iter().sum();
            for (j, vc) in vs.iter().enumerate() {
                for c in 0..HEAD_DIM {
                    attn[h * HEAD_DIM + c] += e[j] / sum * vc[hk * HEAD_DIM + c];
                }
            }
        }
        let h: Vec<f32> = matvec(model.w("wo"), &attn, N_EMBD)
            .iter()
            .zip(&inp)
            .map(|(a, b)| a + b)
            .collect();
        let y = rms_norm_mul(&h, model.w("ffn_norm"));
        let gate = matvec(model.w("w_gate"), &y, N_FF);
        let up = matvec(model.w("w_up"), &y, N_FF);
        let act: Vec<f32> = gate
            .iter()
            .zip(&up)
            .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
            .collect();
        let h: Vec<f32> = matvec(model.w("w_down"), &act, N_EMBD)
            .iter()
            .zip(&h)
            .map(|(a, b)| a + b)
            .collect();
        out.push(matvec(
            model.w("output"),
            &rms_norm_mul(&h, model.w("out_norm")),
            N_VOCAB,
        ));
    }
    out
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= 0.01 * scale.max(1.0),
        "{what}: max diff {diff} (scale {scale})\n{got:?}\n{want:?}"
    );
}

#[test]
fn transformer_block_with_kv_cache_matches_naive_forward() {
    let model = Model::new();
    let cache = KvCache::new();
    let mut galloc = Gallocr::new(BufferType::cpu()).unwrap();
    let mut backend = CpuBackend::new().unwrap();
    backend.set_n_threads(2).unwrap();

    let tokens = [3i32, 14, 7, 9];
    let want = naive_forward(&model, &tokens);

    let (prefill, best) = step(&model, &cache, &mut galloc, &mut backend, &tokens[..3], 0);
    assert!(galloc.buffer_size() > 0);
    for (i, w) in want[..3].iter().enumerate() {
        assert_close(
            &prefill[i * N_VOCAB..][..N_VOCAB],
            w,
            &format!("prefill token {i}"),
        );
    }
    let want_best = (0..N_VOCAB).fold(0, |b, i| if want[2][i] > want[2][b] { i } else { b });
    assert_eq!(best as usize, want_best);

    // The graph context of that step is gone, so the allocator may be reused.
    assert!(!galloc.in_use());
    let (decode, _) = step(&model, &cache, &mut galloc, &mut backend, &tokens[3..], 3);
    assert_close(&decode, &want[3], "decode token 3");
    // The decode step really used the cached K/V of the prefill: attending
    // only to itself gives different logits.
    let alone = naive_forward(&model, &tokens[3..]);
    let moved = decode
        .iter()
        .zip(&alone[0])
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(moved > 1e-3, "decode ignored the cache");

    // The cache holds four written cells, the rest still cleared.
    let k_all = tensor_get_f32(cache.ctx.tensor(cache.k).unwrap()).unwrap();
    let row = N_HEAD_KV * HEAD_DIM;
    assert!(k_all[..4 * row].iter().any(|&v| v != 0.0));
    assert!(k_all[4 * row..].iter().all(|&v| v == 0.0));
    assert!(cache.buffer.size() >= 2 * N_CTX * row * 2);
}
