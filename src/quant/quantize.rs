//! Rust quantizers for `Q8_0`, `Q4_K` and `Q6_K` (used to build synthetic
//! models from floats).
//!
//! Each one minimises the plain squared error of the dequantized values:
//! per run it tries a small grid of step sizes, refits the best scale (and
//! offset) by least squares, then, once the run scales are rounded to their
//! stored integer form, re-picks each run's integer scale among its
//! neighbours by exact error, using the very products the dequantizer uses.

use half::f16;

use super::blocks::{BlockQ4K, BlockQ6K, BlockQ8_0};
use super::{GgmlType, QuantError, QK_K};

/// Types that [`quantize`] handles.
pub const RUST_QUANTIZE_TYPES: [GgmlType; 3] = [GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K];

/// Quantizes `src` (a whole number of blocks of `ty`) into ggml blocks.
pub fn quantize(ty: GgmlType, src: &[f32]) -> Result<Vec<u8>, QuantError> {
    if !RUST_QUANTIZE_TYPES.contains(&ty) {
        return Err(QuantError::Unsupported(ty));
    }
    let n_bytes = ty
        .bytes_for(src.len() as u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or(QuantError::PartialBlock {
            ty,
            n_elements: src.len(),
            block_size: ty.block_size(),
        })?;
    let mut out = vec![0u8; n_bytes];
    quantize_into(ty, src, &mut out)?;
    Ok(out)
}

/// Quantizes `src` into `dst`, which must be exactly the size of the blocks.
pub fn quantize_into(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    if !RUST_QUANTIZE_TYPES.contains(&ty) {
        return Err(QuantError::Unsupported(ty));
    }
    super::dequant::check_geometry(ty, dst.len(), src.len())?;
    if let Some((index, value)) = src.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(QuantError::NonFinite {
            index,
            value: *value,
        });
    }
    let written = match ty {
        GgmlType::Q8_0 => src
            .as_chunks::<32>()
            .0
            .iter()
            .zip(dst.chunks_exact_mut(BlockQ8_0::BYTES))
            .try_for_each(|(x, out)| quantize_q8_0_block(x, out)),
        GgmlType::Q4_K => src
            .as_chunks::<QK_K>()
            .0
            .iter()
            .zip(dst.chunks_exact_mut(BlockQ4K::BYTES))
            .try_for_each(|(x, out)| quantize_q4_k_block(x, out)),
        GgmlType::Q6_K => src
            .as_chunks::<QK_K>()
            .0
            .iter()
            .zip(dst.chunks_exact_mut(BlockQ6K::BYTES))
            .try_for_each(|(x, out)| quantize_q6_k_block(x, out)),
        _ => return Err(QuantError::Unsupported(ty)),
    };
    written.ok_or(QuantError::BadBlock(ty))
}

/// Rounds a positive scale to f16, keeping it finite.
fn to_f16_finite(v: f32) -> f16 {
    f16::from_f32(v.min(f16::MAX.to_f32()))
}

/// Squared error of `x` against `scale * q` with `q` rounded and clamped to
/// `lo..=hi`; also yields the chosen quants.
#[inline(always)]
fn symmetric_error<const N: usize>(x: &[f32; N], scale: f32, lo: f32, hi: f32) -> f32 {
    let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
    x.iter()
        .map(|&v| {
            let q = (v * inv).round_ties_even().clamp(lo, hi);
            let e = v - scale * q;
            e * e
        })
        .sum()
}

