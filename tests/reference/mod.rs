//! A naive f32 forward pass for llama (and Mixtral), qwen2, qwen3, qwen3moe,
//! gemma2, gemma3, phi3, mistral3 and gpt-oss GGUF models.
//!
//! Test support only: the engine's logits are checked against this. Every step
//! is written out in plain Rust (weights dequantized to f32 once, activations
//! in f32, norms and softmax summed in f64) so it reads like the architecture
//! description. Malformed input panics with a clear message, as test code may.
//!
//! Known, deliberate differences from ggml's CPU backend (all small):
//! - RoPE angles are computed directly in f64 (ggml multiplies f32 factors step
//!   by step), so the two drift apart slowly at large positions;
//! - GELU is the exact tanh formula (ggml's CPU backend reads an f16 table);
//! - products use f32 activations (ggml's quantized kernels first quantize the
//!   activations, e.g. to Q8_K).
#![allow(dead_code)] // each test crate uses a different part of this module

use std::collections::BTreeMap;

use rbench::gguf::GgufFile;
use rbench::model::layout::expected_tensors;
use rbench::model::{Arch, Hparams};
use rbench::quant::dequantize_to_vec;

/// `rows` rows of `cols` contiguous values (GGUF dims `[cols, rows]`),
/// applied as `y[r] = sum_c row_r[c] * x[c]`.
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

/// One transformer block; the optional tensors exist only for some architectures.
pub struct RefLayer {
    pub attn_norm: Vec<f32>,
    pub wq: Matrix,
    pub wk: Matrix,
    pub wv: Matrix,
    /// qwen2 and gpt-oss.
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    /// qwen3 and gemma3: RMS norm of each query / key head.
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub wo: Matrix,
    /// gpt-oss: the output projection's bias and one sink logit per query head.
    pub bo: Option<Vec<f32>>,
    pub sinks: Option<Vec<f32>>,
    /// gemma3 only.
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub ffn: RefFfn,
    /// gemma3 only.
    pub post_ffn_norm: Option<Vec<f32>>,
}

/// A gated FFN's three projections.
pub struct Gated {
    pub gate: Matrix,
    pub up: Matrix,
    pub down: Matrix,
}

/// A layer's feed-forward network.
pub enum RefFfn {
    Dense(Gated),
    /// A router scoring each expert, and the experts.
    Experts {
        router: Matrix,
        experts: Vec<Gated>,
        /// gpt-oss: biases of the router and of each expert's projections.
        biases: Option<ExpertBiases>,
    },
}

/// gpt-oss's expert biases: the router's, then per expert gate, up, down.
pub struct ExpertBiases {
    pub router: Vec<f32>,
    pub gate: Vec<Vec<f32>>,
    pub up: Vec<Vec<f32>>,
    pub down: Vec<Vec<f32>>,
}

/// Hyperparameters and every weight as f32.
pub struct RefModel {
    pub hp: Hparams,
    pub token_embd: Matrix,
    pub layers: Vec<RefLayer>,
    pub output_norm: Vec<f32>,
    /// `None`: the output projection is tied to `token_embd`.
    pub output: Option<Matrix>,
    /// Phi-3 128k's short LongRoPE divisors: the tests' contexts stay
    /// within the original one.
    pub rope_factors: Option<Vec<f32>>,
}

/// What one sequence has cached.
#[derive(Clone, Default)]
struct SeqKv {
    /// Position of each cached token, strictly increasing.
    pos: Vec<i32>,
    /// `k[layer][token]`: all KV heads of one token (`n_head_kv * head_dim_k`).
    k: Vec<Vec<Vec<f32>>>,
    /// `v[layer][token]`: `n_head_kv * head_dim_v` values.
    v: Vec<Vec<Vec<f32>>>,
}

/// The reference's KV cache: each sequence's keys and values per layer.
#[derive(Clone)]
pub struct RefState {
    n_layer: usize,
    seqs: BTreeMap<u32, SeqKv>,
}

