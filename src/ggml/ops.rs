//! Graph-building operations, as methods on [`Context`].
//!
//! Each op creates one result tensor in the context it is called on (no
//! compute happens until a graph is run). The arguments may come from any
//! context; the result borrows all of them, so it cannot outlive any input.
//!
//! Every op first checks what ggml would `GGML_ASSERT` on at build time, plus
//! the shape facts whose violation would make the CPU kernels read out of
//! bounds, and returns [`GgmlError::InvalidOp`] instead of aborting. Facts
//! that only the data can tell (row indices of `get_rows`/`set_rows` in
//! range) are checked by ggml at compute time, which aborts: graph builders
//! must pass valid indices. Whether the backend has a kernel for the types
//! involved is checked when the graph is computed.

use super::context::{check_new_shape, Context};
use super::error::{GgmlError, Result};
use super::sys;
use super::tensor::Tensor;
use crate::quant::GgmlType;

/// How `rope_ext` pairs up the dimensions it rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RopeMode(i32);

impl RopeMode {
    /// Adjacent pairs (x0,x1), (x2,x3), ... (llama-style GGUF weights).
    pub const NORMAL: RopeMode = RopeMode(0);
    /// Halves (x0,x_{n/2}), (x1,x_{n/2+1}), ... (GPT-NeoX style: qwen2/3, gemma3).
    pub const NEOX: RopeMode = RopeMode(2);

    /// ggml's mode number.
    pub fn raw(self) -> i32 {
        self.0
    }
}

fn invalid(op: &'static str, detail: impl Into<String>) -> GgmlError {
    GgmlError::InvalidOp {
        op,
        detail: detail.into(),
    }
}

#[inline]
fn require(cond: bool, op: &'static str, detail: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(invalid(op, detail()))
    }
}

/// `small` divides `big` (and is not zero, which ggml would divide by).
#[inline]
fn divides(small: i64, big: i64) -> bool {
    small > 0 && big % small == 0
}

/// ggml_can_repeat: `small` broadcasts to `big` along every dimension.
fn can_repeat(small: Tensor<'_>, big: Tensor<'_>) -> bool {
    let (s, b) = (small.ne(), big.ne());
    if s.contains(&0) {
        return b.contains(&0);
    }
    (0..4).all(|i| divides(s[i], b[i]))
}

/// Rows are dense (ggml_is_contiguous_rows).
fn rows_contiguous(t: Tensor<'_>) -> bool {
    let ty = t.ty();
    t.ne()[0] == ty.block_size() as i64 || t.nb()[0] == ty.type_size()
}

fn is_contiguous_1(t: Tensor<'_>) -> bool {
    // SAFETY: the tensor is alive; ggml only reads its shape and strides.
    unsafe { sys::ggml_is_contiguous_1(t.as_ptr()) }
}

/// Bytes of `n` elements of `ty` as a wide integer (no overflow).
fn row_bytes(ty: GgmlType, n: i64) -> u128 {
    n.max(0) as u128 / ty.block_size() as u128 * ty.type_size() as u128
}

/// Types the CPU backend can use as the first `mul_mat` operand (it has a
/// dot-product kernel for them; for the rest it would call a null pointer).
fn has_cpu_vec_dot(ty: GgmlType) -> bool {
    use GgmlType::*;
    !matches!(ty, Q8_1 | Q8_K | I8 | I16 | I32 | I64 | F64)
}

/// Types the CPU backend can convert F32 rows into (for `set_rows`).
fn has_cpu_from_float(ty: GgmlType) -> bool {
    use GgmlType::*;
    !matches!(
        ty,
        IQ2_XXS | IQ2_XS | IQ3_XXS | IQ3_S | IQ2_S | IQ1_S | IQ1_M | I8 | I16 | I64 | F64
    )
}

/// KV cache types flash attention has kernels for.
fn is_kv_type(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0)
}

