//! rbench's prompt attention ([`crate::kernels::attention`]) as a node of a
//! ggml graph: a `GGML_OP_CUSTOM` tensor whose callback runs on ggml's
//! compute threads, each taking its share of 16-token blocks.
//!
//! The unsafe part is here: the callback and the slices it makes over tensor
//! data. What makes them sound is checked when the node is built (types,
//! shapes, strides in whole elements) and, in the callback, by
//! `AttentionInputs::validate` on slices that span exactly what the strides
//! reach.

use std::ffi::{c_int, c_void};

use super::context::Context;
use super::error::{GgmlError, Result};
use super::sys;
use super::tensor::Tensor;
use crate::kernels::attention::{self, AttentionInputs, AttentionShape};
use crate::kernels::seq_attention;
use crate::quant::GgmlType;

/// Run the callback on every compute thread (`GGML_N_TASKS_MAX`).
const N_TASKS_MAX: c_int = -1;

/// Bit of the callback's `userdata` (above the scale's 32 bits) that picks
/// the per-token kernel ([`seq_attention`]) over the 16-token blocks.
const PER_TOKEN_BIT: u32 = 32;

fn invalid(detail: impl Into<String>) -> GgmlError {
    GgmlError::InvalidOp {
        op: "custom_attention",
        detail: detail.into(),
    }
}

/// Strides of `t` in elements, if every one is a whole number of them.
fn element_strides(t: Tensor<'_>) -> Option<[usize; 4]> {
    let size = t.ty().type_size();
    let nb = t.nb();
    if nb.iter().any(|b| !b.is_multiple_of(size)) || nb[0] != size {
        return None;
    }
    Some(nb.map(|b| b / size))
}

/// The shape of an attention node, checked: `q` F32 `[d_k, n_head, T]`,
/// `k` / `v` F16 `[d, n_kv, n_head_kv]`, `mask` F16 `[>= n_kv, >= T]`.
fn shape_of(
    q: Tensor<'_>,
    k: Tensor<'_>,
    v: Tensor<'_>,
    mask: Tensor<'_>,
) -> Result<AttentionShape> {
    let (nq, nk, nv, nm) = (q.ne(), k.ne(), v.ne(), mask.ne());
    if q.ty() != GgmlType::F32 || k.ty() != GgmlType::F16 || v.ty() != GgmlType::F16 {
        return Err(invalid(format!(
            "needs F32 q and F16 k / v, got {} / {} / {}",
            q.ty(),
            k.ty(),
            v.ty()
        )));
    }
    if mask.ty() != GgmlType::F16 {
        return Err(invalid(format!("mask must be F16, got {}", mask.ty())));
    }
    if nq[3] != 1 || nk[3] != 1 || nv[3] != 1 || nm[2] != 1 || nm[3] != 1 {
        return Err(invalid("no batch dimensions"));
    }
    if nk[0] != nq[0] || nk[1] != nv[1] || nk[2] != nv[2] {
        return Err(invalid(format!(
            "q {nq:?}, k {nk:?} and v {nv:?} do not fit"
        )));
    }
    if nm[0] < nk[1] || nm[1] < nq[2] {
        return Err(invalid(format!(
            "mask {nm:?} is smaller than {} cells x {} tokens",
            nk[1], nq[2]
        )));
    }
    let [mut d_k, mut n_head, mut n_tokens, mut n_kv, mut n_head_kv, mut d_v] = [0usize; 6];
    for (dst, src) in [
        (&mut d_k, nq[0]),
        (&mut n_head, nq[1]),
        (&mut n_tokens, nq[2]),
        (&mut n_kv, nk[1]),
        (&mut n_head_kv, nk[2]),
        (&mut d_v, nv[0]),
    ] {
        *dst = usize::try_from(src).map_err(|_| invalid("negative size"))?;
    }
    let shape = AttentionShape {
        d_k,
        d_v,
        n_tokens,
        n_kv,
        n_head,
        n_head_kv,
    };
    for t in [q, k, v, mask] {
        if element_strides(t).is_none() {
            return Err(invalid("strides must be whole elements, rows contiguous"));
        }
    }
    Ok(shape)
}