impl RefState {
    /// Number of tokens cached for `seq`.
    pub fn seq_len(&self, seq: u32) -> usize {
        self.seqs.get(&seq).map_or(0, |s| s.pos.len())
    }

    /// Positions cached for `seq`, in order.
    pub fn seq_positions(&self, seq: u32) -> &[i32] {
        self.seqs.get(&seq).map_or(&[], |s| &s.pos)
    }

    /// Forgets the tokens of `seq` at positions `>= from_pos` (llama.cpp's
    /// `seq_rm(seq, from_pos, -1)`), so those positions can be fed again.
    pub fn truncate_seq(&mut self, seq: u32, from_pos: i32) {
        if let Some(s) = self.seqs.get_mut(&seq) {
            let keep = s.pos.iter().take_while(|&&p| p < from_pos).count();
            s.pos.truncate(keep);
            for rows in s.k.iter_mut().chain(s.v.iter_mut()) {
                rows.truncate(keep);
            }
        }
    }
}

/// Reads a tensor as f32, checking that its GGUF dims are `dims`.
fn load_f32(f: &GgufFile, name: &str, dims: &[u64]) -> Vec<f32> {
    let t = f
        .tensor(name)
        .unwrap_or_else(|| panic!("reference: tensor {name} is missing"));
    assert_eq!(
        t.dims, dims,
        "reference: tensor {name} has dims {:?}, expected {dims:?}",
        t.dims
    );
    dequantize_to_vec(t.ggml_type, f.tensor_data(t), t.n_elements as usize)
        .unwrap_or_else(|e| panic!("reference: cannot dequantize {name} ({}): {e}", t.ggml_type))
}

fn load_matrix(f: &GgufFile, name: &str, cols: u32, rows: u32) -> Matrix {
    Matrix {
        rows: rows as usize,
        cols: cols as usize,
        data: load_f32(f, name, &[cols as u64, rows as u64]),
    }
}

fn load_vector(f: &GgufFile, name: &str, len: u32) -> Vec<f32> {
    load_f32(f, name, &[len as u64])
}

/// The router and each expert of layer `il`, split out of the stacked tensors.
fn load_experts(f: &GgufFile, hp: &Hparams, il: u32) -> RefFfn {
    let (e, ff, n) = (hp.n_embd, hp.n_ff_exp, hp.n_expert);
    let name = |s: &str| format!("blk.{il}.{s}.weight");
    let stacked = |s: &str, cols: u32, rows: u32| {
        let all = load_f32(f, &name(s), &[cols as u64, rows as u64, n as u64]);
        let per = (cols * rows) as usize;
        all.chunks_exact(per)
            .map(|c| Matrix {
                rows: rows as usize,
                cols: cols as usize,
                data: c.to_vec(),
            })
            .collect::<Vec<_>>()
    };
    let gates = stacked("ffn_gate_exps", e, ff);
    let ups = stacked("ffn_up_exps", e, ff);
    let downs = stacked("ffn_down_exps", ff, e);
    let bias = |s: &str| format!("blk.{il}.{s}.bias");
    let per_expert = |s: &str, len: u32| -> Vec<Vec<f32>> {
        load_f32(f, &bias(s), &[len as u64, n as u64])
            .chunks_exact(len as usize)
            .map(<[f32]>::to_vec)
            .collect()
    };
    let biases = (hp.arch == Arch::GptOss).then(|| ExpertBiases {
        router: load_vector(f, &bias("ffn_gate_inp"), n),
        gate: per_expert("ffn_gate_exps", ff),
        up: per_expert("ffn_up_exps", ff),
        down: per_expert("ffn_down_exps", e),
    });
    RefFfn::Experts {
        biases,
        router: load_matrix(f, &name("ffn_gate_inp"), e, n),
        experts: gates
            .into_iter()
            .zip(ups)
            .zip(downs)
            .map(|((gate, up), down)| Gated { gate, up, down })
            .collect(),
    }
}

