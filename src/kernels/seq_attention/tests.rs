use super::*;
use crate::kernels::attention::tests::{case, Case};
use crate::kernels::attention::AttentionShape;
use half::f16;

/// `attention`'s test inputs (random Q/K/V, a mask row per token), built
/// with nothing visible; tests open cells with `see`.
fn blank(shape: AttentionShape, seed: u64) -> Case {
    case(shape, seed, |_, _| false)
}

impl Case {
    fn see(&mut self, token: usize, cells: impl IntoIterator<Item = usize>) {
        for c in cells {
            self.mask[token * self.mask_row + c] = 0;
        }
    }

    /// Every token's output, `[d_v, n_head]` per token, through the work
    /// items a call with `nth` threads makes.
    fn run_rows(&self, nth: usize, kernel: RowKernel) -> Vec<f32> {
        let s = self.shape;
        let inputs = self.inputs();
        let mut out = vec![f32::NAN; s.n_tokens * s.n_head * s.d_v];
        let mut scratch = RowScratch::default();
        for item in RowItems::new(&inputs, nth).iter() {
            let at = (item.token * s.n_head + item.heads.start) * s.d_v;
            let o = &mut out[at..at + item.heads.len() * s.d_v];
            attend_row_with(kernel, &inputs, &item, o, &mut scratch).unwrap();
        }
        out
    }

    /// F64 two-pass softmax over the visible cells.
    fn reference(&self) -> Vec<f64> {
        let s = self.shape;
        let inputs = self.inputs();
        let mut out = Vec::new();
        for t in 0..s.n_tokens {
            let mask = inputs.mask_row(t);
            for h in 0..s.n_head {
                let g = h / s.group();
                let q = inputs.q_at(t, h);
                let scores: Vec<(usize, f64)> = (0..s.n_kv)
                    .filter(|&c| mask[c] != F16_NEG_INF)
                    .map(|c| {
                        let dot: f64 = q
                            .iter()
                            .zip(inputs.k_at(c, g))
                            .map(|(&x, &y)| f64::from(x) * f64::from(f16::from_bits(y)))
                            .sum();
                        (c, dot * f64::from(inputs.scale))
                    })
                    .collect();
                let max = scores.iter().fold(f64::NEG_INFINITY, |a, s| a.max(s.1));
                let mut acc = vec![0f64; s.d_v];
                let mut total = 0.0;
                for &(c, score) in &scores {
                    let p = (score - max).exp();
                    total += p;
                    for (a, &v) in acc.iter_mut().zip(inputs.v_at(c, g)) {
                        *a += p * f64::from(f16::from_bits(v));
                    }
                }
                out.extend(
                    acc.iter()
                        .map(|a| if total > 0.0 { a / total } else { 0.0 }),
                );
            }
        }
        out
    }
}

/// Every form of the walk this CPU runs.
fn kernels() -> Vec<RowKernel> {
    let all = [RowKernel::Portable, RowKernel::Avx2, RowKernel::Avx512];
    let found: Vec<RowKernel> = all.into_iter().filter(|k| k.runs()).collect();
    eprintln!("testing {found:?}");
    found
}

fn shape(n_tokens: usize, n_kv: usize, n_head: usize, n_head_kv: usize) -> AttentionShape {
    AttentionShape {
        d_k: 64,
        d_v: 48,
        n_tokens,
        n_kv,
        n_head,
        n_head_kv,
    }
}

/// Softmax weights sum to one, so each output is a convex mix of V values
/// (|v| <= 2): F32 rounding of scores and sums bounds the error.
fn assert_close(ours: &[f32], reference: &[f64], what: &str) {
    assert_eq!(ours.len(), reference.len());
    for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        assert!((f64::from(a) - b).abs() <= 2e-5, "{what} [{i}]: {a} vs {b}");
    }
}

#[test]
fn interleaved_sequences_match_the_reference() {
    // Three sequences whose cells interleave in the cache; each token sees
    // its sequence's cells up to its own, and one token sees nothing.
    for (n_head, n_head_kv) in [(4, 1), (6, 2), (7, 7), (8, 1)] {
        let n_kv = 3 * 45;
        let mut c = blank(shape(7, n_kv, n_head, n_head_kv), 11 + n_head as u64);
        for t in 0..6 {
            let seq = t % 3;
            let upto = 20 + 4 * t;
            c.see(t, (0..n_kv).filter(|x| x % 3 == seq).take(upto));
        }
        let reference = c.reference();
        for kernel in kernels() {
            for nth in [1, 2, 8] {
                assert_close(&c.run_rows(nth, kernel), &reference, &format!("{kernel:?}"));
            }
            let last = &c.run_rows(2, kernel)[6 * n_head * 48..];
            assert!(last.iter().all(|&x| x == 0.0), "a token that sees nothing");
        }
    }
}

