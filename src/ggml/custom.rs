//! rbench's own matmul kernels ([`crate::kernels`]) as a node of a ggml
//! graph: a `GGML_OP_CUSTOM` tensor whose callback runs on ggml's compute
//! threads (thread `ith` of `nth` takes its share of the weight rows), so
//! the rest of the graph stays ggml's.
//!
//! The unsafe part is here: the `extern "C"` callback and the slices it
//! makes over tensor data. What makes them sound is checked when the node
//! is built: the weight is a plain 2-d matrix in host memory in ggml's
//! standard block layout (not a repacking buffer), the activations are
//! contiguous F32, and the result is a fresh contiguous F32 tensor.

use std::ffi::{c_int, c_void};

use super::context::Context;
use super::error::{GgmlError, Result};
use super::sys;
use super::tensor::Tensor;
use crate::kernels::{self, Isa};
use crate::quant::GgmlType;

/// ggml's `GGML_N_TASKS_MAX` (a macro, so not in the bindings): run the
/// callback on every compute thread.
const N_TASKS_MAX: c_int = -1;

/// Output rows per thread share are cut at multiples of this: 16 floats
/// are one cache line, so threads never write the same line of a column.
const ROW_ALIGN: usize = 16;

/// Bit of the callback's `userdata` that says "batch-invariant" (the bits
/// below it are the instruction set).
const INVARIANT_BIT: u32 = 8;

fn invalid(detail: impl Into<String>) -> GgmlError {
    GgmlError::InvalidOp {
        op: "custom_mul_mat",
        detail: detail.into(),
    }
}

/// Why `w` cannot go to an rbench kernel, if it cannot (type, shape, or
/// where its data lives: host memory in the plain block layout).
pub fn rbench_weight_problem(w: Tensor<'_>, isa: Isa) -> Option<String> {
    let Some(kernel) = isa.kernel() else {
        return Some(format!("{} kernels are not available here", isa.name()));
    };
    let ty = w.ty();
    if !kernel.supports(ty) {
        return Some(format!("no {} kernel for {ty}", isa.name()));
    }
    let (ne, nb) = (w.ne(), w.nb());
    let k = ne[0] as usize;
    if ne[2] != 1 || ne[3] != 1 {
        return Some(format!("weight {ne:?} is not a matrix"));
    }
    if k == 0 || !k.is_multiple_of(kernels::QK) || !k.is_multiple_of(ty.block_size()) {
        return Some(format!(
            "row length {k} is not a multiple of {}",
            kernels::QK
        ));
    }
    if nb[0] != ty.type_size() || nb[1] != kernels::row_bytes(ty, k) {
        return Some("weight rows are not dense".into());
    }
    if !w.has_data() {
        return Some("weight has no data yet".into());
    }
    let buffer = w.data_buffer();
    if buffer.is_null() {
        return Some("weight is in no buffer".into());
    }
    // SAFETY: the buffer holds data of a live tensor, so it is alive.
    let (host, buft) = unsafe {
        (
            sys::ggml_backend_buffer_is_host(buffer),
            sys::ggml_backend_buffer_get_type(buffer),
        )
    };
    // Repacking buffers are not host buffers, but say why explicitly.
    if super::buffer::is_cpu_extra_buft(buft) {
        return Some("weight is repacked (CPU extra buffer)".into());
    }
    if !host {
        return Some("weight is not in host memory".into());
    }
    None
}

impl Context {
    /// `mul_mat(w, x)` computed by rbench's `isa` kernel: `w` `[k, n_rows]`
    /// of a kernel type in plain host memory (see [`rbench_weight_problem`]),
    /// `x` contiguous F32 `[k, n]`; the result is F32 `[n_rows, n]`, as
    /// `mul_mat` gives. Activations are quantized like ggml does for these
    /// weight types, so results agree with `mul_mat` to float rounding.
    ///
    /// `batch_invariant` keeps each column's float steps independent of
    /// how many columns the node has (see [`kernels::matmul_f32_columns`]).
    pub fn custom_mul_mat<'a>(
        &'a self,
        w: Tensor<'a>,
        x: Tensor<'a>,
        isa: Isa,
        batch_invariant: bool,
    ) -> Result<Tensor<'a>> {
        if let Some(problem) = rbench_weight_problem(w, isa) {
            return Err(invalid(problem));
        }
        let (nw, nx) = (w.ne(), x.ne());
        if x.ty() != GgmlType::F32 || !x.is_contiguous() {
            return Err(invalid(format!(
                "activations must be contiguous F32, got {}",
                x.ty()
            )));
        }
        if nx[0] != nw[0] || nx[2] != 1 || nx[3] != 1 {
            return Err(invalid(format!(
                "activations {nx:?} do not fit weight {nw:?}"
            )));
        }
        self.ensure_tensor_room()?;
        let mut args = [w.as_ptr(), x.as_ptr()];
        // SAFETY: the context is alive with room for one tensor; `args`
        // holds two live tensors that the result's lifetime is tied to
        // (ggml stores them as its sources); the callback is a plain
        // function and `userdata` an integer (the instruction set), so
        // nothing it points to can dangle. The shape was checked above.
        unsafe {
            let raw = sys::ggml_custom_4d(
                self.as_ptr(),
                GgmlType::F32.id(),
                nw[1],
                nx[1],
                1,
                1,
                args.as_mut_ptr(),
                args.len() as c_int,
                Some(mul_mat_callback),
                N_TASKS_MAX,
                (isa as usize | usize::from(batch_invariant) << INVARIANT_BIT) as *mut c_void,
            );
            self.wrap("custom_mul_mat", raw)
        }
    }
}