impl RefModel {
    /// Reads the hyperparameters and dequantizes every weight.
    pub fn load(f: &GgufFile) -> RefModel {
        let hp = Hparams::from_gguf(f).unwrap_or_else(|e| panic!("reference: bad hparams: {e}"));
        let tied = f.tensor("output.weight").is_none();
        // The shared layout says which tensors the architecture needs; refuse files
        // with anything else so a tensor the reference would silently ignore is noticed.
        let expected = expected_tensors(&hp, tied);
        for t in f.tensors() {
            assert!(
                expected.iter().any(|e| e.name == t.name),
                "reference: unexpected tensor {} for {}",
                t.name,
                hp.arch
            );
        }
        let e = hp.n_embd;
        let q_width = hp.n_head * hp.head_dim_k;
        let k_width = hp.n_embd_k_gqa();
        let v_width = hp.n_embd_v_gqa();
        let gpt_oss = hp.arch == Arch::GptOss;
        let has_bias = hp.arch == Arch::Qwen2 || gpt_oss;
        let has_qk_norm = matches!(hp.arch, Arch::Qwen3 | Arch::Qwen3Moe | Arch::Gemma3);
        let gemma = matches!(hp.arch, Arch::Gemma2 | Arch::Gemma3);
        let has_post_norms = gemma;
        let phi3 = hp.arch == Arch::Phi3;
        // Rows `from..from + n` of a matrix.
        let rows = |m: &Matrix, from: u32, n: u32| Matrix {
            rows: n as usize,
            cols: m.cols,
            data: m.data[from as usize * m.cols..(from + n) as usize * m.cols].to_vec(),
        };
        let layers = (0..hp.n_layer)
            .map(|il| {
                let w = |s: &str| format!("blk.{il}.{s}.weight");
                // Phi-3 keeps Q, K, V in one matrix and gate, up in another.
                let (wq, wk, wv) = if phi3 {
                    let qkv = load_matrix(f, &w("attn_qkv"), e, q_width + k_width + v_width);
                    (
                        rows(&qkv, 0, q_width),
                        rows(&qkv, q_width, k_width),
                        rows(&qkv, q_width + k_width, v_width),
                    )
                } else {
                    (
                        load_matrix(f, &w("attn_q"), e, q_width),
                        load_matrix(f, &w("attn_k"), e, k_width),
                        load_matrix(f, &w("attn_v"), e, v_width),
                    )
                };
                let b = |s: &str| format!("blk.{il}.{s}.bias");
                let opt_vec = |present: bool, name: String, len: u32| {
                    present.then(|| load_vector(f, &name, len))
                };
                RefLayer {
                    attn_norm: load_vector(f, &w("attn_norm"), e),
                    wq,
                    wk,
                    wv,
                    bq: opt_vec(has_bias, b("attn_q"), q_width),
                    bk: opt_vec(has_bias, b("attn_k"), k_width),
                    bv: opt_vec(has_bias, b("attn_v"), v_width),
                    q_norm: opt_vec(has_qk_norm, w("attn_q_norm"), hp.head_dim_k),
                    k_norm: opt_vec(has_qk_norm, w("attn_k_norm"), hp.head_dim_k),
                    wo: load_matrix(f, &w("attn_output"), hp.n_head * hp.head_dim_v, e),
                    bo: opt_vec(gpt_oss, b("attn_output"), e),
                    sinks: opt_vec(gpt_oss, w("attn_sinks"), hp.n_head),
                    post_attn_norm: opt_vec(has_post_norms, w("post_attention_norm"), e),
                    // gpt-oss names its pre-FFN norm post_attention_norm.
                    ffn_norm: load_vector(
                        f,
                        &w(if gpt_oss {
                            "post_attention_norm"
                        } else {
                            "ffn_norm"
                        }),
                        e,
                    ),
                    ffn: if hp.n_expert > 0 {
                        load_experts(f, &hp, il)
                    } else if phi3 {
                        let up = load_matrix(f, &w("ffn_up"), e, 2 * hp.n_ff);
                        RefFfn::Dense(Gated {
                            gate: rows(&up, 0, hp.n_ff),
                            up: rows(&up, hp.n_ff, hp.n_ff),
                            down: load_matrix(f, &w("ffn_down"), hp.n_ff, e),
                        })
                    } else {
                        RefFfn::Dense(Gated {
                            gate: load_matrix(f, &w("ffn_gate"), e, hp.n_ff),
                            up: load_matrix(f, &w("ffn_up"), e, hp.n_ff),
                            down: load_matrix(f, &w("ffn_down"), hp.n_ff, e),
                        })
                    },
                    post_ffn_norm: opt_vec(has_post_norms, w("post_ffw_norm"), e),
                }
            })
            .collect();
        RefModel {
            token_embd: load_matrix(f, "token_embd.weight", e, hp.n_vocab),
            output_norm: load_vector(f, "output_norm.weight", e),
            output: (!tied).then(|| load_matrix(f, "output.weight", e, hp.n_vocab)),
            rope_factors: f
                .tensor("rope_factors_short.weight")
                .map(|_| load_vector(f, "rope_factors_short.weight", hp.n_rot / 2)),
            layers,
            hp,
        }
    }

