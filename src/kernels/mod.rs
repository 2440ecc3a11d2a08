//! rbench's own quantized matrix multiplication kernels.
//!
//! A kernel multiplies a quantized weight matrix (`n_rows` rows of `k`
//! values, ggml's plain block layout, as in the GGUF file) by a few F32
//! activation columns. Like ggml, the activations are first quantized per
//! 32-value block to int8 with one scale each ("Q8_0-style"), so each block
//! product is an exact integer dot product times two scales.
//!
//! What differs from ggml is the loop order: each weight row is read from
//! memory once for all columns (ggml's tinyBLAS path re-reads and re-decodes
//! weights per column tile and is compute-bound for 2-16 columns), and the
//! integer dot products use the widest instructions the CPU has. One column
//! (generation of one sequence) has its own path, which reads the weights
//! as one sequential stream with software prefetch and sums exactly as
//! ggml's `vec_dot` does, so its results are ggml's bit for bit.
//!
//! Many columns (prompts, outside batch-invariant runs) have a tiled path
//! ([`MatmulKernel::matmul_rows_tiled`]): rows are repacked 16 at a time so
//! one vector lane is one row and the float work per block is shared by 16
//! rows; its float sums run in another order, so a column's result depends
//! on which path ran.
//!
//! One file per instruction set ([`scalar`], `avx2`, `avx512`, `neon`); the best one
//! is picked at run time from the CPU's features ([`best`]).

use std::cell::RefCell;
use std::ops::Range;
use std::sync::OnceLock;
use std::thread::LocalKey;

use crate::quant::GgmlType;

/// Runs `$f::<N>` for heads `h0..h0 + N` with N = min(4, what is left) of
/// `$n`: the register-blocked attention loops take up to 4 heads at once.
#[cfg(target_arch = "x86_64")]
macro_rules! by_heads {
    ($n:expr, |$h0:ident| $f:ident($($arg:expr),*)) => {{
        let mut $h0 = 0;
        while $h0 < $n {
            match $n - $h0 {
                1 => { $f::<1>($($arg),*); $h0 += 1; }
                2 => { $f::<2>($($arg),*); $h0 += 2; }
                3 => { $f::<3>($($arg),*); $h0 += 3; }
                _ => { $f::<4>($($arg),*); $h0 += 4; }
            }
        }
    }};
}

pub mod attention;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod kquants;
#[cfg(target_arch = "aarch64")]
mod neon;
pub mod scalar;
pub mod seq_attention;

/// Values per activation block (and per Q8_0 / Q5_0 weight block).
pub const QK: usize = 32;

/// Most activation columns the graph builder sends to these kernels: no
/// limit. Measured against ggml's tiled kernels on AVX-512 with 2 threads,
/// the multi-column path is 1.35-1.9x ggml at 16 to 512 columns as well
/// (`KB_COLUMNS=16,128,512 cargo bench --bench kernels`).
pub const MAX_COLUMNS: usize = usize::MAX;

/// Fewest columns for a kernel's tiled path (outside batch-invariant runs):
/// where it overtakes the row-pair path (`KB_COLUMNS=16,32,64 cargo bench
/// --bench kernels` with and without `KB_INVARIANT=1`: Q8_0 even at 32
/// columns, Q5_0 1.5x; the repacking costs too much below). Short prompts
/// also keep the row-pair path's rounding, which the greedy references
/// were checked with.
pub const TILED_MIN_COLUMNS: usize = 32;

/// Which kernels the graph builder uses for weight matmuls
/// (`--kernels ggml|rbench`).
///
/// The default is rbench's: measured on the 2-core AVX-512 VNNI test
/// machine (Gemma 3 270M Q4_K_M, 2 threads, runs alternating), generation
/// t/s was 1.3-1.9x ggml's at 2-8 workers (`rbench parallel`) and 1.3x at
/// one sequence (`rbench tg`), where the one-column path also gives ggml's
/// results bit for bit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Kernels {
    /// ggml's `mul_mat` everywhere.
    Ggml,
    #[default]
    /// rbench's kernels ([`best`]) where they apply: a weight type in
    /// [`KERNEL_TYPES`], stored in the plain layout (not repacked), and
    /// [`MIN_COLUMNS`]..=[`MAX_COLUMNS`] tokens; ggml's `mul_mat` elsewhere.
    Rbench,
}

impl Kernels {
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Ggml => "ggml",
            Kernels::Rbench => "rbench",
        }
    }
}