/// The shape of an attention node, checked for what both kernels need.
fn checked_shape(
    q: Tensor<'_>,
    k: Tensor<'_>,
    v: Tensor<'_>,
    mask: Tensor<'_>,
) -> Result<AttentionShape> {
    let shape = shape_of(q, k, v, mask)?;
    shape.check().map_err(|e| invalid(e.to_string()))?;
    Ok(shape)
}

/// The shape of an attention node the block kernel can compute on this CPU.
fn supported_shape(
    q: Tensor<'_>,
    k: Tensor<'_>,
    v: Tensor<'_>,
    mask: Tensor<'_>,
) -> Result<AttentionShape> {
    if !attention::available() {
        return Err(invalid("the attention kernel does not run on this CPU"));
    }
    checked_shape(q, k, v, mask)
}

/// Why [`Context::custom_attention`] cannot compute attention over these
/// tensors on this CPU, if it cannot.
pub fn attention_problem(
    q: Tensor<'_>,
    k: Tensor<'_>,
    v: Tensor<'_>,
    mask: Tensor<'_>,
) -> Option<String> {
    supported_shape(q, k, v, mask).err().map(|e| e.to_string())
}

impl Context {
    /// `softmax(scale · q kᵀ + mask) v` by rbench's attention kernel, the
    /// result laid out as ggml's `flash_attn_ext` gives it: F32
    /// `[d_v, n_head, T]`. `q` `[d_k, n_head, T]` (unpermuted), `k` / `v`
    /// F16 views `[d, n_kv, n_head_kv]` of the cache, `mask` F16
    /// `[n_kv or more, T or more]`.
    pub fn custom_attention<'a>(
        &'a self,
        q: Tensor<'a>,
        k: Tensor<'a>,
        v: Tensor<'a>,
        mask: Tensor<'a>,
        scale: f32,
    ) -> Result<Tensor<'a>> {
        let shape = supported_shape(q, k, v, mask)?;
        self.attention_node(shape, [q, k, v, mask], scale, false)
    }

    /// The same result computed one query token at a time over only the
    /// cells its mask row lets it see ([`seq_attention`]): batch-invariant,
    /// and its work follows each sequence's own length.
    pub fn custom_sequence_attention<'a>(
        &'a self,
        q: Tensor<'a>,
        k: Tensor<'a>,
        v: Tensor<'a>,
        mask: Tensor<'a>,
        scale: f32,
    ) -> Result<Tensor<'a>> {
        let shape = checked_shape(q, k, v, mask)?;
        self.attention_node(shape, [q, k, v, mask], scale, true)
    }

    fn attention_node<'a>(
        &'a self,
        shape: AttentionShape,
        [q, k, v, mask]: [Tensor<'a>; 4],
        scale: f32,
        per_token: bool,
    ) -> Result<Tensor<'a>> {
        self.ensure_tensor_room()?;
        let userdata = scale.to_bits() as usize | usize::from(per_token) << PER_TOKEN_BIT;
        let mut args = [q.as_ptr(), k.as_ptr(), v.as_ptr(), mask.as_ptr()];
        // SAFETY: the context is alive with room for one tensor; `args`
        // holds four live tensors that the result's lifetime is tied to
        // (ggml stores them as its sources); the callback is a plain
        // function and `userdata` carries the scale's bits and the kernel
        // choice, not a pointer.
        unsafe {
            let raw = sys::ggml_custom_4d(
                self.as_ptr(),
                GgmlType::F32.id(),
                shape.d_v as i64,
                shape.n_head as i64,
                shape.n_tokens as i64,
                1,
                args.as_mut_ptr(),
                args.len() as c_int,
                Some(attention_callback),
                N_TASKS_MAX,
                userdata as *mut c_void,
            );
            self.wrap("custom_attention", raw)
        }
    }
}

/// A slice over a tensor's data spanning exactly what its strides reach
/// (`counts` per dim after the first, `row` elements in the first).
///
/// # Safety
/// `t` is a live, allocated tensor of element type `T` whose data is not
/// written while the slice lives.
unsafe fn strided<'t, T>(t: &sys::ggml_tensor, strides: [usize; 4], row: usize) -> Option<&'t [T]> {
    if t.data.is_null() || !(t.data as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return None;
    }
    let len = row
        + (1..4)
            .map(|d| (t.ne[d].max(1) as usize - 1) * strides[d])
            .sum::<usize>();
    // SAFETY: a tensor's data spans at least its last element (ggml's
    // allocators place it so); alignment checked above.
    Some(unsafe { std::slice::from_raw_parts(t.data as *const T, len) })
}