    pub fn n_vocab(&self) -> usize {
        self.hp.n_vocab as usize
    }

    pub fn new_state(&self) -> RefState {
        RefState {
            n_layer: self.layers.len(),
            seqs: BTreeMap::new(),
        }
    }

    /// Runs tokens through the model. Each entry is (token, pos, seq_id). Tokens
    /// of one sequence must come in increasing pos order, after the positions
    /// already cached for it; a token attends to every earlier (pos <=) token of
    /// its own sequence fed so far (in this call or earlier calls with the same
    /// state), within the sliding window on SWA layers.
    /// Returns the logits (n_vocab f32) for every entry.
    pub fn forward(&self, state: &mut RefState, batch: &[(u32, i32, u32)]) -> Vec<Vec<f32>> {
        let hp = &self.hp;
        assert_eq!(
            state.n_layer,
            self.layers.len(),
            "reference: state made for another model"
        );
        // Positions are recorded up front; each layer then appends its K/V rows in
        // the same batch order and stores the whole batch's before any query
        // attends, so a token sees earlier tokens of its own batch.
        for &(token, pos, seq) in batch {
            assert!(
                (token as usize) < self.n_vocab(),
                "reference: token {token} is outside the vocabulary of {}",
                self.n_vocab()
            );
            let s = state.seqs.entry(seq).or_insert_with(|| SeqKv {
                pos: Vec::new(),
                k: vec![Vec::new(); self.layers.len()],
                v: vec![Vec::new(); self.layers.len()],
            });
            if let Some(&last) = s.pos.last() {
                assert!(
                    pos > last,
                    "reference: seq {seq} gets pos {pos} after pos {last}"
                );
            }
            s.pos.push(pos);
        }

        let mut xs: Vec<Vec<f32>> = batch
            .iter()
            .map(|&(token, _, _)| {
                let mut x = self.token_embd.row(token as usize).to_vec();
                if matches!(hp.arch, Arch::Gemma2 | Arch::Gemma3) {
                    let scale = (hp.n_embd as f32).sqrt();
                    x.iter_mut().for_each(|v| *v *= scale);
                }
                x
            })
            .collect();

        for (il, layer) in self.layers.iter().enumerate() {
            xs = self.layer_forward(il, layer, state, batch, xs);
        }

        let normed: Vec<Vec<f32>> = xs
            .iter()
            .map(|x| rms_norm_mul(x, &self.output_norm, hp.rms_eps))
            .collect();
        let mut logits = matmul(self.output.as_ref().unwrap_or(&self.token_embd), &normed);
        if let Some(cap) = hp.final_logit_softcap {
            for l in logits.iter_mut().flatten() {
                *l = cap * (*l / cap).tanh();
            }
        }
        logits
    }

