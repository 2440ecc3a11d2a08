//! `Q4_K` against [`MIN_COLUMNS`] columns or more on AMX tiles (Sapphire
//! Rapids and later), computing [`super`]'s canonical sums exactly, so its
//! results are the portable kernel's bit for bit, like every other path.
//!
//! A tile product sums 64 unsigned-by-signed byte products per output, but
//! `Q4_K`'s integer `I = Σ_v sc[v/32]·u_v·q_v` has a scale per run of 32.
//! Splitting each 6-bit scale as `sc = 16·hi + lo` makes two weight planes
//! of bytes, `lo·u` (at most 15·15) and `hi·u` (at most 3·15), so that
//! `I = 16·(hi plane · q) + (lo plane · q)`: two plain dot products over
//! the whole block. A third plane holds each value's run min `m[v/32]`, so
//! `M = Σ_l m[l/2]·bsum_l` is the plane's dot product with `q` as well.
//! The planes are decoded per 16 rows and block into a buffer that stays
//! in L1 while every column group's tile product reuses it.
//!
//! The activations' [`super::Tiles`] are already the layout a tile product
//! takes for its second operand (16 columns' four-byte groups side by
//! side). Per block, the three integer tiles are stored and the float chain
//! runs on 16 columns at a time, in the canonical order.
//!
//! ggml's own AMX kernels keep their tile configuration loaded on their
//! threads, which rbench's kernels share, so this kernel saves the
//! configuration it finds and puts it back when it is done
//! ([`TileConfigGuard`]).

use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::avx512::{decode_q4_k, halves};
use super::{SuperActs, Q4K_BYTES, QK_K, TILE_COLUMNS};
use crate::kernels::avx512::Avx512Kernel;
use crate::quant::blocks::k4_scales_mins;
use crate::quant::GgmlType;

/// Fewest columns this kernel takes: below, decoding the planes costs more
/// than the tiles save (`KB_COLUMNS=16,32,128,512 KB_TYPES=q4_K cargo bench
/// --bench kernels`, 2-core Sapphire Rapids, 2 threads: 0.84-0.99x ggml's
/// AMX kernel at 16 and 32 columns, 1.33-1.61x at 128, 1.51-1.76x at 512,
/// where the AVX-512 tiled path was 0.96-1.2x).
pub(super) const MIN_COLUMNS: usize = 64;

/// Weight rows per tile (the tile's rows).
const TILE_ROWS: usize = 16;
/// Bytes of a tile row (64 values along K).
const TILE_ROW_BYTES: usize = 64;
/// Bytes of one 16 × 64 tile.
const TILE_BYTES: usize = TILE_ROWS * TILE_ROW_BYTES;
/// Tiles along one block's 256 values.
const STEPS: usize = QK_K / TILE_ROW_BYTES;
/// Weight planes: `lo·u`, `hi·u`, run min.
const PLANES: usize = 3;

/// Proof that this CPU has AMX-INT8 tiles, that the OS lets this process
/// use them, and that the AVX-512 kernels run (the decoding and the float
/// chain use them): only [`Amx::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Amx {
    _avx512: Avx512Kernel,
}

impl Amx {
    pub(super) fn detect() -> Option<Amx> {
        static READY: OnceLock<bool> = OnceLock::new();
        let avx512 = Avx512Kernel::detect()?;
        READY
            .get_or_init(|| cpu_has_amx_int8() && os_grants_tiles())
            .then_some(Amx { _avx512: avx512 })
    }

    /// The kernel where it takes `ty` weights by `n` columns: `Q4_K`, at
    /// least [`MIN_COLUMNS`], on a CPU with AMX-INT8. The one place that
    /// decides, for the AVX-512 dispatch and for the graph builder's choice
    /// (`super::amx_runs`).
    pub(super) fn for_matmul(ty: GgmlType, n: usize) -> Option<Amx> {
        (ty == GgmlType::Q4_K && n >= MIN_COLUMNS)
            .then(Amx::detect)
            .flatten()
    }
}