/// The callback ggml runs on each compute thread.
///
/// # Safety
/// Called by ggml for a node made by [`Context::custom_mul_mat`] (whose
/// checks make the slices below valid), with its data allocated, while no
/// other node writes the weight, the activations or this node's output.
unsafe extern "C" fn mul_mat_callback(
    dst: *mut sys::ggml_tensor,
    ith: c_int,
    nth: c_int,
    userdata: *mut c_void,
) {
    // SAFETY: ggml passes the live node; reading its fields by value.
    let node = unsafe { &*dst };
    let (w, x) = (node.src[0], node.src[1]);
    let (isa, batch_invariant) = (
        userdata as usize & ((1 << INVARIANT_BIT) - 1),
        userdata as usize >> INVARIANT_BIT != 0,
    );
    let Some(kernel) = Isa::from_index(isa).and_then(Isa::kernel) else {
        return;
    };
    if w.is_null() || x.is_null() || node.data.is_null() {
        return;
    }
    // SAFETY: sources of a live node are live.
    let (w, x) = unsafe { (&*w, &*x) };
    let Some(ty) = GgmlType::from_id(w.type_) else {
        return;
    };
    let (k, n_rows, n) = (w.ne[0] as usize, w.ne[1] as usize, x.ne[1] as usize);
    let rows = kernels::thread_rows(n_rows, ith.max(0) as usize, nth.max(1) as usize, ROW_ALIGN);
    if rows.is_empty() || x.data.is_null() || w.data.is_null() {
        return;
    }
    if !(x.data as usize).is_multiple_of(4) || !(node.data as usize).is_multiple_of(4) {
        return; // ggml aligns buffers far more; never true in practice
    }
    // SAFETY: checked at build time: the weight is `n_rows` dense rows of
    // `k` values of `ty` in host memory, the activations `n` contiguous
    // columns of `k` F32; both are only read during this node.
    let weights = unsafe {
        std::slice::from_raw_parts(w.data as *const u8, n_rows * kernels::row_bytes(ty, k))
    };
    // SAFETY: as above; alignment checked just before.
    let xs = unsafe { std::slice::from_raw_parts(x.data as *const f32, k * n) };
    let out = node.data as *mut f32;
    let mut cols: Vec<&mut [f32]> = (0..n)
        .map(|c| {
            // SAFETY: the output is a fresh contiguous F32 `[n_rows, n]`
            // tensor; this thread's slices cover rows `rows` of each column,
            // which no other thread's range overlaps (`thread_rows` splits
            // disjointly), so these `&mut` never alias.
            unsafe { std::slice::from_raw_parts_mut(out.add(c * n_rows + rows.start), rows.len()) }
        })
        .collect();
    let done = kernels::matmul_f32_columns(
        kernel,
        ty,
        weights,
        xs,
        k,
        n,
        rows,
        &mut cols,
        batch_invariant,
    );
    if done.is_err() {
        // Cannot happen after the build-time checks; make it visible.
        for col in &mut cols {
            col.fill(f32::NAN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml::{
        alloc_ctx_tensors, tensor_get_f32, tensor_set, tensor_set_f32, BackendBuffer, BufferType,
        CpuBackend, Gallocr, Graph,
    };
    use crate::quant::random_blocks;
    use rand::SeedableRng;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.37 + seed as f32).sin() * 2.0)
            .collect()
    }

    fn isas() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.available()).collect()
    }

    /// Both ops in one graph on the same inputs: the kernel's result equals
    /// ggml's to float rounding (see `kernels::tests` for the bound).
    fn compare(ty: GgmlType, k: usize, n_rows: usize, n: usize, threads: usize, mapped: bool) {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        let wbytes = random_blocks(ty, k * n_rows, &mut rng).unwrap();
        let weights = Context::for_tensors(2).unwrap();
        let w = weights
            .new_tensor_2d(ty, k as i64, n_rows as i64)
            .unwrap()
            .named("w");
        let _keep;
        if mapped {
            // Read-only borrowed memory, as weights mapped from a file.
            let mut file = vec![0u8; wbytes.len() + 64];
            let off = (64 - file.as_ptr() as usize % 64) % 64;
            file[off..off + wbytes.len()].copy_from_slice(&wbytes);
            let buffer = BackendBuffer::from_host_bytes(file).unwrap();
            weights.place_tensor(w, &buffer, off).unwrap();
            _keep = None;
        } else {
            _keep = Some(alloc_ctx_tensors(&weights, BufferType::cpu()).unwrap());
            tensor_set(w, &wbytes, 0).unwrap();
        }
        let xv = values(k * n, 3);
        let isas = isas()
            .into_iter()
            .filter(|isa| isa.kernel().is_some_and(|k| k.supports(ty)));
        for (isa, invariant) in isas.flat_map(|i| [(i, true), (i, false)]) {
            let ctx = Context::for_graph(8).unwrap();
            let x = ctx
                .new_tensor_2d(GgmlType::F32, k as i64, n as i64)
                .unwrap();
            x.set_input();
            let ours = ctx.custom_mul_mat(w, x, isa, invariant).unwrap();
            let theirs = ctx.mul_mat(w, x).unwrap();
            assert_eq!(ours.ne(), theirs.ne());
            let mut graph = Graph::new(&ctx, 8).unwrap();
            graph.build_forward_expand(ours).unwrap();
            graph.build_forward_expand(theirs).unwrap();
            let mut galloc = Gallocr::new(BufferType::cpu()).unwrap();
            galloc.alloc_graph(&graph).unwrap();
            tensor_set_f32(x, &xv).unwrap();
            let mut cpu = CpuBackend::new().unwrap();
            cpu.set_n_threads(threads).unwrap();
            cpu.compute(&graph).unwrap();
            let (a, b) = (
                tensor_get_f32(ours).unwrap(),
                tensor_get_f32(theirs).unwrap(),
            );
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (p - q).abs() <= 1e-5 * scale,
                    "{isa:?} {ty} invariant {invariant} threads {threads} [{i}]: {p} vs {q}"
                );
            }
        }
    }

    #[test]
    fn custom_mul_mat_matches_mul_mat_on_any_thread_count() {
        for ty in kernels::KERNEL_TYPES {
            for threads in [1, 2, 3] {
                if ty.block_size() <= 128 {
                    compare(ty, 640, 200, 3, threads, false);
                }
                compare(ty, 1024, 67, 8, threads, true);
                // Many columns: the tiled path outside batch-invariant runs
                // (rows not a multiple of its 16-row tiles).
                compare(ty, 1024, 67, 37, threads, false);
            }
            compare(ty, 256, 5, 1, 4, false); // fewer row shares than threads
        }
    }

    #[test]
    fn custom_mul_mat_refuses_what_it_cannot_run() {
        let weights = Context::for_tensors(4).unwrap();
        let q8 = weights.new_tensor_2d(GgmlType::Q8_0, 64, 4).unwrap();
        let q3k = weights.new_tensor_2d(GgmlType::Q3_K, 256, 4).unwrap();
        let ctx = Context::for_graph(8).unwrap();
        let x = ctx.new_tensor_2d(GgmlType::F32, 64, 2).unwrap();
        // No data yet.
        assert!(rbench_weight_problem(q8, Isa::Scalar).is_some());
        assert!(ctx.custom_mul_mat(q8, x, Isa::Scalar, true).is_err());
        let _buf = alloc_ctx_tensors(&weights, BufferType::cpu()).unwrap();
        assert_eq!(rbench_weight_problem(q8, Isa::Scalar), None);
        assert!(ctx.custom_mul_mat(q8, x, Isa::Scalar, true).is_ok());
        // Type without a kernel.
        let x256 = ctx.new_tensor_2d(GgmlType::F32, 256, 2).unwrap();
        assert!(ctx.custom_mul_mat(q3k, x256, Isa::Scalar, true).is_err());
        // Mismatched or non-F32 activations.
        assert!(ctx.custom_mul_mat(q8, x256, Isa::Scalar, true).is_err());
        let xh = ctx.new_tensor_2d(GgmlType::F16, 64, 2).unwrap();
        assert!(ctx.custom_mul_mat(q8, xh, Isa::Scalar, true).is_err());
        let xt = ctx
            .transpose(ctx.new_tensor_2d(GgmlType::F32, 2, 64).unwrap())
            .unwrap();
        assert!(ctx.custom_mul_mat(q8, xt, Isa::Scalar, true).is_err());
    }
}