    fn layer_forward(
        &self,
        il: usize,
        layer: &RefLayer,
        state: &mut RefState,
        batch: &[(u32, i32, u32)],
        xs: Vec<Vec<f32>>,
    ) -> Vec<Vec<f32>> {
        let hp = &self.hp;
        let eps = hp.rms_eps;
        let (n_head, n_head_kv) = (hp.n_head as usize, hp.n_head_kv as usize);
        let (dk, dv) = (hp.head_dim_k as usize, hp.head_dim_v as usize);
        let base = hp.rope_base(il as u32);
        // The reference's own knowledge, not the library's: only Llama and Mistral 3 rotate adjacent pairs.
        let neox = !matches!(hp.arch, Arch::Llama | Arch::Mistral3);

        let h: Vec<Vec<f32>> = xs
            .iter()
            .map(|x| rms_norm_mul(x, &layer.attn_norm, eps))
            .collect();
        let mut qs = matmul(&layer.wq, &h);
        let mut ks = matmul(&layer.wk, &h);
        let mut vs = matmul(&layer.wv, &h);
        for (rows, bias) in [
            (&mut qs, &layer.bq),
            (&mut ks, &layer.bk),
            (&mut vs, &layer.bv),
        ] {
            if let Some(bias) = bias {
                rows.iter_mut().for_each(|r| add_in_place(r, bias));
            }
        }
        let spec = RopeSpec {
            n_rot: hp.n_rot as usize,
            base,
            freq_scale: hp.rope_scale(il as u32),
            neox,
            factors: self.rope_factors.as_deref(),
            magnitude: hp.rope_attn_factor,
            yarn: (hp.rope_ext_factor != 0.0).then_some((
                hp.rope_ext_factor,
                hp.n_ctx_orig,
                hp.yarn_beta_fast,
                hp.yarn_beta_slow,
            )),
        };
        for (i, &(_, pos, _)) in batch.iter().enumerate() {
            for (heads, norm) in [(&mut qs[i], &layer.q_norm), (&mut ks[i], &layer.k_norm)] {
                for head in heads.chunks_exact_mut(dk) {
                    if let Some(norm) = norm {
                        let normed = rms_norm_mul(head, norm, eps);
                        head.copy_from_slice(&normed);
                    }
                    rope_with(head, pos, &spec);
                }
            }
            // Mistral 3's query temperature: one step up per original context.
            if hp.attn_temp_scale != 0.0 {
                let steps = (pos as f64 / hp.n_ctx_orig as f64).floor();
                let temp = ((steps + 1.0).ln() * hp.attn_temp_scale as f64 + 1.0) as f32;
                qs[i].iter_mut().for_each(|q| *q *= temp);
            }
        }

        for (i, &(_, _, seq)) in batch.iter().enumerate() {
            let s = state.seqs.get_mut(&seq).expect("sequence created above");
            s.k[il].push(ks[i].clone());
            s.v[il].push(vs[i].clone());
        }

        let window = hp.is_swa_layer(il as u32).then_some(hp.n_swa as i64);
        let group = n_head / n_head_kv;
        let attn: Vec<Vec<f32>> = batch
            .iter()
            .enumerate()
            .map(|(i, &(_, pos_q, seq))| {
                let s = &state.seqs[&seq];
                // Keys this query may see: its own sequence, not in its future,
                // and inside the window on SWA layers.
                let visible: Vec<usize> = (0..s.k[il].len())
                    .filter(|&c| {
                        let pos_k = s.pos[c];
                        pos_k <= pos_q && window.is_none_or(|w| (pos_q as i64 - pos_k as i64) < w)
                    })
                    .collect();
                let mut out = vec![0f32; n_head * dv];
                for hq in 0..n_head {
                    let hk = hq / group;
                    let q = &qs[i][hq * dk..(hq + 1) * dk];
                    let scores: Vec<f32> = visible
                        .iter()
                        .map(|&c| {
                            let score = dot(q, &s.k[il][c][hk * dk..(hk + 1) * dk]) * hp.attn_scale;
                            match hp.attn_logit_softcap {
                                Some(cap) => cap * (score / cap).tanh(),
                                None => score,
                            }
                        })
                        .collect();
                    // A sink takes its share of the soft-max and adds no value.
                    let weights = match &layer.sinks {
                        Some(sinks) => {
                            let mut with_sink = scores.clone();
                            with_sink.push(sinks[hq]);
                            let mut w = softmax(&with_sink);
                            w.pop();
                            w
                        }
                        None => softmax(&scores),
                    };
                    let o = &mut out[hq * dv..(hq + 1) * dv];
                    for (&c, &w) in visible.iter().zip(&weights) {
                        let v = &s.v[il][c][hk * dv..(hk + 1) * dv];
                        o.iter_mut().zip(v).for_each(|(o, v)| *o += w * v);
                    }
                }
                out
            })
            .collect();

        let mut attn_out = matmul(&layer.wo, &attn);
        if let Some(bias) = &layer.bo {
            attn_out.iter_mut().for_each(|r| add_in_place(r, bias));
        }
        if let Some(norm) = &layer.post_attn_norm {
            attn_out = attn_out
                .iter()
                .map(|o| rms_norm_mul(o, norm, eps))
                .collect();
        }
        let mut xs = xs;
        xs.iter_mut()
            .zip(&attn_out)
            .for_each(|(x, o)| add_in_place(x, o));

        let h: Vec<Vec<f32>> = xs
            .iter()
            .map(|x| rms_norm_mul(x, &layer.ffn_norm, eps))
            .collect();
        let act: fn(f32) -> f32 = if matches!(hp.arch, Arch::Gemma2 | Arch::Gemma3) {
            gelu_tanh
        } else {
            silu
        };
        let mut ffn_out = match &layer.ffn {
            RefFfn::Dense(g) => gated_ffn(g, &h, act),
            RefFfn::Experts {
                router,
                experts,
                biases: Some(b),
            } => h
                .iter()
                .map(|x| oai_experts(router, experts, b, hp.n_expert_used as usize, x))
                .collect(),
            RefFfn::Experts {
                router,
                experts,
                biases: None,
            } => h
                .iter()
                .map(|x| {
                    // Soft-max over every expert's score, the top
                    // n_expert_used experts, their probabilities renormalised.
                    let probs = softmax(&matmul(router, std::slice::from_ref(x))[0]);
                    let mut order: Vec<usize> = (0..probs.len()).collect();
                    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
                    let chosen = &order[..hp.n_expert_used as usize];
                    let total: f32 = chosen.iter().map(|&i| probs[i]).sum();
                    let mut out = vec![0f32; x.len()];
                    for &i in chosen {
                        let y = gated_ffn(&experts[i], std::slice::from_ref(x), act);
                        let w = probs[i] / total;
                        out.iter_mut().zip(&y[0]).for_each(|(o, v)| *o += w * v);
                    }
                    out
                })
                .collect(),
        };
        if let Some(norm) = &layer.post_ffn_norm {
            ffn_out = ffn_out.iter().map(|o| rms_norm_mul(o, norm, eps)).collect();
        }
        xs.iter_mut()
            .zip(&ffn_out)
            .for_each(|(x, o)| add_in_place(x, o));
        xs
    }
}

