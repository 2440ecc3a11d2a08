//! What `rbench load`'s client sustains on this machine against a stub
//! server that answers at once (`rbench::load::stub`): requests per second
//! with one-token answers, and streams held open together:
//! `cargo bench --bench load_client`. The client must not be what limits a
//! serving benchmark.

use rbench::load;
use rbench::load::stub::{self, Stub};
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let rt = stub::runtime().expect("stub runtime");
    let quick = Arc::new(Stub::new(1, Duration::ZERO, 0));
    let base = stub::start(&rt, Arc::clone(&quick)).expect("stub");
    for concurrency in [16, 64, 256] {
        let mut best = 0.0f64;
        for _ in 0..3 {
            let run = load::run(
                &stub::load_config(&base, 10_000, 1, Some(concurrency)),
                Arc::new(false.into()),
            )
            .expect("run");
            assert_eq!(run.summary.failed, 0, "{:?}", run.summary.errors);
            best = best.max(run.summary.request_throughput);
        }
        println!("one-token answers, concurrency {concurrency:>3}: {best:>7.0} requests/s (best of 3 × 10,000)");
    }
    // Every request went over HTTP to the stub.
    assert_eq!(quick.seen(), 3 * 3 * 10_000);
    let held = Arc::new(Stub::new(8, Duration::from_secs(2), 0));
    let base = stub::start(&rt, Arc::clone(&held)).expect("stub");
    let run = load::run(
        &stub::load_config(&base, 1000, 8, None),
        Arc::new(false.into()),
    )
    .expect("run");
    assert_eq!(run.summary.failed, 0, "{:?}", run.summary.errors);
    println!(
        "streams open at once: {} of {} (each held 2 s), all complete in {:.2} s; TTFT p99 {:.1} ms",
        held.most_open(),
        run.summary.completed,
        run.summary.duration,
        run.summary.ttft.percentiles[1].1
    );
}