fn quantize_q8_0_block(x: &[f32; 32], out: &mut [u8]) -> Option<()> {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    // Candidates: the step that maps the largest value to 127, and the
    // least-squares step for the quants that step gives.
    let first = to_f16_finite(amax / 127.0);
    let mut best = (symmetric_error(x, first.to_f32(), -127.0, 127.0), first);
    let s = first.to_f32();
    if s != 0.0 {
        let inv = 1.0 / s;
        let (sxq, sqq) = x.iter().fold((0f32, 0f32), |(sxq, sqq), &v| {
            let q = (v * inv).round_ties_even().clamp(-127.0, 127.0);
            (sxq + v * q, sqq + q * q)
        });
        if sqq > 0.0 {
            let refit = to_f16_finite(sxq / sqq);
            let err = symmetric_error(x, refit.to_f32(), -127.0, 127.0);
            if err < best.0 {
                best = (err, refit);
            }
        }
    }
    let d = best.1;
    let s = d.to_f32();
    let inv = if s != 0.0 { 1.0 / s } else { 0.0 };
    let qs = x.map(|v| (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8);
    BlockQ8_0::write(out, d, &qs)
}

/// The signed step for a run of `Q6_K` (quants in -32..=31) that minimises
/// the squared error, searched around "largest value maps to -32".
fn q6_run_scale(x: &[f32; 16]) -> f32 {
    let (amax, xmax) = x.iter().fold((0f32, 0f32), |(amax, xmax), &v| {
        if v.abs() > amax {
            (v.abs(), v)
        } else {
            (amax, xmax)
        }
    });
    if amax < 1e-30 {
        return 0.0;
    }
    let mut best = (f32::INFINITY, 0f32);
    for step in -6..=6 {
        // A negative step maps the largest value to the -32 end, which has
        // one more level than the positive side.
        let inv = -(32.0 + 0.25 * step as f32) / xmax;
        let (sxq, sqq) = x.iter().fold((0f32, 0f32), |(sxq, sqq), &v| {
            let q = (v * inv).round_ties_even().clamp(-32.0, 31.0);
            (sxq + v * q, sqq + q * q)
        });
        if sqq <= 0.0 {
            continue;
        }
        let scale = sxq / sqq;
        let err = symmetric_error(x, scale, -32.0, 31.0);
        if err < best.0 {
            best = (err, scale);
        }
    }
    best.1
}

fn quantize_q6_k_block(x: &[f32; QK_K], out: &mut [u8]) -> Option<()> {
    let runs = x.as_chunks::<16>().0;
    let mut run_scales = [0f32; 16];
    for (s, run) in run_scales.iter_mut().zip(runs) {
        *s = q6_run_scale(run);
    }
    let smax = run_scales
        .iter()
        .fold(0f32, |m, &s| if s.abs() > m.abs() { s } else { m });
    // The largest run scale maps to -128, the extra level of an i8.
    let d = to_f16_finite((smax / -128.0).abs());
    let d = if smax > 0.0 { -d } else { d };
    let dq = d.to_f32();
    let mut scales = [0i8; 16];
    let mut q = [0i8; QK_K];
    if dq != 0.0 {
        for (((sc, &s), run), qrun) in scales
            .iter_mut()
            .zip(&run_scales)
            .zip(runs)
            .zip(q.as_chunks_mut::<16>().0)
        {
            let first = (s / dq).round_ties_even().clamp(-128.0, 127.0) as i32;
            let mut best = (f32::INFINITY, 0i32);
            for cand in (first - 2).max(-128)..=(first + 2).min(127) {
                // The dequantizer computes (d * sc) * q.
                let err = symmetric_error(run, dq * cand as f32, -32.0, 31.0);
                if err < best.0 {
                    best = (err, cand);
                }
            }
            *sc = best.1 as i8;
            let step = dq * best.1 as f32;
            let inv = if step != 0.0 { 1.0 / step } else { 0.0 };
            for (qv, &v) in qrun.iter_mut().zip(run) {
                *qv = (v * inv).round_ties_even().clamp(-32.0, 31.0) as i8;
            }
        }
    }
    BlockQ6K::write(out, d, &scales, &q)
}

/// Squared error of `x` against `step * q - offset` with `q` rounded and
/// clamped to 0..=15, as the `Q4_K` dequantizer computes it.
#[inline(always)]
fn affine_error(x: &[f32; 32], step: f32, offset: f32) -> f32 {
    let inv = if step != 0.0 { 1.0 / step } else { 0.0 };
    x.iter()
        .map(|&v| {
            let q = ((v + offset) * inv).round_ties_even().clamp(0.0, 15.0);
            let e = v - (step * q - offset);
            e * e
        })
        .sum()
}

/// Sums over a run for fitting `x ~ step * q - offset`.
#[derive(Clone, Copy)]
struct RunSums {
    sq: f32,
    sqq: f32,
    sx: f32,
    sxq: f32,
}

impl RunSums {
    #[inline(always)]
    fn of(x: &[f32; 32], q: &[f32; 32]) -> Self {
        let (mut sq, mut sqq, mut sx, mut sxq) = (0f32, 0f32, 0f32, 0f32);
        for (&v, &l) in x.iter().zip(q) {
            sq += l;
            sqq += l * l;
            sx += v;
            sxq += v * l;
        }
        Self { sq, sqq, sx, sxq }
    }

    /// Least-squares `(step, offset)` with `offset >= 0` (the format stores
    /// an unsigned min).
    #[inline(always)]
    fn fit(&self) -> Option<(f32, f32)> {
        let n = 32.0f32;
        let det = n * self.sqq - self.sq * self.sq;
        if det <= 0.0 {
            return None;
        }
        let step = (n * self.sxq - self.sx * self.sq) / det;
        let intercept = (self.sqq * self.sx - self.sq * self.sxq) / det;
        if intercept > 0.0 {
            // Offset pinned to zero: refit the step alone.
            return (self.sqq > 0.0).then(|| ((self.sxq / self.sqq).max(0.0), 0.0));
        }
        Some((step.max(0.0), -intercept))
    }

    /// Squared error of the fit, from the sums (`sxx` = sum of x^2); only
    /// used to rank candidates, the final choice uses the exact error.
    #[inline(always)]
    fn error(&self, sxx: f32, step: f32, offset: f32) -> f32 {
        let n = 32.0f32;
        sxx + step * step * self.sqq + n * offset * offset - 2.0 * step * self.sxq
            + 2.0 * offset * self.sx
            - 2.0 * step * offset * self.sq
    }
}

/// The (step, offset) for one 32-value run of `Q4_K` with the least
/// squared error, over a grid of steps around the run's range.
fn q4_run_params(x: &[f32; 32]) -> (f32, f32) {
    let (lo, hi) = x.iter().fold((0f32, f32::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    // The offset cannot be negative, so the grid starts at min(lo, 0).
    let range = hi - lo;
    if range <= 1e-30 {
        return (0.0, -lo);
    }
    let sxx: f32 = x.iter().map(|v| v * v).sum();
    let mut best = (f32::INFINITY, range / 15.0, -lo);
    for k in -10..=10 {
        let inv = (15.0 + 0.1 * k as f32) / range;
        let q = x.map(|v| ((v - lo) * inv).round_ties_even().clamp(0.0, 15.0));
        let sums = RunSums::of(x, &q);
        let Some((step, offset)) = sums.fit() else {
            continue;
        };
        let err = sums.error(sxx, step, offset);
        if err < best.0 {
            best = (err, step, offset);
        }
    }
    best.0 = affine_error(x, best.1, best.2);
    // The plain min/max step competes too.
    let plain = affine_error(x, range / 15.0, -lo);
    if plain < best.0 {
        best = (plain, range / 15.0, -lo);
    }
    // A couple of alternations: requantize with the best fit, refit.
    for _ in 0..2 {
        let (_, step, offset) = best;
        if step == 0.0 {
            break;
        }
        let inv = 1.0 / step;
        let q = x.map(|v| ((v + offset) * inv).round_ties_even().clamp(0.0, 15.0));
        let Some((step, offset)) = RunSums::of(x, &q).fit() else {
            break;
        };
        let err = affine_error(x, step, offset);
        if err < best.0 {
            best = (err, step, offset);
        } else {
            break;
        }
    }
    (best.1, best.2)
}

fn quantize_q4_k_block(x: &[f32; QK_K], out: &mut [u8]) -> Option<()> {
    let runs = x.as_chunks::<32>().0;
    let mut steps = [0f32; 8];
    let mut offsets = [0f32; 8];
    for ((s, o), run) in steps.iter_mut().zip(offsets.iter_mut()).zip(runs) {
        (*s, *o) = q4_run_params(run);
    }
    let max_step = steps.iter().fold(0f32, |a, &b| a.max(b));
    let max_offset = offsets.iter().fold(0f32, |a, &b| a.max(b));
    let d = to_f16_finite(max_step / 63.0);
    let dmin = to_f16_finite(max_offset / 63.0);
    let (dq, mq) = (d.to_f32(), dmin.to_f32());
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    let mut q = [0u8; QK_K];
    for (j, (run, qrun)) in runs.iter().zip(q.as_chunks_mut::<32>().0).enumerate() {
        let first_sc = if dq > 0.0 {
            (steps[j] / dq).round_ties_even().clamp(0.0, 63.0) as i32
        } else {
            0
        };
        let first_m = if mq > 0.0 {
            (offsets[j] / mq).round_ties_even().clamp(0.0, 63.0) as i32
        } else {
            0
        };
        let mut best = (f32::INFINITY, 0i32, 0i32);
        for cs in (first_sc - 1).max(0)..=(first_sc + 1).min(63) {
            for cm in (first_m - 1).max(0)..=(first_m + 1).min(63) {
                // The dequantizer computes (d * sc) * q - (dmin * m).
                let err = affine_error(run, dq * cs as f32, mq * cm as f32);
                if err < best.0 {
                    best = (err, cs, cm);
                }
            }
        }
        let (_, cs, cm) = best;
        sc[j] = cs as u8;
        m[j] = cm as u8;
        let step = dq * cs as f32;
        let offset = mq * cm as f32;
        let inv = if step != 0.0 { 1.0 / step } else { 0.0 };
        for (qv, &v) in qrun.iter_mut().zip(run) {
            *qv = ((v + offset) * inv).round_ties_even().clamp(0.0, 15.0) as u8;
        }
    }
    BlockQ4K::write(out, d, dmin, &sc, &m, &q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize_to_vec;

    fn rmse(a: &[f32], b: &[f32]) -> f64 {
        let s: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum();
        (s / a.len() as f64).sqrt()
    }

    fn wave(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.37).sin() * 0.05 + (i as f32 * 0.011).cos() * 0.01)
            .collect()
    }

    #[test]
    fn round_trip_error_is_small_relative_to_signal() {
        let x = wave(QK_K * 8);
        let signal = rmse(&x, &vec![0.0; x.len()]);
        // Expected relative error by bits: 8-bit ~0.3%, 6-bit ~1.5%, 4-bit ~6%.
        for (ty, limit) in [
            (GgmlType::Q8_0, 0.006),
            (GgmlType::Q6_K, 0.03),
            (GgmlType::Q4_K, 0.10),
        ] {
            let q = quantize(ty, &x).unwrap();
            assert_eq!(q.len() as u64, ty.bytes_for(x.len() as u64).unwrap());
            let back = dequantize_to_vec(ty, &q, x.len()).unwrap();
            let rel = rmse(&x, &back) / signal;
            assert!(rel < limit, "{ty}: relative rmse {rel}");
            assert!(rel > 0.0, "{ty}: lossless is suspicious");
        }
    }

    #[test]
    fn zeros_and_constants_survive() {
        for ty in RUST_QUANTIZE_TYPES {
            let zeros = vec![0f32; QK_K];
            let back = dequantize_to_vec(ty, &quantize(ty, &zeros).unwrap(), QK_K).unwrap();
            assert!(back.iter().all(|v| *v == 0.0), "{ty}");
            let negative = vec![-0.25f32; QK_K];
            let back = dequantize_to_vec(ty, &quantize(ty, &negative).unwrap(), QK_K).unwrap();
            assert!(
                back.iter().all(|v| (v + 0.25).abs() < 1e-3),
                "{ty}: {:?}",
                &back[..4]
            );
        }
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(matches!(
            quantize(GgmlType::Q4_K, &[0.0; 100]),
            Err(QuantError::PartialBlock { .. })
        ));
        assert_eq!(
            quantize(GgmlType::Q5_K, &[0.0; 256]),
            Err(QuantError::Unsupported(GgmlType::Q5_K))
        );
        let mut x = vec![0.5f32; 32];
        x[7] = f32::NAN;
        assert!(matches!(
            quantize(GgmlType::Q8_0, &x),
            Err(QuantError::NonFinite { index: 7, .. })
        ));
        let mut dst = vec![0u8; 33];
        assert!(matches!(
            quantize_into(GgmlType::Q8_0, &[0.0; 32], &mut dst),
            Err(QuantError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn huge_values_stay_finite() {
        let x: Vec<f32> = (0..QK_K).map(|i| (i as f32 - 128.0) * 1e6).collect();
        for ty in RUST_QUANTIZE_TYPES {
            let back = dequantize_to_vec(ty, &quantize(ty, &x).unwrap(), QK_K).unwrap();
            assert!(back.iter().all(|v| v.is_finite()), "{ty}");
        }
    }
}