/// The callback ggml runs on each compute thread.
///
/// # Safety
/// Called by ggml for a node made by [`Context::custom_attention`], with
/// its data allocated, while no other node writes its sources or output.
unsafe extern "C" fn attention_callback(
    dst: *mut sys::ggml_tensor,
    ith: c_int,
    nth: c_int,
    userdata: *mut c_void,
) {
    // SAFETY: ggml passes the live node.
    let node = unsafe { &*dst };
    let src = [node.src[0], node.src[1], node.src[2], node.src[3]];
    if src.iter().any(|p| p.is_null()) || node.data.is_null() {
        return;
    }
    // SAFETY: sources of a live node are live.
    let [q, k, v, mask] = src.map(|p| unsafe { &*p });
    let stride = |t: &sys::ggml_tensor, size: usize| t.nb.map(|b| b / size);
    let (qs, ks, vs, ms) = (stride(q, 4), stride(k, 2), stride(v, 2), stride(mask, 2));
    let shape = AttentionShape {
        d_k: q.ne[0] as usize,
        d_v: v.ne[0] as usize,
        n_tokens: q.ne[2] as usize,
        n_kv: k.ne[1] as usize,
        n_head: q.ne[1] as usize,
        n_head_kv: k.ne[2] as usize,
    };
    // SAFETY: sources are read-only during this node; the shapes and
    // element types were checked when it was built.
    let slices = unsafe {
        (
            strided::<f32>(q, qs, shape.d_k),
            strided::<u16>(k, ks, shape.d_k),
            strided::<u16>(v, vs, shape.d_v),
            strided::<u16>(mask, ms, mask.ne[0] as usize),
        )
    };
    let (Some(q), Some(k), Some(v), Some(mask)) = slices else {
        return;
    };
    let inputs = AttentionInputs {
        shape,
        q,
        q_head_stride: qs[1],
        q_token_stride: qs[2],
        k,
        k_cell_stride: ks[1],
        k_head_stride: ks[2],
        v,
        v_cell_stride: vs[1],
        v_head_stride: vs[2],
        mask,
        mask_row_stride: ms[1],
        scale: f32::from_bits(userdata as usize as u32),
    };
    let per_token = (userdata as usize >> PER_TOKEN_BIT) & 1 == 1;
    if inputs.validate().is_err() || !(node.data as usize).is_multiple_of(4) {
        return;
    }
    let out = node.data as *mut f32;
    let (ith, nth) = (ith.max(0) as usize, nth.max(1) as usize);
    if per_token {
        seq_attention::with_thread_scratch(|scratch| {
            let items = seq_attention::RowItems::new(&inputs, nth);
            for item in (ith..items.len()).step_by(nth).map(|i| items.get(i)) {
                let len = item.heads.len() * shape.d_v;
                // SAFETY: the output is a fresh contiguous F32 `[d_v, n_head,
                // T]` tensor; an item covers its token's rows of its heads
                // only, every (token, head) is in exactly one item
                // (`RowItems`) and each item goes to one thread, so no two
                // `&mut` overlap.
                let rows = unsafe {
                    std::slice::from_raw_parts_mut(
                        out.add((item.token * shape.n_head + item.heads.start) * shape.d_v),
                        len,
                    )
                };
                if seq_attention::attend_row(&inputs, &item, rows, scratch).is_err() {
                    rows.fill(f32::NAN); // cannot happen after validate; make it visible
                }
            }
        });
        return;
    }
    let per_token = shape.n_head * shape.d_v;
    attention::with_thread_scratch(|scratch| {
        let blocks = attention::thread_blocks(shape.n_blocks(), ith, nth);
        for b in blocks {
            let tokens = shape.block_tokens(b);
            // SAFETY: the output is a fresh contiguous F32 `[d_v, n_head, T]`
            // tensor; block `b` covers its tokens' rows only, and each block
            // goes to exactly one thread (`thread_blocks`), so no two `&mut`
            // overlap.
            let block = unsafe {
                std::slice::from_raw_parts_mut(
                    out.add(tokens.start * per_token),
                    tokens.len() * per_token,
                )
            };
            if attention::attend_block(&inputs, b, block, scratch).is_err() {
                block.fill(f32::NAN); // cannot happen after validate; make it visible
            }
        }
    });
}
