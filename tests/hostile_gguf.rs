//! Hostile GGUF bytes: tens of thousands of seeded mutations and truncations
//! of the real test model's header and of synthetic models. The reader must
//! refuse them or accept a self-consistent file; never panic, and never make
//! one allocation far larger than the input justifies.
//!
//! The same compact files seed the AFL++ fuzz target (`scripts/fuzz.sh` runs
//! `fuzz_seeds_are_small_valid_models` with RBENCH_FUZZ_SEEDS set).

mod common;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rbench::gguf::{GgufFile, GgufWriter, TensorSource, Value};
use rbench::model::synth::{self, Preset, SynthFtype};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Records the largest single allocation made on the current thread since
/// the last reset, so each parse can be checked against its input size.
struct Tracking;

thread_local! {
    static LARGEST_ALLOC: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    // try_with: allocations during thread teardown must not fail.
    let _ = LARGEST_ALLOC.try_with(|m| m.set(m.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// thread-local bookkeeping never allocates (const-initialised Cell).
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc(new_size);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Items kept of each metadata array in a compact file (vocabularies shrink).
const COMPACT_ARRAY_ITEMS: usize = 48;
const SEED: u64 = 0x686f_7374_696c_6521;

/// `value` with every array cut to `max_items`.
fn shorten(value: &Value, max_items: usize) -> Value {
    match value {
        Value::Array { elem, items } => Value::Array {
            elem: *elem,
            items: items
                .iter()
                .take(max_items)
                .map(|v| shorten(v, max_items))
                .collect(),
        },
        other => other.clone(),
    }
}

/// The same metadata (arrays shortened) and the same tensor table (names,
/// types, number of dims) of `f`, with every tensor shrunk to one block of
/// its real first bytes: a small valid file shaped like the original.
fn compact(f: &GgufFile, max_tensors: usize) -> Vec<u8> {
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        w.add_kv(k.clone(), shorten(v, COMPACT_ARRAY_ITEMS));
    }
    for t in f.tensors().iter().take(max_tensors) {
        let mut dims = vec![1u64; t.dims.len()];
        dims[0] = t.ggml_type.block_size() as u64;
        let n_bytes = t.ggml_type.bytes_for(dims[0]).unwrap() as usize;
        let data = f.tensor_data(t)[..n_bytes].to_vec();
        w.add_tensor(
            t.name.clone(),
            &dims,
            t.ggml_type,
            TensorSource::Bytes(data),
        )
        .unwrap();
    }
    w.to_bytes().unwrap()
}

/// A preset cut down to a few layers and a small vocabulary, so its file is
/// written in milliseconds but keeps the architecture's full tensor layout.
fn tiny(name: &str) -> Preset {
    let p = synth::preset(name).unwrap();
    Preset {
        n_layer: 2,
        n_vocab: 512,
        n_ff: 256,
        ..*p
    }
}

struct Base {
    name: String,
    bytes: Vec<u8>,
    /// Whether the unmutated bytes are a valid file (a bare header is not).
    valid: bool,
    cases: usize,
}

fn synthetic_bases(dir: &Path) -> Vec<Base> {
    [
        ("llama-15m", SynthFtype::Q4KM),
        ("qwen3-0.6b", SynthFtype::Q8_0),
        ("gemma3-270m", SynthFtype::F16),
        ("qwen2-1.5b", SynthFtype::Q4KM),
        ("mixtral-tiny", SynthFtype::Q4KM),
    ]
    .into_iter()
    .map(|(name, ftype)| {
        let path = dir.join(format!("{name}.gguf"));
        synth::write_synthetic(&tiny(name), ftype, 7, &path).unwrap();
        let f = GgufFile::open(&path).unwrap();
        Base {
            name: format!("synth {name} {}", ftype.name()),
            bytes: compact(&f, usize::MAX),
            valid: true,
            cases: 6_000,
        }
    })
    .collect()
}

/// The real model compacted, and its real header verbatim (tensor data cut
/// off, so always refused, but with the full 262k-token vocabulary).
fn real_bases(path: &Path) -> Vec<Base> {
    let f = GgufFile::open(path).unwrap();
    let header = f.bytes()[..f.data_offset() as usize].to_vec();
    vec![
        Base {
            name: "gemma-3-270m compact".into(),
            bytes: compact(&f, usize::MAX),
            valid: true,
            cases: 10_000,
        },
        Base {
            name: "gemma-3-270m first 12 tensors".into(),
            bytes: compact(&f, 12),
            valid: true,
            cases: 3_000,
        },
        Base {
            name: "gemma-3-270m real header".into(),
            bytes: header,
            valid: false,
            cases: 150,
        },
    ]
}

const INTERESTING: [u64; 18] = [
    0,
    1,
    2,
    3,
    4,
    8,
    12,
    13,
    31,
    32,
    63,
    64,
    255,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    i64::MAX as u64,
    u64::MAX,
];

/// One seeded mutation of `bytes` (1 to 4 stacked edits, or a cut); returns
/// a description for failure messages.
fn mutate(rng: &mut Xoshiro256PlusPlus, bytes: &mut Vec<u8>, donor: &[u8]) -> String {
    let mut done = Vec::new();
    for _ in 0..rng.gen_range(1..=4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.gen_range(0..bytes.len());
        match rng.gen_range(0..9) {
            0 => {
                let v: u8 = rng.gen();
                bytes[at] = v;
                done.push(format!("byte {at}={v:#04x}"));
            }
            1 => {
                let bit = rng.gen_range(0..8);
                bytes[at] ^= 1 << bit;
                done.push(format!("flip {at}.{bit}"));
            }
            2 | 3 => {
                let mut v = INTERESTING[rng.gen_range(0..INTERESTING.len())];
                if rng.gen_bool(0.2) {
                    v = bytes.len() as u64 - rng.gen_range(0..2);
                }
                let width = if rng.gen_bool(0.5) { 4 } else { 8 };
                let le = v.to_le_bytes();
                let end = (at + width).min(bytes.len());
                bytes[at..end].copy_from_slice(&le[..end - at]);
                done.push(format!("u{} {at}={v:#x}", width * 8));
            }
            4 => {
                bytes.truncate(at);
                done.push(format!("cut {at}"));
            }
            5 => {
                let end = (at + rng.gen_range(1..64)).min(bytes.len());
                bytes.drain(at..end);
                done.push(format!("delete {at}..{end}"));
            }
            6 => {
                let n = rng.gen_range(1..16);
                let new: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                bytes.splice(at..at, new);
                done.push(format!("insert {n} at {at}"));
            }
            7 => {
                let from = rng.gen_range(0..bytes.len());
                let n = rng.gen_range(1..256).min(bytes.len() - from.max(at));
                let chunk = bytes[from..from + n].to_vec();
                bytes[at..at + n].copy_from_slice(&chunk);
                done.push(format!("copy {from}+{n} to {at}"));
            }
            _ => {
                let from = rng.gen_range(0..donor.len());
                bytes.truncate(at);
                bytes.extend_from_slice(&donor[from..]);
                done.push(format!("splice donor[{from}..] at {at}"));
            }
        }
    }
    done.join(", ")
}

/// Parses `bytes`, checking what is accepted and how much one allocation
/// took. Err(message) on any violation, including a panic.
fn check_one(bytes: Vec<u8>) -> Result<bool, String> {
    let len = bytes.len();
    LARGEST_ALLOC.with(|m| m.set(0));
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        // The input itself was allocated before the reset; the reader's own
        // copies are counted.
        match GgufFile::from_bytes(bytes) {
            Ok(f) => {
                for t in f.tensors() {
                    if f.tensor_data(t).len() as u64 != t.n_bytes {
                        return Err(format!("tensor '{}' data is short", t.name));
                    }
                }
                Ok(true)
            }
            Err(e) if e.to_string().is_empty() => Err("empty error message".into()),
            Err(_) => Ok(false),
        }
    }))
    .unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("panicked: {msg}"))
    });
    // Parsed values (a Vec<Value> holds ~32 bytes per 1-byte array item)
    // are bounded by the file size; anything beyond a few dozen times the
    // input is a length field trusted too early.
    let largest = LARGEST_ALLOC.with(Cell::get);
    let limit = 64 * len + (1 << 20);
    if largest > limit {
        return Err(format!(
            "one allocation of {largest} bytes for a {len}-byte input"
        ));
    }
    outcome
}