/// CPUID leaf 7: AMX-TILE (EDX bit 24) and AMX-INT8 (EDX bit 25).
fn cpu_has_amx_int8() -> bool {
    // SAFETY: CPUID is available on every x86-64 CPU; leaf 7 is read only
    // where the highest basic leaf says it exists.
    #[allow(unused_unsafe)]
    let edx = unsafe {
        if __get_cpuid_max(0).0 < 7 {
            return false;
        }
        __cpuid_count(7, 0).edx
    };
    edx & (1 << 24) != 0 && edx & (1 << 25) != 0
}

/// Linux hands out the tiles' 8 KiB of register state only to processes
/// that ask for it (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`;
/// ggml asks too when it loads its AMX buffer type). Asking again is
/// harmless.
fn os_grants_tiles() -> bool {
    #[cfg(target_os = "linux")]
    {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: arch_prctl with this request only changes which register
        // state the kernel saves for this process; it touches no memory.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        rc == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// The 64-byte operand of `ldtilecfg` / `sttilecfg`.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    /// Tiles 0-7 all 16 rows of 64 bytes (palette 1).
    fn ours() -> TileConfig {
        let mut c = TileConfig::unset();
        c.palette = 1;
        for t in 0..8 {
            c.colsb[t] = TILE_ROW_BYTES as u16;
            c.rows[t] = TILE_ROWS as u8;
        }
        c
    }

    fn unset() -> TileConfig {
        TileConfig {
            palette: 0,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        }
    }
}

/// This thread's tile configuration while the kernel runs: loads ours, and
/// on drop (unwinding included) puts back what was there, so ggml's AMX
/// kernels on the same thread find theirs.
struct TileConfigGuard {
    saved: TileConfig,
}

impl TileConfigGuard {
    fn load(_amx: Amx) -> TileConfigGuard {
        let mut saved = TileConfig::unset();
        let ours = TileConfig::ours();
        // SAFETY: `_amx` proves AMX and the OS's permission; both operands
        // are 64-byte, 64-aligned buffers of this function.
        unsafe {
            asm!(
                "sttilecfg [{saved}]",
                "ldtilecfg [{ours}]",
                saved = in(reg) &mut saved as *mut TileConfig,
                ours = in(reg) &ours as *const TileConfig,
                options(nostack),
            );
        }
        TileConfigGuard { saved }
    }
}

impl Drop for TileConfigGuard {
    fn drop(&mut self) {
        // SAFETY: only made by `load`, on a CPU with AMX; the saved
        // configuration is the one `sttilecfg` stored (palette 0: none was
        // loaded, so the tiles are released instead).
        unsafe {
            if self.saved.palette == 0 {
                asm!("tilerelease", options(nostack, nomem));
            } else {
                asm!(
                    "ldtilecfg [{saved}]",
                    saved = in(reg) &self.saved as *const TileConfig,
                    options(nostack, readonly),
                );
            }
        }
    }
}

/// One block of 16 weight rows as tile operands: per plane and step, the
/// 16 rows' 64 bytes (`planes[((p · STEPS) + s) · TILE_BYTES + 64·r ..]`),
/// and the rows' float factors (zero for rows past the end).
#[repr(C, align(64))]
struct RowTiles {
    planes: [u8; PLANES * STEPS * TILE_BYTES],
    d: [f32; TILE_ROWS],
    dmin: [f32; TILE_ROWS],
}

/// The three integer tiles of one product (`lo`, `hi`, `min`), 16 rows of
/// 16 columns each.
#[repr(C, align(64))]
struct Products([i32; PLANES * TILE_ROWS * TILE_COLUMNS]);

/// `out[c][i] = dot(row i of weights, column c)` for columns `0 ..
/// out.len()` (all in `groups` tile groups, the last one padded), `Q4_K`
/// weights holding exactly the output rows (sizes checked by
/// [`super::matmul_rows`]).
pub(super) fn matmul_q4_k(
    amx: Amx,
    weights: &[u8],
    acts: &SuperActs,
    groups: usize,
    out: &mut [&mut [f32]],
) {
    let nb = acts.k / QK_K;
    let row_bytes = nb * Q4K_BYTES;
    if nb == 0 || !weights.len().is_multiple_of(row_bytes) || groups == 0 {
        return;
    }
    let n_rows = weights.len() / row_bytes;
    // Groups per pass over the rows: as many as keep their tiles within
    // half of a 2 MiB L2 cache, as the AVX-512 tiled path does.
    let pass = ((1usize << 20) / (nb * QK_K * TILE_COLUMNS)).clamp(1, groups);
    let mut tiles = Box::new(RowTiles {
        planes: [0; PLANES * STEPS * TILE_BYTES],
        d: [0.0; TILE_ROWS],
        dmin: [0.0; TILE_ROWS],
    });
    let mut products = Box::new(Products([0; PLANES * TILE_ROWS * TILE_COLUMNS]));
    // Per group of the pass, the 16 rows' float chains (16 columns each).
    let mut acc = vec![[0f32; TILE_COLUMNS]; pass * TILE_ROWS];
    let _config = TileConfigGuard::load(amx);
    for g0 in (0..groups).step_by(pass) {
        let pass_groups = g0..(g0 + pass).min(groups);
        for r0 in (0..n_rows).step_by(TILE_ROWS) {
            let rows = (n_rows - r0).min(TILE_ROWS);
            acc.fill([0.0; TILE_COLUMNS]);
            for b in 0..nb {
                // SAFETY: `amx` proves the AVX-512 features `decode_rows` is
                // compiled for; rows r0 .. r0 + rows are whole rows of
                // `weights`, block b < nb of each.
                unsafe { decode_rows(amx, weights, row_bytes, r0, rows, b, &mut tiles) };
                for (i, g) in pass_groups.clone().enumerate() {
                    let (xq, _, xd) = acts.tile(g, b);
                    // SAFETY: our tile configuration is loaded (`_config`);
                    // the planes hold 3 × 4 tiles and `xq` the block's 4
                    // tiles of 1 KiB; `products` holds 3 tiles.
                    unsafe { tile_products(&tiles.planes, xq, &mut products.0) };
                    let acc = &mut acc[i * TILE_ROWS..(i + 1) * TILE_ROWS];
                    // SAFETY: as above, for the AVX-512 chain step.
                    unsafe { chain(amx, &products.0, &tiles, xd, acc) };
                }
            }
            for (i, g) in pass_groups.clone().enumerate() {
                let c0 = g * TILE_COLUMNS;
                let cols = (out.len() - c0.min(out.len())).min(TILE_COLUMNS);
                let acc = &acc[i * TILE_ROWS..][..TILE_ROWS];
                // A column's 16 rows are one cache line of the output:
                // written whole, column by column (row by row, the stores
                // scattered over 16 lines took a third of the kernel's time).
                for (c, col) in out[c0..c0 + cols].iter_mut().enumerate() {
                    let rows_of_c: [f32; TILE_ROWS] = std::array::from_fn(|r| acc[r][c]);
                    col[r0..r0 + rows].copy_from_slice(&rows_of_c[..rows]);
                }
            }
        }
    }
}

/// Decodes block `b` of rows `r0 .. r0 + rows` into the three planes (rows
/// past `rows` zero).
///
/// # Safety
/// Rows `r0 .. r0 + rows` of `row_bytes` each must lie in `weights`, and
/// `b` must be a block of them.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn decode_rows(
    _amx: Amx,
    weights: &[u8],
    row_bytes: usize,
    r0: usize,
    rows: usize,
    b: usize,
    tiles: &mut RowTiles,
) {
    let plane_at =
        |p: usize, s: usize, r: usize| ((p * STEPS + s) * TILE_ROWS + r) * TILE_ROW_BYTES;
    for r in 0..TILE_ROWS {
        if r >= rows {
            for p in 0..PLANES {
                for s in 0..STEPS {
                    tiles.planes[plane_at(p, s, r)..][..TILE_ROW_BYTES].fill(0);
                }
            }
            tiles.d[r] = 0.0;
            tiles.dmin[r] = 0.0;
            continue;
        }
        let block = &weights[(r0 + r) * row_bytes + b * Q4K_BYTES..][..Q4K_BYTES];
        // SAFETY: `block` is one whole Q4_K block.
        let w = unsafe { decode_q4_k(block.as_ptr()) };
        let (sc, m) = k4_scales_mins(super::block_array(&block[4..16]));
        for (s, u) in w.u.iter().enumerate() {
            // Step s is quarter s: runs 2s (bytes 0..32) and 2s + 1. Each
            // byte product is below 256, so a 16-bit multiply of byte pairs
            // never carries into the neighbour.
            let (a, z) = (sc[2 * s], sc[2 * s + 1]);
            let lo = _mm512_mullo_epi16(*u, halves(i16::from(a & 15), i16::from(z & 15)));
            let hi = _mm512_mullo_epi16(*u, halves(i16::from(a >> 4), i16::from(z >> 4)));
            let min = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_set1_epi8(m[2 * s] as i8)),
                _mm256_set1_epi8(m[2 * s + 1] as i8),
            );
            for (p, v) in [lo, hi, min].into_iter().enumerate() {
                // SAFETY: 64 bytes at a 64-byte row of the planes.
                unsafe {
                    _mm512_storeu_si512(tiles.planes.as_mut_ptr().add(plane_at(p, s, r)).cast(), v)
                };
            }
        }
        tiles.d[r] = w.d;
        tiles.dmin[r] = w.dmin;
    }
}

