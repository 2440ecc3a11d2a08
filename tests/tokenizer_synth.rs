//! The vocabulary `rbench synth` writes: `<unk>`, `<s>`, `</s>`, 256 byte tokens, printable
//! ASCII (space as '▁') scored by frequency order, then `<unused_N>` filler.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rbench::tokenizer::{TokenKind, Tokenizer, VocabSpec};

const N_VOCAB: usize = 150_000;

fn synth_spec() -> VocabSpec {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut token_types = vec![2, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        token_types.push(6);
    }
    for c in ' '..='~' {
        tokens.push(if c == ' ' {
            "▁".to_string()
        } else {
            c.to_string()
        });
        token_types.push(1);
    }
    let mut n = 0;
    while tokens.len() < N_VOCAB {
        tokens.push(format!("<unused_{n}>"));
        token_types.push(5);
        n += 1;
    }
    let scores = (0..tokens.len()).map(|i| -(i as f32)).collect();
    VocabSpec {
        model: "llama".into(),
        tokens,
        scores,
        token_types,
        bos_id: Some(1),
        eos_id: Some(2),
        unk_id: Some(0),
        add_bos: true,
        add_space_prefix: false,
        ..VocabSpec::default()
    }
}

/// Random text from ASCII, Latin-1, CJK, emoji and control characters. '▁' and the
/// special-token texts are left out: they are tokens of their own, not plain text.
fn random_text(rng: &mut StdRng) -> String {
    let pools: [&[char]; 5] = [
        &['a', 'Z', ' ', '0', '~', '<', '>', '/', '_'],
        &['é', 'ß', 'Ü', '¿'],
        &['中', '文', '日', '本', '語'],
        &['🦀', '🚀', '👍'],
        &['\n', '\t', '\r', '\0'],
    ];
    let len = rng.gen_range(0..40);
    (0..len)
        .map(|_| {
            let pool = pools[rng.gen_range(0..pools.len())];
            pool[rng.gen_range(0..pool.len())]
        })
        .collect()
}

#[test]
fn synth_vocab_round_trips_any_text() {
    let tok = Tokenizer::from_spec(synth_spec()).unwrap();
    assert_eq!(tok.n_vocab(), N_VOCAB);
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..500 {
        let text = random_text(&mut rng);
        let ids = tok.encode(&text, true).unwrap();
        assert_eq!(ids.first(), Some(&1));
        for &id in &ids {
            assert_ne!(
                tok.token_kind(id),
                Some(TokenKind::Unused),
                "{text:?} gave unused {id}"
            );
        }
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}

#[test]
fn synth_vocab_maps_ascii_to_char_tokens() {
    let tok = Tokenizer::from_spec(synth_spec()).unwrap();
    // Printable ASCII starts after 3 specials and 256 bytes: ' ' (as '▁') is 259, 'a' is 259 + 65.
    assert_eq!(tok.encode("a a", false).unwrap(), vec![324, 259, 324]);
    // Non-printable and non-ASCII characters become their UTF-8 bytes.
    assert_eq!(
        tok.encode("\né", false).unwrap(),
        vec![3 + 0x0A, 3 + 0xC3, 3 + 0xA9]
    );
    // Filler texts are not special: they are spelled out character by character.
    let ids = tok.encode("<unused_5>", false).unwrap();
    assert_eq!(ids.len(), "<unused_5>".len());
    assert_eq!(tok.decode(&ids).unwrap(), "<unused_5>");
}

#[test]
fn synth_vocab_builds_quickly() {
    let spec = synth_spec();
    let start = std::time::Instant::now();
    let tok = Tokenizer::from_spec(spec).unwrap();
    let elapsed = start.elapsed();
    eprintln!("synth tokenizer ({N_VOCAB} tokens) built in {elapsed:?}");
    assert!(tok.n_vocab() == N_VOCAB);
    // Generous bound for a shared 2-core machine; typical is a small fraction of this.
    assert!(elapsed.as_secs_f64() < 2.0, "took {elapsed:?}");
}