fn run_bases(bases: &[Base]) -> usize {
    let mut total = 0;
    let mut failures = Vec::new();
    for (bi, base) in bases.iter().enumerate() {
        assert_eq!(
            check_one(base.bytes.clone()),
            Ok(base.valid),
            "{} unmutated",
            base.name
        );
        let donor = &bases[(bi + 1) % bases.len()].bytes;
        let (mut accepted, mut refused) = (0, 0);
        for case in 0..base.cases {
            let seed = SEED ^ ((bi as u64) << 32) ^ case as u64;
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let mut bytes = base.bytes.clone();
            let how = mutate(&mut rng, &mut bytes, donor);
            match check_one(bytes) {
                Ok(true) => accepted += 1,
                Ok(false) => refused += 1,
                Err(e) => failures.push(format!(
                    "{} case {case} (seed {seed:#x}: {how}): {e}",
                    base.name
                )),
            }
        }
        // Every cut of the first bytes, where the counts and first keys are.
        for cut in 0..base.bytes.len().min(512) {
            if let Err(e) = check_one(base.bytes[..cut].to_vec()) {
                failures.push(format!("{} cut at {cut}: {e}", base.name));
            }
        }
        eprintln!(
            "{}: {} bytes, {} mutations: {accepted} accepted, {refused} refused",
            base.name,
            base.bytes.len(),
            base.cases
        );
        if base.valid {
            assert!(refused > base.cases / 4, "{}: too few refused", base.name);
        }
        total += base.cases + base.bytes.len().min(512);
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    total
}

#[test]
fn mutated_synthetic_headers_are_refused_or_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let n = run_bases(&synthetic_bases(dir.path()));
    eprintln!("{n} cases in {:.1} s", start.elapsed().as_secs_f64());
    assert!(n >= 20_000);
}