/// gpt-oss's experts for one token: the top `k` biased router scores, a
/// soft-max over those, and each expert's clamped SwiGLU (gate capped at 7,
/// up clamped to ±7, `g sigmoid(1.702 g) (u + 1)`) with its biases.
#[allow(clippy::ptr_arg)] // `matmul` takes rows as vectors
fn oai_experts(
    router: &Matrix,
    experts: &[Gated],
    b: &ExpertBiases,
    k: usize,
    x: &Vec<f32>,
) -> Vec<f32> {
    let xs = std::slice::from_ref(x);
    let mut scores = matmul(router, xs).remove(0);
    add_in_place(&mut scores, &b.router);
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &c| scores[c].total_cmp(&scores[a]));
    let chosen = &order[..k];
    let weights = softmax(&chosen.iter().map(|&i| scores[i]).collect::<Vec<_>>());
    let mut out = vec![0f32; x.len()];
    for (&i, &w) in chosen.iter().zip(&weights) {
        let e = &experts[i];
        let mut gate = matmul(&e.gate, xs).remove(0);
        let mut up = matmul(&e.up, xs).remove(0);
        add_in_place(&mut gate, &b.gate[i]);
        add_in_place(&mut up, &b.up[i]);
        let inner: Vec<f32> = gate
            .iter()
            .zip(&up)
            .map(|(&g, &u)| {
                let g = g.min(7.0);
                let u = u.clamp(-7.0, 7.0);
                g / (1.0 + (-1.702 * g).exp()) * (u + 1.0)
            })
            .collect();
        let mut y = matmul(&e.down, std::slice::from_ref(&inner)).remove(0);
        add_in_place(&mut y, &b.down[i]);
        out.iter_mut().zip(&y).for_each(|(o, v)| *o += w * v);
    }
    out
}