/// Fewest activation columns the graph builder sends to these kernels.
/// One column has its own memory-bound path (see `avx512.rs`); measured on
/// AVX-512 with 2 threads it reads 1.4x ggml's GB/s for the Q8_0 output
/// projection and 1.2x for Q5_0 (`KB_COLUMNS=1 cargo bench --bench kernels`).
pub const MIN_COLUMNS: usize = 1;

/// Weight types with a kernel: all of them in the portable and AVX-512
/// kernels, the block-32 ones in AVX2 and NEON (`MatmulKernel::supports`).
/// The 256-value super-block types go through [`kquants`].
pub const KERNEL_TYPES: [GgmlType; 6] = [
    GgmlType::Q8_0,
    GgmlType::Q5_0,
    GgmlType::Q4_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// Whether a weight of type `ty` that ggml would repack should keep a plain
/// twin for rbench's kernels (see `LoadOptions::plain_twins`): the K-quants,
/// where this CPU has a vector kernel for them. At one token rbench's
/// K-quant kernels stream the weights near the read bandwidth, and ggml's
/// repacked ones (AMX's above all) do not: on a 2-core Sapphire Rapids,
/// llama-1b Q4_K_M generated 26.8 t/s with twins against 15.6 without.
/// The block-32 types stay with the repacked kernels, which measured as
/// fast or faster there at one token (AMX Q8_0: Gemma 3 270M 74 t/s
/// against 69 with twins).
pub fn twin_worthy(ty: GgmlType) -> bool {
    super_block_vector_kernel(ty) && super_block_kernels_lead()
}

/// Whether `ty` is a K-quant this CPU has one of rbench's vector kernels
/// for (what batch-invariant runs multiply it with).
pub fn super_block_vector_kernel(ty: GgmlType) -> bool {
    let best = best();
    best.isa() != Isa::Scalar && kquants::is_super_block_type(ty) && best.supports(ty)
}

/// Whether rbench's K-quant kernels are the faster choice below
/// [`TILED_MIN_COLUMNS`] columns on this CPU, so that runs free to pick
/// take them over ggml's: measured so on AVX2 and AVX-512 (`cargo bench
/// --bench kernels`). The NEON ones are exact and batch-invariant but not
/// yet measured against ggml's (`sdot` / `i8mm`) kernels on an aarch64
/// machine, so there only batch-invariant runs use them.
pub fn super_block_kernels_lead() -> bool {
    matches!(best().isa(), Isa::Avx2 | Isa::Avx512Vnni)
}

/// Whether rbench's tiled kernel for the K-quant `ty` is the faster choice
/// for prompts of `cols` columns ([`TILED_MIN_COLUMNS`] and more) on this
/// CPU, so that runs free to pick take it over ggml's repacked kernels too.
/// Measured so on a 2-core Sapphire Rapids with 2 threads (`KB_COLUMNS=32,
/// 64,128,512 cargo bench --bench kernels`): `Q6_K` 1.5-2.0x ggml's AMX
/// kernel, `Q5_K` 1.1-1.4x; `Q4_K` only ties it on AVX-512 (0.95-1.2x) and
/// leads on rbench's AMX kernel (1.3-1.8x from 128 columns), so it goes
/// where that kernel runs ([`kquants::amx_runs`]). Only AVX-512 VNNI has
/// the tiled path.
pub fn super_block_prompt_lead(ty: GgmlType, cols: usize) -> bool {
    let isa = best().isa();
    isa == Isa::Avx512Vnni
        && (matches!(ty, GgmlType::Q5_K | GgmlType::Q6_K) || kquants::amx_runs(isa, ty, cols))
}

/// Errors of the kernel entry points (bad sizes; never a panic).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    #[error("no rbench kernel for {0} weights")]
    Unsupported(GgmlType),
    #[error("row length {k} is not a positive multiple of {QK}")]
    BadRowLength { k: usize },
    #[error("{what}: expected {expected} values, got {actual}")]
    Length {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("row range {start}..{end} is outside 0..{n_rows}")]
    BadRows {
        start: usize,
        end: usize,
        n_rows: usize,
    },
    #[error("attention: {0}")]
    Attention(String),
    #[error("activations are quantized as {actual:?}, the kernel reads {expected:?}")]
    ActsFormat {
        expected: ActsFormat,
        actual: Option<ActsFormat>,
    },
}

