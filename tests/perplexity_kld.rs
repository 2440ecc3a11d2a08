//! `perplexity --kl-divergence-base` / `--kl-divergence`: a base written by
//! one run, compared by another, in llama-perplexity's file format.

mod common;

use common::rbench;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_base_compared_with_its_own_engine_diverges_by_rounding_only() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    let words = "the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches ";
    std::fs::write(&text, words.repeat(40)).unwrap();
    let base = dir.path().join("base.kld");
    let (t, b) = (text.to_str().unwrap(), base.to_str().unwrap());
    let write = rbench(&[
        "perplexity",
        "-m",
        "synth:llama-15m",
        "-f",
        t,
        "-c",
        "64",
        "--chunks",
        "3",
        "-t",
        "2",
        "--kl-divergence-base",
        b,
    ]);
    assert!(write.status.success(), "{}", stderr(&write));
    let bytes = std::fs::read(&base).unwrap();
    assert_eq!(&bytes[..8], b"_logits_");
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 64);
    assert_eq!(i32::from_le_bytes(bytes[16..20].try_into().unwrap()), 3);

    let compare = rbench(&[
        "perplexity",
        "-m",
        "synth:llama-15m",
        "--kl-divergence-base",
        b,
        "--kl-divergence",
        "-t",
        "2",
        "--json",
    ]);
    assert!(compare.status.success(), "{}", stderr(&compare));
    let v: serde_json::Value = serde_json::from_slice(&compare.stdout).unwrap();
    // 3 chunks × 31 scored positions.
    assert_eq!(v["tokens"], 93);
    assert!(v["kld_mean"]["value"].as_f64().unwrap() < 1e-4, "{v}");
    assert_eq!(v["same_top"]["value"], 1.0);
    let ratio = v["ppl_ratio"]["value"].as_f64().unwrap();
    assert!((ratio - 1.0).abs() < 1e-3, "{ratio}");

    // Text output: llama-perplexity's sections.
    let text_out = rbench(&[
        "perplexity",
        "-m",
        "synth:llama-15m",
        "--kl-divergence-base",
        b,
        "--kl-divergence",
        "-t",
        "2",
        "--chunks",
        "1",
    ]);
    assert!(text_out.status.success(), "{}", stderr(&text_out));
    let out = String::from_utf8_lossy(&text_out.stdout);
    for needle in [
        "====== KL divergence statistics ======",
        "Mean    KLD:",
        "Same top p:",
    ] {
        assert!(out.contains(needle), "{needle:?} in\n{out}");
    }

    // A base from another vocabulary, a wrong -c and a file that is no base.
    let other = rbench(&[
        "perplexity",
        "-m",
        "synth:qwen3-0.6b",
        "--kl-divergence-base",
        b,
        "--kl-divergence",
    ]);
    assert_eq!(other.status.code(), Some(1), "{}", stderr(&other));
    assert!(stderr(&other).contains("vocabulary"), "{}", stderr(&other));
    let wrong_c = rbench(&[
        "perplexity",
        "-m",
        "synth:llama-15m",
        "--kl-divergence-base",
        b,
        "--kl-divergence",
        "-c",
        "128",
    ]);
    assert_eq!(wrong_c.status.code(), Some(2), "{}", stderr(&wrong_c));
    let junk = rbench(&[
        "perplexity",
        "-m",
        "synth:llama-15m",
        "--kl-divergence-base",
        t,
        "--kl-divergence",
    ]);
    assert_eq!(junk.status.code(), Some(1), "{}", stderr(&junk));
    assert!(
        stderr(&junk).contains("not a log-probability file"),
        "{}",
        stderr(&junk)
    );
    let both = rbench(&[
        "perplexity",
        "-m",
        "synth:llama-15m",
        "-f",
        t,
        "--kl-divergence",
    ]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
}
