//! Ops of mixture-of-experts layers: routing (soft-max, top-k, weight
//! normalisation) and the matmul that picks one weight matrix per token
//! and slot.

use super::*;

impl Context {
    /// `mul_mat` with a weight matrix picked per token and slot: `as_` holds
    /// the experts `[k, n, n_expert]`, `b` is F32 `[k, n_b, n_tokens]` with
    /// `n_b` 1 (every slot reads the same row) or `n_used`, `ids` is I32
    /// `[n_used, n_tokens]` (expert indices, checked by ggml at compute time).
    /// Result: F32 `[n, n_used, n_tokens]`.
    pub fn mul_mat_id<'a>(
        &'a self,
        as_: Tensor<'a>,
        b: Tensor<'a>,
        ids: Tensor<'a>,
    ) -> Result<Tensor<'a>> {
        const OP: &str = "mul_mat_id";
        let (na, nb_, ni) = (as_.ne(), b.ne(), ids.ne());
        require(ids.ty() == GgmlType::I32, OP, || {
            format!("ids must be I32, got {}", ids.ty())
        })?;
        require(
            na[3] == 1 && nb_[3] == 1 && ni[2] == 1 && ni[3] == 1,
            OP,
            || format!("experts {na:?}, input {nb_:?} and ids {ni:?} must be at most 3-D / 2-D"),
        )?;
        require(na[0] == nb_[0], OP, || {
            format!("row lengths differ: experts {na:?}, input {nb_:?}")
        })?;
        require(ni[1] == nb_[2], OP, || {
            format!("ids {ni:?} and input {nb_:?} differ in token count")
        })?;
        require(nb_[1] == 1 || nb_[1] == ni[0], OP, || {
            format!("input {nb_:?} must have 1 or {} slots per token", ni[0])
        })?;
        require(ni[0] <= na[2], OP, || {
            format!("{} slots per token but only {} experts", ni[0], na[2])
        })?;
        require(b.ty() == GgmlType::F32, OP, || {
            format!("input must be F32, got {}", b.ty())
        })?;
        require(has_cpu_vec_dot(as_.ty()), OP, || {
            format!("no matmul kernel for {} weights", as_.ty())
        })?;
        require(
            as_.is_contiguous() && b.nb()[0] == b.ty().type_size(),
            OP,
            || "experts must be contiguous and input rows dense".into(),
        )?;
        call_op!(
            self,
            OP,
            ggml_mul_mat_id(as_.as_ptr(), b.as_ptr(), ids.as_ptr())
        )
    }

    /// Indices of the `k` largest values of each row, largest first: I32
    /// `[k, ne1, ne2, ne3]` (a view of a full descending argsort).
    pub fn argsort_top_k<'a>(&'a self, a: Tensor<'a>, k: usize) -> Result<Tensor<'a>> {
        const OP: &str = "argsort_top_k";
        let ne = a.ne();
        require(a.ty() == GgmlType::F32 && a.is_contiguous(), OP, || {
            format!("input must be contiguous F32, got {}", a.ty())
        })?;
        require(
            k >= 1 && k as i64 <= ne[0] && ne[0] <= i32::MAX as i64,
            OP,
            || format!("k = {k} must be in 1..={} (the row length)", ne[0]),
        )?;
        call_op!(self, OP, ggml_argsort_top_k(a.as_ptr(), k as i32))
    }

    /// Element-wise `a / b`, `b` broadcast over `a`.
    pub fn div<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        require(can_repeat(b, a), "div", || {
            format!("{:?} does not broadcast to {:?}", b.ne(), a.ne())
        })?;
        call_op!(self, "div", ggml_div(a.as_ptr(), b.as_ptr()))
    }

    /// Each element limited to `[min, max]`.
    pub fn clamp<'a>(&'a self, a: Tensor<'a>, min: f32, max: f32) -> Result<Tensor<'a>> {
        require(min <= max, "clamp", || format!("min {min} > max {max}"))?;
        call_op!(self, "clamp", ggml_clamp(a.as_ptr(), min, max))
    }

    /// Logistic sigmoid of each element.
    pub fn sigmoid<'a>(&'a self, a: Tensor<'a>) -> Result<Tensor<'a>> {
        call_op!(self, "sigmoid", ggml_sigmoid(a.as_ptr()))
    }

    /// `a[:, i1, i2] + b[:, ids[i1, i2]]`: a bias per expert, picked by the
    /// routing (`a` F32 `[n, n_used, T]`, `b` F32 `[n, n_expert]`, `ids` I32
    /// `[n_used, T]`; gpt-oss's expert biases).
    pub fn add_id<'a>(
        &'a self,
        a: Tensor<'a>,
        b: Tensor<'a>,
        ids: Tensor<'a>,
    ) -> Result<Tensor<'a>> {
        const OP: &str = "add_id";
        let (na, nb_, ni) = (a.ne(), b.ne(), ids.ne());
        require(ids.ty() == GgmlType::I32, OP, || {
            format!("ids must be I32, got {}", ids.ty())
        })?;
        require(
            a.ty() == GgmlType::F32 && b.ty() == GgmlType::F32,
            OP,
            || format!("a and b must be F32, got {} and {}", a.ty(), b.ty()),
        )?;
        require(
            na[0] == nb_[0] && na[1] == ni[0] && na[2] == ni[1] && na[3] == 1 && nb_[2] == 1,
            OP,
            || format!("a {na:?}, biases {nb_:?} and ids {ni:?} do not match"),
        )?;
        require(a.nb()[0] == 4 && b.nb()[0] == 4, OP, || {
            "rows must be dense".into()
        })?;
        call_op!(self, OP, ggml_add_id(a.as_ptr(), b.as_ptr(), ids.as_ptr()))
    }

    /// gpt-oss's gated activation: with `g = min(gate, limit)` and
    /// `u = clamp(up, -limit, limit)`, `g · sigmoid(alpha · g) · (u + 1)`.
    pub fn swiglu_oai<'a>(
        &'a self,
        gate: Tensor<'a>,
        up: Tensor<'a>,
        alpha: f32,
        limit: f32,
    ) -> Result<Tensor<'a>> {
        Self::check_glu("swiglu_oai", gate, up)?;
        call_op!(
            self,
            "swiglu_oai",
            ggml_swiglu_oai(gate.as_ptr(), up.as_ptr(), alpha, limit)
        )
    }
}