#[test]
fn mutated_real_model_headers_are_refused_or_consistent() {
    let Some(path) = common::test_model("mutated_real_model_headers") else {
        return;
    };
    let start = std::time::Instant::now();
    let n = run_bases(&real_bases(&path));
    eprintln!("{n} cases in {:.1} s", start.elapsed().as_secs_f64());
    assert!(n >= 13_000);
}

#[test]
fn an_allocation_larger_than_the_input_is_caught() {
    // The tracker itself must work, or the bound above proves nothing.
    LARGEST_ALLOC.with(|m| m.set(0));
    let v: Vec<u8> = Vec::with_capacity(5 << 20);
    assert!(LARGEST_ALLOC.with(Cell::get) >= 5 << 20);
    drop(v);
}

/// Small valid models for the fuzzer's seed corpus; written to the folder in
/// RBENCH_FUZZ_SEEDS when it is set (scripts/fuzz.sh does).
#[test]
fn fuzz_seeds_are_small_valid_models() {
    let dir = tempfile::tempdir().unwrap();
    let mut bases = synthetic_bases(dir.path());
    if let Some(path) = common::test_model("fuzz seeds of the real model") {
        bases.extend(real_bases(&path).into_iter().filter(|b| b.valid));
    }
    for b in &bases {
        // AFL++ refuses seeds over 1 MB; small ones fuzz faster.
        assert!(b.bytes.len() < 256 << 10, "{}: {}", b.name, b.bytes.len());
        GgufFile::from_bytes(b.bytes.clone()).unwrap();
    }
    if let Some(out) = std::env::var_os("RBENCH_FUZZ_SEEDS") {
        let out = Path::new(&out);
        std::fs::create_dir_all(out).unwrap();
        for b in &bases {
            let file = b.name.replace(' ', "-") + ".gguf";
            std::fs::write(out.join(file), &b.bytes).unwrap();
        }
    }
}