/// The property the kernel exists for: a token's output depends only on
/// the values of the cells it sees, in order — not where they sit in the
/// cache, what else the cache or the call holds, or how work is split.
#[test]
fn a_sequence_gives_the_same_bits_wherever_its_cells_are() {
    let (n_head, n_head_kv, len) = (4, 2, 70);
    let alone = {
        let mut c = blank(shape(1, len, n_head, n_head_kv), 5);
        c.see(0, 0..len);
        c
    };
    // The same K/V and query, spread over every third cell of a bigger
    // cache between other sequences' cells, the token fourth of five.
    let mut crowded = blank(shape(5, 3 * len + 2, n_head, n_head_kv), 6);
    let per_cell_k = 64 * n_head_kv;
    let per_cell_v = 48 * n_head_kv;
    for i in 0..len {
        let c = 2 + 3 * i;
        crowded.k[c * per_cell_k..(c + 1) * per_cell_k]
            .copy_from_slice(&alone.k[i * per_cell_k..(i + 1) * per_cell_k]);
        crowded.v[c * per_cell_v..(c + 1) * per_cell_v]
            .copy_from_slice(&alone.v[i * per_cell_v..(i + 1) * per_cell_v]);
    }
    let per_token_q = 64 * n_head;
    crowded.q[3 * per_token_q..4 * per_token_q].copy_from_slice(&alone.q);
    for t in 0..5 {
        if t == 3 {
            crowded.see(t, (0..len).map(|i| 2 + 3 * i));
        } else {
            crowded.see(t, (0..3 * len + 2).filter(|c| c % 3 != 2).take(10 + 9 * t));
        }
    }
    let per_token_out = 48 * n_head;
    for kernel in kernels() {
        let want = alone.run_rows(1, kernel);
        for nth in [1, 2, 3, 16] {
            let got = crowded.run_rows(nth, kernel);
            assert_eq!(
                &got[3 * per_token_out..4 * per_token_out],
                &want[..],
                "{kernel:?}, {nth} threads"
            );
        }
    }
}

#[test]
fn work_items_cover_every_token_and_head_once() {
    for (n_tokens, n_head, n_head_kv, nth) in
        [(1, 4, 1, 2), (3, 12, 2, 4), (64, 32, 8, 2), (1, 1, 1, 8)]
    {
        let c = blank(shape(n_tokens, 16, n_head, n_head_kv), 1);
        let items: Vec<RowItem> = RowItems::new(&c.inputs(), nth).iter().collect();
        let mut seen = vec![0; n_tokens * n_head];
        for item in &items {
            let group = n_head / n_head_kv;
            assert_eq!(item.heads.start / group, (item.heads.end - 1) / group);
            for h in item.heads.clone() {
                seen[item.token * n_head + h] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
        assert!(items.len() >= (2 * nth).min(n_tokens * n_head));
    }
}

#[test]
fn items_that_do_not_fit_are_errors() {
    let c = blank(shape(2, 16, 4, 2), 1);
    let inputs = c.inputs();
    let mut scratch = RowScratch::default();
    let mut out = vec![0f32; 2 * 48];
    let across_groups = RowItem {
        token: 0,
        heads: 1..3,
    };
    assert!(attend_row(&inputs, &across_groups, &mut out, &mut scratch).is_err());
    let past_the_end = RowItem {
        token: 2,
        heads: 0..2,
    };
    assert!(attend_row(&inputs, &past_the_end, &mut out, &mut scratch).is_err());
    let ok = RowItem {
        token: 1,
        heads: 2..4,
    };
    assert!(attend_row(&inputs, &ok, &mut out[..48], &mut scratch).is_err());
    attend_row(&inputs, &ok, &mut out, &mut scratch).unwrap();
}

#[test]
fn the_best_form_is_one_this_cpu_runs() {
    assert!(RowKernel::best().runs());
    assert!(RowKernel::Portable.runs());
    assert_eq!(fast(), RowKernel::best() != RowKernel::Portable);
}