/// `down(act(gate h) * up h)` for each `h`.
fn gated_ffn(g: &Gated, h: &[Vec<f32>], act: fn(f32) -> f32) -> Vec<Vec<f32>> {
    let gate = matmul(&g.gate, h);
    let up = matmul(&g.up, h);
    let inner: Vec<Vec<f32>> = gate
        .iter()
        .zip(&up)
        .map(|(g, u)| g.iter().zip(u).map(|(&g, &u)| act(g) * u).collect())
        .collect();
    matmul(&g.down, &inner)
}

/// Index of the largest value (the first one on ties).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// `v / sqrt(mean(v^2) + eps) * weight`, elementwise.
pub fn rms_norm_mul(v: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    assert_eq!(v.len(), weight.len());
    let mean_sq = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>() / v.len() as f64;
    let scale = (1.0 / (mean_sq + eps as f64).sqrt()) as f32;
    v.iter().zip(weight).map(|(&x, &w)| x * scale * w).collect()
}

/// Rotates the first `n_rot` values of one head by position `pos`: pair `i`
/// turns by `pos * freq_scale * base^(-2i/n_rot)`. Normal mode pairs
/// (2i, 2i+1); NeoX mode pairs (i, i + n_rot/2). Values past `n_rot` stay.
pub fn rope(head: &mut [f32], pos: i32, n_rot: usize, base: f32, freq_scale: f32, neox: bool) {
    let spec = RopeSpec {
        n_rot,
        base,
        freq_scale,
        neox,
        factors: None,
        magnitude: 1.0,
        yarn: None,
    };
    rope_with(head, pos, &spec);
}

/// How one layer rotates its heads.
pub struct RopeSpec<'a> {
    pub n_rot: usize,
    pub base: f32,
    /// Linear scaling of every angle (interpolation).
    pub freq_scale: f32,
    /// Pairs (i, i + n_rot/2) instead of (2i, 2i+1).
    pub neox: bool,
    /// Each pair's angle divided by its factor (Llama 3's and LongRoPE's
    /// wavelength divisors).
    pub factors: Option<&'a [f32]>,
    /// The rotated values scaled by this (LongRoPE's and YaRN's attention factor).
    pub magnitude: f32,
    /// YaRN: (extrapolation mix, original context, beta_fast, beta_slow).
    pub yarn: Option<(f32, u32, f32, f32)>,
}