/// The block's three integer tiles: rows × columns of `lo·q`, `hi·q` and
/// `min·q`, summed over the block's 256 values.
///
/// # Safety
/// Our tile configuration must be loaded; `planes` holds 12 tiles and `xq`
/// 4 tiles (as [`RowTiles`] and [`super::Tiles`] lay them out).
#[inline]
unsafe fn tile_products(
    planes: &[u8; PLANES * STEPS * TILE_BYTES],
    xq: &[i8],
    out: &mut [i32; PLANES * TILE_ROWS * TILE_COLUMNS],
) {
    debug_assert!(xq.len() >= STEPS * TILE_BYTES);
    // SAFETY: the caller guarantees the configuration (16 rows of 64 bytes
    // in tiles 0-7) and the buffers' sizes; every load and store stays
    // within them (stride 64, 16 rows, displacements below 12 KiB).
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tileloadd tmm6, [{x} + {s}]",
            "tileloadd tmm3, [{w} + {s}]",
            "tileloadd tmm4, [{w} + {s} + 4096]",
            "tileloadd tmm5, [{w} + {s} + 8192]",
            "tdpbusd tmm0, tmm3, tmm6",
            "tdpbusd tmm1, tmm4, tmm6",
            "tdpbusd tmm2, tmm5, tmm6",
            "tileloadd tmm6, [{x} + {s} + 1024]",
            "tileloadd tmm3, [{w} + {s} + 1024]",
            "tileloadd tmm4, [{w} + {s} + 5120]",
            "tileloadd tmm5, [{w} + {s} + 9216]",
            "tdpbusd tmm0, tmm3, tmm6",
            "tdpbusd tmm1, tmm4, tmm6",
            "tdpbusd tmm2, tmm5, tmm6",
            "tileloadd tmm6, [{x} + {s} + 2048]",
            "tileloadd tmm3, [{w} + {s} + 2048]",
            "tileloadd tmm4, [{w} + {s} + 6144]",
            "tileloadd tmm5, [{w} + {s} + 10240]",
            "tdpbusd tmm0, tmm3, tmm6",
            "tdpbusd tmm1, tmm4, tmm6",
            "tdpbusd tmm2, tmm5, tmm6",
            "tileloadd tmm6, [{x} + {s} + 3072]",
            "tileloadd tmm3, [{w} + {s} + 3072]",
            "tileloadd tmm4, [{w} + {s} + 7168]",
            "tileloadd tmm5, [{w} + {s} + 11264]",
            "tdpbusd tmm0, tmm3, tmm6",
            "tdpbusd tmm1, tmm4, tmm6",
            "tdpbusd tmm2, tmm5, tmm6",
            "tilestored [{c} + {s}], tmm0",
            "tilestored [{c} + {s} + 1024], tmm1",
            "tilestored [{c} + {s} + 2048], tmm2",
            x = in(reg) xq.as_ptr(),
            w = in(reg) planes.as_ptr(),
            c = in(reg) out.as_mut_ptr(),
            s = in(reg) TILE_ROW_BYTES,
            options(nostack),
        );
    }
}