fn to_c_int(op: &'static str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| invalid(op, format!("{what} = {v} does not fit ggml's int")))
}

/// Calls one ggml op constructor after its preconditions were checked.
macro_rules! call_op {
    ($ctx:expr, $op:expr, $f:ident($($arg:expr),* $(,)?)) => {{
        let ctx: &Context = $ctx;
        ctx.ensure_tensor_room()?;
        // SAFETY: the context is alive for this borrow, every tensor argument
        // is a live handle that the method signature ties to the same
        // lifetime as the result, the preconditions ggml asserts on were
        // checked by the caller, and the pool has room for the one tensor the
        // op creates; so the result references only tensors living that long.
        unsafe {
            let raw = sys::$f(ctx.as_ptr(), $($arg),*);
            ctx.wrap($op, raw)
        }
    }};
}

mod experts;
mod views;

impl Context {
    /// `a · bᵀ` per row: `a` is `[k, n, (ne2, ne3)]` (the weight), `b` is
    /// `[k, m, ne12, ne13]` with `ne12`/`ne13` multiples of `a`'s; the result
    /// is F32 `[n, m, ne12, ne13]`.
    #[inline]
    pub fn mul_mat<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        const OP: &str = "mul_mat";
        let (na, nb_) = (a.ne(), b.ne());
        require(na[0] == nb_[0], OP, || {
            format!("row lengths differ: a {na:?}, b {nb_:?}")
        })?;
        require(divides(na[2], nb_[2]) && divides(na[3], nb_[3]), OP, || {
            format!("b {nb_:?} does not broadcast over a {na:?}")
        })?;
        let (sa, sb) = (a.nb(), b.nb());
        require(sa[0] <= sa[1], OP, || "a must not be transposed".into())?;
        require(has_cpu_vec_dot(a.ty()), OP, || {
            format!("no matmul kernel for {} weights", a.ty())
        })?;
        require(
            sa[0] == a.ty().type_size() && sb[0] == b.ty().type_size(),
            OP,
            || "rows of a and b must be contiguous".into(),
        )?;
        call_op!(self, OP, ggml_mul_mat(a.as_ptr(), b.as_ptr()))
    }

    /// Asks for F32 accumulation in a `mul_mat` result (some backends use
    /// F16 by default).
    pub fn mul_mat_set_prec_f32(&self, t: Tensor<'_>) -> Result<()> {
        set_prec_f32("mul_mat_set_prec_f32", t, sys::GGML_OP_MUL_MAT)
    }

    /// Element-wise `a + b`, `b` broadcast over `a`.
    #[inline]
    pub fn add<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        require(can_repeat(b, a), "add", || {
            format!("{:?} does not broadcast to {:?}", b.ne(), a.ne())
        })?;
        call_op!(self, "add", ggml_add(a.as_ptr(), b.as_ptr()))
    }

    /// Element-wise `a * b`, `b` broadcast over `a`.
    #[inline]
    pub fn mul<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        require(can_repeat(b, a), "mul", || {
            format!("{:?} does not broadcast to {:?}", b.ne(), a.ne())
        })?;
        call_op!(self, "mul", ggml_mul(a.as_ptr(), b.as_ptr()))
    }

    /// `a * s`.
    #[inline]
    pub fn scale<'a>(&'a self, a: Tensor<'a>, s: f32) -> Result<Tensor<'a>> {
        let (ne, nb) = (a.ne(), a.nb());
        let padded_1d = nb[0] == a.ty().type_size()
            && nb[2] == nb[1].wrapping_mul(ne[1] as usize)
            && nb[3] == nb[2].wrapping_mul(ne[2] as usize);
        require(padded_1d, "scale", || {
            "input must be contiguous beyond its rows".into()
        })?;
        call_op!(self, "scale", ggml_scale(a.as_ptr(), s))
    }

    fn check_norm_input(op: &'static str, a: Tensor<'_>) -> Result<()> {
        require(a.ty() == GgmlType::F32 && a.nb()[0] == 4, op, || {
            format!("input must be F32 with dense rows, got {}", a.ty())
        })
    }

    /// Root-mean-square normalisation of each row: `x / sqrt(mean(x²) + eps)`.
    #[inline]
    pub fn rms_norm<'a>(&'a self, a: Tensor<'a>, eps: f32) -> Result<Tensor<'a>> {
        Self::check_norm_input("rms_norm", a)?;
        call_op!(self, "rms_norm", ggml_rms_norm(a.as_ptr(), eps))
    }

    /// Mean/variance normalisation of each row: `(x - mean) / sqrt(var + eps)`.
    #[inline]
    pub fn norm<'a>(&'a self, a: Tensor<'a>, eps: f32) -> Result<Tensor<'a>> {
        Self::check_norm_input("norm", a)?;
        call_op!(self, "norm", ggml_norm(a.as_ptr(), eps))
    }

    /// Rotary position embedding of `a` = `[head_dim, n_head, n_tokens, 1]`
    /// with `pos` = I32 `[n_tokens]`; the first `n_dims` (even, `<= head_dim`)
    /// dimensions are rotated. `freq_factors` (F32, `>= n_dims/2` values)
    /// divide the per-pair frequencies (llama3/longrope style).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn rope_ext<'a>(
        &'a self,
        a: Tensor<'a>,
        pos: Tensor<'a>,
        freq_factors: Option<Tensor<'a>>,
        n_dims: usize,
        mode: RopeMode,
        n_ctx_orig: usize,
        freq_base: f32,
        freq_scale: f32,
        ext_factor: f32,
        attn_factor: f32,
        beta_fast: f32,
        beta_slow: f32,
    ) -> Result<Tensor<'a>> {
        const OP: &str = "rope_ext";
        let (na, np) = (a.ne(), pos.ne());
        require(pos.ty() == GgmlType::I32, OP, || {
            format!("positions must be I32, got {}", pos.ty())
        })?;
        require(np[1] == 1 && np[2] == 1 && np[3] == 1, OP, || {
            format!("positions must be a vector, got {np:?}")
        })?;
        require(np[0] == na[2], OP, || {
            format!("{} positions for {} tokens", np[0], na[2])
        })?;
        require(
            n_dims > 0 && n_dims.is_multiple_of(2) && n_dims as i64 <= na[0],
            OP,
            || {
                format!(
                    "n_dims {n_dims} must be even and within the head size {}",
                    na[0]
                )
            },
        )?;
        if let Some(ff) = freq_factors {
            require(
                ff.ty() == GgmlType::F32 && ff.ne()[0] >= (n_dims / 2) as i64,
                OP,
                || format!("freq_factors must be F32 with >= {} values", n_dims / 2),
            )?;
        }
        let n_dims = to_c_int(OP, "n_dims", n_dims)?;
        let n_ctx_orig = to_c_int(OP, "n_ctx_orig", n_ctx_orig)?;
        let ff = freq_factors.map_or(std::ptr::null_mut(), |t| t.as_ptr());
        call_op!(
            self,
            OP,
            ggml_rope_ext(
                a.as_ptr(),
                pos.as_ptr(),
                ff,
                n_dims,
                mode.raw(),
                n_ctx_orig,
                freq_base,
                freq_scale,
                ext_factor,
                attn_factor,
                beta_fast,
                beta_slow,
            )
        )
    }

    /// `softmax(a * scale + mask)` over each row; `mask` (F16/F32, contiguous,
    /// `[ne0, >= ne1, ...]` broadcast over heads) is optional, `max_bias > 0`
    /// adds ALiBi slopes and needs a mask.
    #[inline]
    pub fn soft_max_ext<'a>(
        &'a self,
        a: Tensor<'a>,
        mask: Option<Tensor<'a>>,
        scale: f32,
        max_bias: f32,
    ) -> Result<Tensor<'a>> {
        const OP: &str = "soft_max_ext";
        require(a.is_contiguous(), OP, || "input must be contiguous".into())?;
        let na = a.ne();
        if let Some(m) = mask {
            let nm = m.ne();
            require(matches!(m.ty(), GgmlType::F16 | GgmlType::F32), OP, || {
                format!("mask must be F16 or F32, got {}", m.ty())
            })?;
            require(m.is_contiguous(), OP, || "mask must be contiguous".into())?;
            require(nm[0] == na[0] && nm[1] >= na[1], OP, || {
                format!("mask {nm:?} does not cover scores {na:?}")
            })?;
            require(divides(nm[2], na[2]) && divides(nm[3], na[3]), OP, || {
                format!("mask {nm:?} does not broadcast over scores {na:?}")
            })?;
        }
        require(max_bias <= 0.0 || mask.is_some(), OP, || {
            "ALiBi (max_bias > 0) needs a mask".into()
        })?;
        let m = mask.map_or(std::ptr::null_mut(), |t| t.as_ptr());
        call_op!(self, OP, ggml_soft_max_ext(a.as_ptr(), m, scale, max_bias))
    }

    /// Fused attention. `q` F32 `[d_k, n_q, n_head, ne3]`, `k` `[d_k, n_kv,
    /// n_head_kv, ne3]`, `v` `[d_v, n_kv, n_head_kv, ne3]` (not transposed),
    /// `mask` F16 contiguous `[>= n_kv, >= n_q, ...]`. The result is F32
    /// `[d_v, n_head, n_q, ne3]` (heads and tokens swapped).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn flash_attn_ext<'a>(
        &'a self,
        q: Tensor<'a>,
        k: Tensor<'a>,
        v: Tensor<'a>,
        mask: Option<Tensor<'a>>,
        scale: f32,
        max_bias: f32,
        logit_softcap: f32,
    ) -> Result<Tensor<'a>> {
        const OP: &str = "flash_attn_ext";
        let (nq, nk, nv) = (q.ne(), k.ne(), v.ne());
        require(q.ty() == GgmlType::F32, OP, || {
            format!("q must be F32, got {}", q.ty())
        })?;
        require(is_kv_type(k.ty()) && is_kv_type(v.ty()), OP, || {
            format!("no kernel for k {} / v {}", k.ty(), v.ty())
        })?;
        require(nk[0] == nq[0], OP, || {
            format!("q {nq:?} and k {nk:?} head sizes differ")
        })?;
        require(nk[1] == nv[1], OP, || {
            format!("k {nk:?} and v {nv:?} have different lengths")
        })?;
        require(divides(nk[2], nq[2]) && divides(nv[2], nq[2]), OP, || {
            format!("kv heads of k {nk:?} / v {nv:?} do not divide q heads {nq:?}")
        })?;
        require(nq[3] == nk[3] && nq[3] == nv[3], OP, || {
            "q, k, v differ in dim 3".into()
        })?;
        require(
            rows_contiguous(q) && rows_contiguous(k) && rows_contiguous(v),
            OP,
            || "rows of q, k, v must be contiguous".into(),
        )?;
        if let Some(m) = mask {
            let nm = m.ne();
            require(m.ty() == GgmlType::F16, OP, || {
                format!("mask must be F16, got {}", m.ty())
            })?;
            require(m.is_contiguous(), OP, || "mask must be contiguous".into())?;
            require(nm[0] >= nk[1] && nm[1] >= nq[1], OP, || {
                format!(
                    "mask {nm:?} does not cover {} keys x {} queries",
                    nk[1], nq[1]
                )
            })?;
            require(divides(nm[2], nq[2]) && divides(nm[3], nq[3]), OP, || {
                format!("mask {nm:?} does not broadcast over q {nq:?}")
            })?;
        }
        require(max_bias <= 0.0 || mask.is_some(), OP, || {
            "ALiBi (max_bias > 0) needs a mask".into()
        })?;
        let m = mask.map_or(std::ptr::null_mut(), |t| t.as_ptr());
        call_op!(
            self,
            OP,
            ggml_flash_attn_ext(
                q.as_ptr(),
                k.as_ptr(),
                v.as_ptr(),
                m,
                scale,
                max_bias,
                logit_softcap
            )
        )
    }

    /// Adds per-head attention sinks to a `flash_attn_ext` result: one
    /// learned logit per query head (F32 `[n_head]`) that joins every
    /// row's soft-max without a value (gpt-oss).
    pub fn flash_attn_ext_add_sinks(&self, t: Tensor<'_>, sinks: Tensor<'_>) -> Result<()> {
        const OP: &str = "flash_attn_ext_add_sinks";
        require(t.op() == sys::GGML_OP_FLASH_ATTN_EXT, OP, || {
            format!("tensor is the result of {}", t.op_name())
        })?;
        // The result is [d_v, n_head, n_q, ne3]: one sink per head.
        check_sinks(OP, sinks, t.ne()[1])?;
        // SAFETY: both tensors are alive, `t` is a flash_attn_ext result and
        // `sinks` an F32 vector of its head count; ggml stores it as a source.
        unsafe { sys::ggml_flash_attn_ext_add_sinks(t.as_ptr(), sinks.as_ptr()) };
        Ok(())
    }

    /// Adds per-head attention sinks to a `soft_max_ext` result over scores
    /// `[n_kv, n_q, n_head, ne3]` (see [`Context::flash_attn_ext_add_sinks`]).
    pub fn soft_max_add_sinks(&self, t: Tensor<'_>, sinks: Tensor<'_>) -> Result<()> {
        const OP: &str = "soft_max_add_sinks";
        require(t.op() == sys::GGML_OP_SOFT_MAX, OP, || {
            format!("tensor is the result of {}", t.op_name())
        })?;
        check_sinks(OP, sinks, t.ne()[2])?;
        // SAFETY: as in `flash_attn_ext_add_sinks`, for a soft_max result.
        unsafe { sys::ggml_soft_max_add_sinks(t.as_ptr(), sinks.as_ptr()) };
        Ok(())
    }

    /// Asks for F32 accumulation in a `flash_attn_ext` result.
    pub fn flash_attn_ext_set_prec_f32(&self, t: Tensor<'_>) -> Result<()> {
        set_prec_f32(
            "flash_attn_ext_set_prec_f32",
            t,
            sys::GGML_OP_FLASH_ATTN_EXT,
        )
    }

    /// Gathers rows: `a` `[n_embd, n_rows, ne2, ne3]`, `b` I32 `[n, ne2, ne3]`
    /// → F32 `[n_embd, n, ne2, ne3]` (I32 if `a` is I32). Indices must be in
    /// `0..n_rows` (ggml aborts otherwise).
    #[inline]
    pub fn get_rows<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        const OP: &str = "get_rows";
        let (na, nb_) = (a.ne(), b.ne());
        require(b.ty() == GgmlType::I32, OP, || {
            format!("indices must be I32, got {}", b.ty())
        })?;
        require(
            na[2] == nb_[1] && na[3] == nb_[2] && nb_[3] == 1,
            OP,
            || format!("indices {nb_:?} do not match data {na:?}"),
        )?;
        call_op!(self, OP, ggml_get_rows(a.as_ptr(), b.as_ptr()))
    }

    /// Scatters rows of `b` (F32/F16 `[n_embd, n, ne2, ne3]`) into `a`
    /// (`[n_embd, n_rows, ne2, ne3]`) at row indices `c` (I64/I32 `[n, ...]`);
    /// returns a view of `a` to put in the graph. Indices must be in
    /// `0..n_rows` and distinct (ggml aborts / races otherwise).
    #[inline]
    pub fn set_rows<'a>(
        &'a self,
        a: Tensor<'a>,
        b: Tensor<'a>,
        c: Tensor<'a>,
    ) -> Result<Tensor<'a>> {
        const OP: &str = "set_rows";
        let (na, nb_, nc) = (a.ne(), b.ne(), c.ne());
        require(
            na[0] == nb_[0] && na[2] == nb_[2] && na[3] == nb_[3],
            OP,
            || format!("source {nb_:?} does not fit destination {na:?}"),
        )?;
        require(
            nb_[1] == nc[0] && divides(nc[1], nb_[2]) && divides(nc[2], nb_[3]) && nc[3] == 1,
            OP,
            || format!("indices {nc:?} do not match source {nb_:?}"),
        )?;
        require(matches!(b.ty(), GgmlType::F32 | GgmlType::F16), OP, || {
            format!("source must be F32 or F16, got {}", b.ty())
        })?;
        require(matches!(c.ty(), GgmlType::I64 | GgmlType::I32), OP, || {
            format!("indices must be I64 or I32, got {}", c.ty())
        })?;
        require(rows_contiguous(a) && rows_contiguous(b), OP, || {
            "rows must be contiguous".into()
        })?;
        require(has_cpu_from_float(a.ty()), OP, || {
            format!("cannot convert rows to {}", a.ty())
        })?;
        call_op!(self, OP, ggml_set_rows(a.as_ptr(), b.as_ptr(), c.as_ptr()))
    }

    /// A contiguous copy of `a`.
    #[inline]
    pub fn cont<'a>(&'a self, a: Tensor<'a>) -> Result<Tensor<'a>> {
        call_op!(self, "cont", ggml_cont(a.as_ptr()))
    }

    /// Copies `a` into `b` (same element count, converting the type);
    /// returns a view of `b` to put in the graph.
    #[inline]
    pub fn cpy<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        require(a.n_elements() == b.n_elements(), "cpy", || {
            format!("{:?} and {:?} differ in element count", a.ne(), b.ne())
        })?;
        call_op!(self, "cpy", ggml_cpy(a.as_ptr(), b.as_ptr()))
    }

    /// `a` converted to type `ty` (F32 to I32 truncates).
    #[inline]
    pub fn cast<'a>(&'a self, a: Tensor<'a>, ty: GgmlType) -> Result<Tensor<'a>> {
        check_new_shape("cast", ty, &a.ne())?;
        call_op!(self, "cast", ggml_cast(a.as_ptr(), ty.id()))
    }

    /// GELU (tanh approximation).
    #[inline]
    pub fn gelu<'a>(&'a self, a: Tensor<'a>) -> Result<Tensor<'a>> {
        require(rows_contiguous(a), "gelu", || {
            "rows must be contiguous".into()
        })?;
        call_op!(self, "gelu", ggml_gelu(a.as_ptr()))
    }

    /// SiLU: `x * sigmoid(x)`.
    #[inline]
    pub fn silu<'a>(&'a self, a: Tensor<'a>) -> Result<Tensor<'a>> {
        require(rows_contiguous(a), "silu", || {
            "rows must be contiguous".into()
        })?;
        call_op!(self, "silu", ggml_silu(a.as_ptr()))
    }

    /// `tanh(x)`.
    #[inline]
    pub fn tanh<'a>(&'a self, a: Tensor<'a>) -> Result<Tensor<'a>> {
        require(rows_contiguous(a), "tanh", || {
            "rows must be contiguous".into()
        })?;
        call_op!(self, "tanh", ggml_tanh(a.as_ptr()))
    }

    fn check_glu(op: &'static str, a: Tensor<'_>, b: Tensor<'_>) -> Result<()> {
        require(is_contiguous_1(a) && is_contiguous_1(b), op, || {
            "inputs must be contiguous beyond dim 1".into()
        })?;
        require(a.ne() == b.ne() && a.ty() == b.ty(), op, || {
            format!("{} {:?} and {} {:?} differ", a.ty(), a.ne(), b.ty(), b.ne())
        })
    }

    /// `silu(a) * b` (SwiGLU feed-forward gate).
    #[inline]
    pub fn swiglu_split<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        Self::check_glu("swiglu_split", a, b)?;
        call_op!(
            self,
            "swiglu_split",
            ggml_swiglu_split(a.as_ptr(), b.as_ptr())
        )
    }

    /// `gelu(a) * b` (GeGLU feed-forward gate, tanh approximation).
    #[inline]
    pub fn geglu_split<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        Self::check_glu("geglu_split", a, b)?;
        call_op!(
            self,
            "geglu_split",
            ggml_geglu_split(a.as_ptr(), b.as_ptr())
        )
    }

    /// `a` and `b` joined along `dim` (equal elsewhere, same type).
    #[inline]
    pub fn concat<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>, dim: usize) -> Result<Tensor<'a>> {
        const OP: &str = "concat";
        require(dim < 4, OP, || format!("dim {dim} out of range"))?;
        let (na, nb_) = (a.ne(), b.ne());
        require(a.ty() == b.ty(), OP, || {
            format!("types {} and {} differ", a.ty(), b.ty())
        })?;
        require((0..4).all(|d| d == dim || na[d] == nb_[d]), OP, || {
            format!("{na:?} and {nb_:?} differ outside dim {dim}")
        })?;
        let total = na[dim].checked_add(nb_[dim]);
        require(total.is_some(), OP, || "result too large".into())?;
        // dim < 4, so the cast is lossless.
        call_op!(self, OP, ggml_concat(a.as_ptr(), b.as_ptr(), dim as i32))
    }

    /// `x²`.
    #[inline]
    pub fn sqr<'a>(&'a self, a: Tensor<'a>) -> Result<Tensor<'a>> {
        call_op!(self, "sqr", ggml_sqr(a.as_ptr()))
    }

    /// Sum of each row: `[ne0, ne1, ne2, ne3]` → `[1, ne1, ne2, ne3]`.
    #[inline]
    pub fn sum_rows<'a>(&'a self, a: Tensor<'a>) -> Result<Tensor<'a>> {
        call_op!(self, "sum_rows", ggml_sum_rows(a.as_ptr()))
    }

    /// Index of the largest element of each row of a matrix → I32 `[ne1]`.
    #[inline]
    pub fn argmax<'a>(&'a self, a: Tensor<'a>) -> Result<Tensor<'a>> {
        let ne = a.ne();
        require(
            ne[2] == 1 && ne[3] == 1 && ne[0] <= i32::MAX as i64,
            "argmax",
            || format!("input must be a matrix with rows of at most 2^31-1, got {ne:?}"),
        )?;
        call_op!(self, "argmax", ggml_argmax(a.as_ptr()))
    }
}

fn check_sinks(op: &'static str, sinks: Tensor<'_>, n_head: i64) -> Result<()> {
    let ne = sinks.ne();
    require(
        sinks.ty() == GgmlType::F32
            && sinks.is_contiguous()
            && ne[0] == n_head
            && ne[1..] == [1, 1, 1],
        op,
        || format!("sinks must be F32 [{n_head}], got {} {ne:?}", sinks.ty()),
    )
}

fn set_prec_f32(op: &'static str, t: Tensor<'_>, expected: sys::ggml_op) -> Result<()> {
    require(t.op() == expected, op, || {
        format!("tensor is the result of {}", t.op_name())
    })?;
    // SAFETY: the tensor is alive and is the result of the op ggml expects;
    // ggml only writes one of its op parameters.
    let ok = unsafe { sys::ggml_prec_set_acc(t.as_ptr(), sys::GGML_PREC_F32) };
    require(ok, op, || "ggml refused the precision".into())
}