/// Rotates the first `n_rot` values of one head by position `pos` as
/// `spec` says. With YaRN, pairs rotating fewer than `beta_slow` times over
/// the original context are interpolated (the angle times `freq_scale`),
/// those rotating more than `beta_fast` times keep their angle, a linear
/// ramp between, and magnitudes grow by `1 + 0.1 ln(1 / freq_scale)`.
pub fn rope_with(head: &mut [f32], pos: i32, spec: &RopeSpec<'_>) {
    let n_rot = spec.n_rot;
    assert!(n_rot.is_multiple_of(2) && n_rot <= head.len());
    let half = n_rot / 2;
    let base = spec.base as f64;
    let mut magnitude = spec.magnitude as f64;
    // Pair index at which a wavelength fits `turns` times in the original context.
    let pair_of = |turns: f32, n_ctx: u32| {
        n_rot as f64 * (n_ctx as f64 / (turns as f64 * 2.0 * std::f64::consts::PI)).ln()
            / (2.0 * base.ln())
    };
    let ramp = spec.yarn.map(|(mix, n_ctx, fast, slow)| {
        let low = pair_of(fast, n_ctx).floor().max(0.0);
        let high = pair_of(slow, n_ctx).ceil().min(n_rot as f64 - 1.0);
        magnitude *= 1.0 + 0.1 * (1.0 / spec.freq_scale as f64).ln();
        (mix as f64, low, high)
    });
    for i in 0..half {
        let divisor = spec.factors.map_or(1.0, |f| f[i] as f64);
        let extrap = pos as f64 * base.powf(-2.0 * i as f64 / n_rot as f64) / divisor;
        let interp = extrap * spec.freq_scale as f64;
        let theta = match ramp {
            Some((mix, low, high)) => {
                let y = ((i as f64 - low) / (high - low).max(0.001)).clamp(0.0, 1.0);
                let w = (1.0 - y) * mix;
                interp * (1.0 - w) + extrap * w
            }
            None => interp,
        };
        let (sin, cos) = (
            (theta.sin() * magnitude) as f32,
            (theta.cos() * magnitude) as f32,
        );
        let (a, b) = if spec.neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (head[a], head[b]);
        head[a] = x0 * cos - x1 * sin;
        head[b] = x0 * sin + x1 * cos;
    }
}

/// Numerically stable softmax (max subtracted, sum in f64).
pub fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = scores.iter().map(|&s| ((s - max) as f64).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation (what Gemma and ggml's `ggml_gelu` use).
pub fn gelu_tanh(x: f32) -> f32 {
    let sqrt_2_over_pi = (2.0 / std::f32::consts::PI).sqrt();
    0.5 * x * (1.0 + (sqrt_2_over_pi * (x + 0.044715 * x * x * x)).tanh())
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len());
    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
}

/// Dot product with eight independent partial sums, which the compiler vectorizes.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for lane in 0..8 {
            acc[lane] += x[lane] * y[lane];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `w * x` for every `x` in `xs`. Output rows are split over threads; each row
/// of `w` is read once for the whole batch.
pub fn matmul(w: &Matrix, xs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let n_tok = xs.len();
    if n_tok == 0 {
        return Vec::new();
    }
    for x in xs {
        assert_eq!(x.len(), w.cols, "reference: matmul input width");
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rows_per_thread = w.rows.div_ceil(threads).max(1);
    // Laid out [row][token] while computing, transposed at the end.
    let mut by_row = vec![0f32; w.rows * n_tok];
    std::thread::scope(|scope| {
        for (chunk_index, chunk) in by_row.chunks_mut(rows_per_thread * n_tok).enumerate() {
            scope.spawn(move || {
                for (r, out) in chunk.chunks_mut(n_tok).enumerate() {
                    let row = w.row(chunk_index * rows_per_thread + r);
                    for (o, x) in out.iter_mut().zip(xs) {
                        *o = dot(row, x);
                    }
                }
            });
        }
    });
    (0..n_tok)
        .map(|t| (0..w.rows).map(|r| by_row[r * n_tok + t]).collect())
        .collect()
}