/// Instruction sets a kernel can be written for, best last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, any CPU.
    Scalar = 0,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2 = 1,
    /// x86-64 AVX-512 F/BW/VL with VNNI (`vpdpbusd`).
    Avx512Vnni = 2,
    /// aarch64 NEON.
    Neon = 3,
}

impl Isa {
    /// Best last within each architecture (a CPU has only one's).
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni, Isa::Neon];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
        }
    }

    /// Whether this CPU can run it.
    pub fn available(self) -> bool {
        self.kernel().is_some()
    }

    /// The kernel for this instruction set, if the CPU has it: an ISA's
    /// kernel value is made only by its feature detection.
    pub fn kernel(self) -> Option<&'static dyn MatmulKernel> {
        match self {
            Isa::Scalar => Some(&scalar::ScalarKernel),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::Avx2Kernel::detect_static().map(|k| k as &dyn MatmulKernel),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                avx512::Avx512Kernel::detect_static().map(|k| k as &dyn MatmulKernel)
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => neon::NeonKernel::detect_static().map(|k| k as &dyn MatmulKernel),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Inverse of `self as usize` (for passing the choice through C).
    pub fn from_index(i: usize) -> Option<Isa> {
        Isa::ALL.get(i).copied()
    }
}

/// The best kernel this CPU can run (chosen once per process).
pub fn best() -> &'static dyn MatmulKernel {
    static BEST: OnceLock<Isa> = OnceLock::new();
    let isa = *BEST.get_or_init(|| {
        Isa::ALL
            .iter()
            .rev()
            .copied()
            .find(|isa| isa.available())
            .unwrap_or(Isa::Scalar)
    });
    isa.kernel().unwrap_or(&scalar::ScalarKernel)
}

/// How a kernel wants its activation bytes stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActsFormat {
    /// Signed int8 `q` (for sign-trick or plain integer dot products).
    Signed,
    /// `q + 128` as unsigned bytes (for `vpdpbusd`, whose first operand is
    /// unsigned; the weights stay signed and the kernel subtracts
    /// `128 * sum(w)`, which depends only on the weights and so is shared by
    /// all columns).
    Offset128,
}

/// Activation columns quantized per 32-value block: `x ≈ d * q`, `q` in
/// -127..=127, exactly as ggml's `quantize_row_q8_0` does (`d = max|x| /
/// 127` stored as f16, `q = round_half_even(x * 127 / max|x|)`), so the
/// products match ggml's up to float summation order.
#[derive(Clone, Debug, Default)]
pub struct QuantizedActs {
    k: usize,
    n: usize,
    format: Option<ActsFormat>,
    /// `n × k` bytes, column after column (see [`ActsFormat`]).
    qs: Vec<u8>,
    /// `n × k/32` block scales (the f16 value, widened).
    d: Vec<f32>,
}

impl QuantizedActs {
    /// Quantizes `n` columns of `k` values (`x` is column after column).
    pub fn quantize(
        &mut self,
        x: &[f32],
        k: usize,
        n: usize,
        format: ActsFormat,
    ) -> Result<(), KernelError> {
        check_k(k)?;
        check_len("activations", x.len(), k * n)?;
        let nb = k / QK;
        self.k = k;
        self.n = n;
        self.format = Some(format);
        self.qs.resize(k * n, 0);
        self.d.resize(nb * n, 0.0);
        let flip = match format {
            ActsFormat::Signed => 0u8,
            ActsFormat::Offset128 => 0x80,
        };
        #[cfg(target_arch = "x86_64")]
        if avx512::Avx512Kernel::detect().is_some() {
            // SAFETY: detection found every feature `quantize_blocks` is compiled for.
            unsafe {
                avx512::quantize_blocks(
                    x.as_chunks::<QK>().0,
                    self.qs.as_chunks_mut::<QK>().0,
                    &mut self.d,
                    flip,
                )
            };
            return Ok(());
        }
        for ((xb, qb), d) in x
            .chunks_exact(QK)
            .zip(self.qs.chunks_exact_mut(QK))
            .zip(self.d.iter_mut())
        {
            *d = quantize_block(xb.try_into().unwrap_or(&[0.0; QK]), qb, flip);
        }
        Ok(())
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn format(&self) -> Option<ActsFormat> {
        self.format
    }

    /// Bytes of column `c`.
    #[inline]
    pub fn column_qs(&self, c: usize) -> &[u8] {
        &self.qs[c * self.k..(c + 1) * self.k]
    }

    /// Block scales of column `c`.
    #[inline]
    pub fn column_d(&self, c: usize) -> &[f32] {
        let nb = self.k / QK;
        &self.d[c * nb..(c + 1) * nb]
    }
}

/// One block, as ggml quantizes activations for Q8_0-type dot products;
/// returns the scale (rounded through f16, as stored).
#[inline]
fn quantize_block(x: &[f32; QK], out: &mut [u8], flip: u8) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = half::f16::from_f32(amax / 127.0);
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    for (q, v) in out.iter_mut().zip(x) {
        // |v * id| <= 127 (up to rounding), so the cast never saturates wrongly.
        *q = ((v * id).round_ties_even() as i32 as i8 as u8) ^ flip;
    }
    d.to_f32()
}

