use super::*;

fn logits(seed: u32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000)
        .map(|x| x as f32 / 100.0 - 5.0)
        .collect()
}

fn quantized(l: &[f32]) -> Vec<u16> {
    let mut row = vec![0; row_len(l.len())];
    quantize_row(l, &mut row);
    row
}

/// Exact KL(p ‖ q) in F64 over every token.
fn exact_kld(p_logits: &[f32], q_logits: &[f32]) -> f64 {
    let log_softmax = |l: &[f32]| {
        let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = l.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
        l.iter().map(move |&x| x as f64 - lse).collect::<Vec<f64>>()
    };
    let (p, q) = (log_softmax(p_logits), log_softmax(q_logits));
    p.iter().zip(&q).map(|(a, b)| a.exp() * (a - b)).sum()
}

#[test]
fn a_model_against_itself_diverges_by_rounding_only() {
    let l = logits(7, 1001);
    let c = compare_row(&l, &quantized(&l), 3);
    assert!(c.kld.abs() < 1e-5, "{c:?}");
    assert!(c.same_top);
    assert!((c.nll - c.nll_base).abs() < 1e-3, "{c:?}");
    assert!(c.p_diff.abs() < 1e-4, "{c:?}");
    assert_eq!(row_len(1001), 1006);
}

#[test]
fn divergence_matches_the_exact_value() {
    let base = logits(1, 500);
    let other: Vec<f32> = base
        .iter()
        .enumerate()
        .map(|(i, &x)| x + (i % 7) as f32 * 0.1)
        .collect();
    let c = compare_row(&other, &quantized(&base), 10);
    let exact = exact_kld(&base, &other);
    assert!(exact > 1e-3, "{exact}");
    // 16-bit log-probabilities and the 16-nat cut: a small relative error.
    assert!(
        (c.kld - exact).abs() < 0.01 * exact + 1e-5,
        "{} vs {exact}",
        c.kld
    );
}

#[test]
fn files_round_trip_and_bad_files_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("base.kld");
    let (n_ctx, n_vocab, n_chunk) = (16, 37, 2);
    let tokens: Vec<u32> = (0..40).map(|i| i % 37).collect();
    let mut w = BaseWriter::create(&path, n_ctx, n_vocab, n_chunk, &tokens).unwrap();
    let rows: Vec<Vec<f32>> = (0..n_chunk * rows_per_chunk(n_ctx))
        .map(|i| logits(i as u32, n_vocab))
        .collect();
    for r in &rows {
        w.write_row(r).unwrap();
    }
    w.finish().unwrap();
    let mut r = BaseReader::open(&path).unwrap();
    assert_eq!((r.n_ctx, r.n_vocab, r.n_chunk), (n_ctx, n_vocab, n_chunk));
    assert_eq!(r.tokens, &tokens[..32]);
    let mut stats = KldStats::default();
    for chunk in 0..n_chunk {
        let base = r.next_chunk(chunk).unwrap();
        for (i, b) in base.chunks_exact(row_len(n_vocab)).enumerate() {
            let own = &rows[chunk * rows_per_chunk(n_ctx) + i];
            assert_eq!(b, quantized(own));
            stats.add(&compare_row(own, b, 1));
        }
    }
    assert!(matches!(r.next_chunk(2), Err(KldError::Truncated { .. })));
    let s = stats.summary();
    assert_eq!(s.tokens, 2 * 7);
    assert_eq!(s.same_top.value, 1.0);
    assert!(s.kld_mean.value.abs() < 1e-5);
    let text = s.lines().join("\n");
    for needle in [
        "Mean    KLD:",
        "Median  KLD:",
        "99.9%   KLD:",
        "Same top p: 100.000",
        "RMS Δp",
    ] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }

    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a logits file at all").unwrap();
    assert!(matches!(
        BaseReader::open(&junk),
        Err(KldError::NotLogits(_))
    ));
    let short = dir.path().join("short");
    std::fs::write(&short, &std::fs::read(&path).unwrap()[..30]).unwrap();
    assert!(matches!(
        BaseReader::open(&short),
        Err(KldError::Truncated { .. })
    ));
    assert!(matches!(
        BaseReader::open(&dir.path().join("none")),
        Err(KldError::Io { .. })
    ));
}