/// One block's float steps for 16 rows × 16 columns: `I = 16·hi + lo`,
/// then `acc = fma(I, d·dx, acc)` and `acc = fma(M, -(dmin·dx), acc)`.
///
/// # Safety
/// Needs only what `_amx` proves.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn chain(
    _amx: Amx,
    products: &[i32; PLANES * TILE_ROWS * TILE_COLUMNS],
    tiles: &RowTiles,
    xd: &[f32],
    acc: &mut [[f32; TILE_COLUMNS]],
) {
    let tile = TILE_ROWS * TILE_COLUMNS;
    // SAFETY: the tile's 16 column scales.
    let dx = unsafe { _mm512_loadu_ps(xd.as_ptr()) };
    for (r, a) in acc.iter_mut().enumerate().take(TILE_ROWS) {
        let at = r * TILE_COLUMNS;
        // SAFETY: row r of each of the three 256-value tiles; 16 lanes of
        // the row's accumulator.
        unsafe {
            let lo = _mm512_loadu_si512(products.as_ptr().add(at).cast());
            let hi = _mm512_loadu_si512(products.as_ptr().add(tile + at).cast());
            let m = _mm512_loadu_si512(products.as_ptr().add(2 * tile + at).cast());
            let i = _mm512_add_epi32(_mm512_slli_epi32::<4>(hi), lo);
            let mut v = _mm512_loadu_ps(a.as_ptr());
            v = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(i),
                _mm512_mul_ps(_mm512_set1_ps(tiles.d[r]), dx),
                v,
            );
            let dmin = _mm512_mul_ps(_mm512_set1_ps(tiles.dmin[r]), dx);
            v = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), dmin, v);
            _mm512_storeu_ps(a.as_mut_ptr(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::random_blocks;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn cpu_flags() -> String {
        std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()
    }

    #[test]
    fn amx_is_used_where_the_cpu_has_it() {
        let flags = cpu_flags();
        let has = |f: &str| flags.split_whitespace().any(|w| w == f);
        if cfg!(target_os = "linux") && has("amx_int8") && has("amx_tile") && has("avx512_vnni") {
            assert!(
                Amx::detect().is_some(),
                "this CPU has AMX-INT8 but the kernel is not used"
            );
        } else {
            assert!(Amx::detect().is_none());
        }
    }

    /// Random `Q4_K` rows, the first row's first block at the extremes
    /// (every scale and min 63, every value 15: the largest byte products).
    fn q4_k_rows(n_rows: usize, k: usize) -> Vec<u8> {
        let mut r = Xoshiro256PlusPlus::seed_from_u64(77);
        let mut w = random_blocks(GgmlType::Q4_K, n_rows * k, &mut r).unwrap();
        w[4..Q4K_BYTES].fill(0xFF);
        w
    }

    fn columns(k: usize, n: usize) -> Vec<f32> {
        let mut r = Xoshiro256PlusPlus::seed_from_u64(k as u64 + n as u64);
        let mut x: Vec<f32> = (0..k * n).map(|_| r.gen_range(-1.0f32..1.0)).collect();
        // The first block of column 0 all at -max: activations of -127.
        x[..QK_K].fill(-3.0);
        x
    }

    #[test]
    fn amx_q4_k_equals_the_portable_kernel_bit_for_bit() {
        let Some(amx) = Amx::detect() else {
            eprintln!("skipped: no AMX-INT8 here (amx_is_used_where_the_cpu_has_it checks that)");
            return;
        };
        // 37 rows: two whole row tiles and a partial one. k = 8192 with
        // 200 columns takes two passes over the rows (8 groups each).
        for (k, n) in [(256, 16), (2048, 64), (2048, 200), (8192, 200)] {
            let (n_rows, nb) = (37, k / QK_K);
            let w = q4_k_rows(n_rows, k);
            let mut acts = SuperActs::default();
            acts.quantize(&columns(k, n), k, n).unwrap();
            acts.build_tiles();
            let mut want = vec![vec![0f32; n_rows]; n];
            let mut want_cols: Vec<&mut [f32]> =
                want.iter_mut().map(|c| c.as_mut_slice()).collect();
            super::super::portable_matmul(GgmlType::Q4_K, &w, &acts, &mut want_cols);
            let mut got = vec![vec![f32::NAN; n_rows]; n];
            let mut got_cols: Vec<&mut [f32]> = got.iter_mut().map(|c| c.as_mut_slice()).collect();
            matmul_q4_k(amx, &w, &acts, n.div_ceil(TILE_COLUMNS), &mut got_cols);
            assert_eq!(w.len(), n_rows * nb * Q4K_BYTES);
            for c in 0..n {
                for r in 0..n_rows {
                    let (g, e) = (got[c][r], want[c][r]);
                    assert_eq!(
                        g.to_bits(),
                        e.to_bits(),
                        "k={k} n={n} column {c} row {r}: {g} vs {e}"
                    );
                }
            }
        }
    }

    fn current_config() -> TileConfig {
        let mut c = TileConfig::unset();
        // SAFETY: only called where `Amx::detect` succeeded; stores 64
        // bytes into `c`.
        unsafe {
            asm!("sttilecfg [{c}]", c = in(reg) &mut c as *mut TileConfig, options(nostack));
        }
        c
    }

    #[test]
    fn the_threads_tile_configuration_is_put_back() {
        let Some(amx) = Amx::detect() else {
            eprintln!("skipped: no AMX-INT8 here");
            return;
        };
        let (k, n, n_rows) = (256, 16, 16);
        let w = q4_k_rows(n_rows, k);
        let mut acts = SuperActs::default();
        acts.quantize(&columns(k, n), k, n).unwrap();
        acts.build_tiles();
        let mut out = vec![vec![0f32; n_rows]; n];
        let run = |out: &mut Vec<Vec<f32>>| {
            let mut cols: Vec<&mut [f32]> = out.iter_mut().map(|c| c.as_mut_slice()).collect();
            matmul_q4_k(amx, &w, &acts, 1, &mut cols);
        };
        // None loaded: none afterwards.
        // SAFETY: AMX is present; releasing tiles has no operands.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
        run(&mut out);
        assert_eq!(current_config().palette, 0);
        // Another configuration (ggml's shapes differ from ours): kept.
        let mut other = TileConfig::ours();
        other.rows[0] = 8;
        other.colsb[2] = 32;
        // SAFETY: a valid palette-1 configuration.
        unsafe {
            asm!("ldtilecfg [{c}]", c = in(reg) &other as *const TileConfig, options(nostack, readonly));
        }
        run(&mut out);
        let after = current_config();
        assert_eq!(
            (after.palette, after.rows, after.colsb),
            (1, other.rows, other.colsb)
        );
        // SAFETY: as above.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}