/// What every kernel offers.
pub trait MatmulKernel: Sync {
    fn isa(&self) -> Isa;

    /// Whether it has a kernel for these weights.
    fn supports(&self, ty: GgmlType) -> bool {
        KERNEL_TYPES.contains(&ty)
    }

    /// The activation storage its [`MatmulKernel::matmul_rows`] reads.
    fn acts_format(&self) -> ActsFormat;

    /// `out[c][i] = dot(weight row rows.start + i, activation column c)`.
    ///
    /// `weights` holds whole rows of `acts.k()` values of `ty` (at least up
    /// to `rows.end`); `out` has one slice of `rows.len()` values per column
    /// of `acts` (which must be in [`MatmulKernel::acts_format`]). Callers
    /// check sizes with [`check_rows`]; kernels may rely on them. A type
    /// without a kernel is an error, never an output left unwritten.
    fn matmul_rows(
        &self,
        ty: GgmlType,
        weights: &[u8],
        acts: &QuantizedActs,
        rows: Range<usize>,
        out: &mut [&mut [f32]],
    ) -> Result<(), KernelError>;

    /// What [`MatmulKernel::matmul_rows`] computes, by a path for many
    /// columns whose float steps differ from it (so a column's result
    /// depends on how many columns came with it: never for batch-invariant
    /// engines). `false`, with nothing written, where there is none.
    fn matmul_rows_tiled(
        &self,
        _ty: GgmlType,
        _weights: &[u8],
        _acts: &QuantizedActs,
        _rows: Range<usize>,
        _out: &mut [&mut [f32]],
    ) -> bool {
        false
    }
}

fn check_k(k: usize) -> Result<(), KernelError> {
    if k == 0 || !k.is_multiple_of(QK) {
        return Err(KernelError::BadRowLength { k });
    }
    Ok(())
}

fn check_len(what: &'static str, actual: usize, expected: usize) -> Result<(), KernelError> {
    if actual != expected {
        return Err(KernelError::Length {
            what,
            expected,
            actual,
        });
    }
    Ok(())
}

/// Bytes of one weight row.
pub fn row_bytes(ty: GgmlType, k: usize) -> usize {
    k / ty.block_size() * ty.type_size()
}

/// Checks everything [`MatmulKernel::matmul_rows`] relies on.
pub fn check_rows(
    kernel: &dyn MatmulKernel,
    ty: GgmlType,
    weights: &[u8],
    acts: &QuantizedActs,
    rows: &Range<usize>,
    out: &[&mut [f32]],
) -> Result<(), KernelError> {
    if !kernel.supports(ty) {
        return Err(KernelError::Unsupported(ty));
    }
    check_k(acts.k)?;
    if acts.format != Some(kernel.acts_format()) {
        return Err(KernelError::ActsFormat {
            expected: kernel.acts_format(),
            actual: acts.format,
        });
    }
    let rb = row_bytes(ty, acts.k);
    if rows.start > rows.end || rows.end * rb > weights.len() {
        return Err(KernelError::BadRows {
            start: rows.start,
            end: rows.end,
            n_rows: weights.len() / rb,
        });
    }
    check_len("output columns", out.len(), acts.n)?;
    for col in out {
        check_len("output rows", col.len(), rows.len())?;
    }
    Ok(())
}

thread_local! {
    /// Per-thread activation scratch: ggml's custom ops give no shared work
    /// buffer, so each thread quantizes the activations it reads.
    static ACTS: RefCell<QuantizedActs> = RefCell::new(QuantizedActs::default());
}

/// Fills this thread's scratch `key` with `fill` and runs `f` with it; a
/// thread that re-enters (rbench never does) gets a fresh value instead.
fn with_scratch<A: Default + 'static, T>(
    key: &'static LocalKey<RefCell<A>>,
    fill: impl FnOnce(&mut A) -> Result<(), KernelError>,
    f: impl FnOnce(&A) -> T,
) -> Result<T, KernelError> {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            fill(&mut scratch)?;
            Ok(f(&scratch))
        }
        Err(_) => {
            let mut fresh = A::default();
            fill(&mut fresh)?;
            Ok(f(&fresh))
        }
    })
}

/// Quantizes `x` into this thread's scratch and runs `f` with it.
pub fn with_thread_acts<T>(
    kernel: &dyn MatmulKernel,
    x: &[f32],
    k: usize,
    n: usize,
    f: impl FnOnce(&QuantizedActs) -> T,
) -> Result<T, KernelError> {
    with_scratch(&ACTS, |a| a.quantize(x, k, n, kernel.acts_format()), f)
}

/// `out = W · X` for rows `rows` of `W`: `weights` is `n_rows` rows of `k`
/// values of `ty`, `x` is `n` columns of `k` F32 values, `out` is `n`
/// columns of `n_rows` values (column-major, like ggml's `mul_mat` result);
/// only the given rows of each column are written.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    kernel: &dyn MatmulKernel,
    ty: GgmlType,
    weights: &[u8],
    n_rows: usize,
    k: usize,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    rows: Range<usize>,
    batch_invariant: bool,
) -> Result<(), KernelError> {
    if !kernel.supports(ty) {
        return Err(KernelError::Unsupported(ty));
    }
    check_k(k)?;
    if !k.is_multiple_of(ty.block_size()) {
        return Err(KernelError::BadRowLength { k });
    }
    check_len("weights (bytes)", weights.len(), n_rows * row_bytes(ty, k))?;
    check_len("output", out.len(), n * n_rows)?;
    if rows.start > rows.end || rows.end > n_rows {
        return Err(KernelError::BadRows {
            start: rows.start,
            end: rows.end,
            n_rows,
        });
    }
    let mut cols: Vec<&mut [f32]> = out
        .chunks_exact_mut(n_rows.max(1))
        .map(|c| &mut c[rows.clone()])
        .collect();
    if n_rows == 0 {
        return Ok(());
    }
    matmul_f32_columns(
        kernel,
        ty,
        weights,
        x,
        k,
        n,
        rows,
        &mut cols,
        batch_invariant,
    )
}

/// `cols[c][i] = dot(weight row rows.start + i, column c of x)`, with the
/// activations quantized in this thread's scratch in the format the weight
/// type pairs with. What the graph's custom op and [`matmul`] run.
/// `batch_invariant` keeps every column's float steps independent of `n`;
/// otherwise many columns may take the kernel's tiled path.
#[allow(clippy::too_many_arguments)]
pub fn matmul_f32_columns(
    kernel: &dyn MatmulKernel,
    ty: GgmlType,
    weights: &[u8],
    x: &[f32],
    k: usize,
    n: usize,
    rows: Range<usize>,
    cols: &mut [&mut [f32]],
    batch_invariant: bool,
) -> Result<(), KernelError> {
    if kquants::is_super_block_type(ty) {
        return kquants::with_thread_acts(kernel.isa(), x, k, n, |acts| {
            kquants::matmul_rows(kernel.isa(), ty, weights, acts, rows, cols)
        })?;
    }
    with_thread_acts(kernel, x, k, n, |acts| {
        check_rows(kernel, ty, weights, acts, &rows, cols)?;
        let tiled = !batch_invariant
            && n >= TILED_MIN_COLUMNS
            && kernel.matmul_rows_tiled(ty, weights, acts, rows.clone(), cols);
        if !tiled {
            kernel.matmul_rows(ty, weights, acts, rows.clone(), cols)?;
        }
        Ok(())
    })?
}

/// The row range thread `ith` of `nth` computes: equal shares, cut at
/// multiples of `align` rows so threads do not share output cache lines
/// or row pairs.
pub fn thread_rows(n_rows: usize, ith: usize, nth: usize, align: usize) -> Range<usize> {
    let nth = nth.max(1);
    let align = align.max(1);
    let per = n_rows.div_ceil(nth).div_ceil(align) * align;
    let start = (ith * per).min(n_rows);
    let end = (start + per).min(n_rows);
    start..end
}

#[cfg(test)]
mod tests;
