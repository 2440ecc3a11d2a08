//! `rbench compare OLD.json NEW.json`: per test, old and new value, their
//! ratio, and whether the change is larger than the runs' own spread.

use super::saved::SavedResult;
use super::views::View;
use super::ReportError;
use serde::Serialize;

/// A value with its spread (sample sd of bench repetitions, ± of perplexity).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Measured {
    pub value: f64,
    pub spread: Option<f64>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CompareRow {
    pub test: String,
    /// What the value is: "t/s", "overall t/s", "ppl", "tokens".
    pub unit: String,
    pub old: Option<Measured>,
    pub new: Option<Measured>,
    /// new ÷ old.
    pub ratio: Option<f64>,
    /// |new − old| > old spread + new spread; `None` where no spread is known.
    pub beyond_spread: Option<bool>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Comparison {
    pub kind: &'static str,
    pub rows: Vec<CompareRow>,
    /// Differences in settings the rows do not show.
    pub notes: Vec<String>,
}

fn row(test: String, unit: &str, old: Option<Measured>, new: Option<Measured>) -> CompareRow {
    let (ratio, beyond) = match (old, new) {
        (Some(o), Some(n)) => {
            let ratio = (o.value != 0.0).then(|| n.value / o.value);
            let beyond = match (o.spread, n.spread) {
                (Some(a), Some(b)) => Some((n.value - o.value).abs() > a + b),
                _ => None,
            };
            (ratio, beyond)
        }
        _ => (None, None),
    };
    CompareRow {
        test,
        unit: unit.to_string(),
        old,
        new,
        ratio,
        beyond_spread: beyond,
    }
}

/// Pairs keyed values of both sides in order of first appearance.
fn paired(
    old: Vec<(String, Measured)>,
    new: Vec<(String, Measured)>,
    unit: &str,
) -> Vec<CompareRow> {
    let mut keys: Vec<String> = Vec::new();
    for (k, _) in old.iter().chain(&new) {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    let find =
        |side: &[(String, Measured)], k: &str| side.iter().find(|(o, _)| o == k).map(|(_, m)| *m);
    keys.into_iter()
        .map(|k| {
            let (o, n) = (find(&old, &k), find(&new, &k));
            row(k, unit, o, n)
        })
        .collect()
}

pub fn compare(old: &SavedResult, new: &SavedResult) -> Result<Comparison, ReportError> {
    if old.kind != new.kind {
        return Err(ReportError::Mismatch(format!(
            "cannot compare a {} result with a {} result: give two results of the same command",
            old.kind.name(),
            new.kind.name()
        )));
    }
    let measured = |value, spread| Measured { value, spread };
    let mut notes = Vec::new();
    let rows = match (View::of(old)?, View::of(new)?) {
        (View::Bench(o), View::Bench(n)) => {
            // Model names join the key only when a side has several models.
            let several = |rows: &[super::views::BenchEntry]| {
                rows.iter().any(|r| r.model_type != rows[0].model_type)
            };
            let with_model = several(&o) || several(&n);
            // Old at 2 threads vs new at 4 is still the same test, as before/after.
            let with_threads = !super::views::one_thread_count_each([&o[..], &n[..]]);
            if let (false, Some(a), Some(b)) = (with_threads, o.first(), n.first()) {
                if a.n_threads != b.n_threads {
                    notes.push(format!(
                        "old ran with {}, new with {}",
                        super::views::threads_label(a.n_threads),
                        super::views::threads_label(b.n_threads)
                    ));
                }
            }
            let side = |rows: Vec<super::views::BenchEntry>| {
                rows.into_iter()
                    .map(|r| {
                        let key = if with_model {
                            format!("{} · {}", r.model_label(), r.test_key(with_threads))
                        } else {
                            r.test_key(with_threads)
                        };
                        (key, measured(r.avg_ts, Some(r.stddev_ts)))
                    })
                    .collect()
            };
            paired(side(o), side(n), "t/s")
        }
        (View::Parallel(o), View::Parallel(n)) => {
            let side = |p: super::views::ParallelResult,
                        f: fn(&super::views::ParallelRun) -> f64,
                        what: &str| {
                p.runs
                    .iter()
                    .map(|r| {
                        (
                            format!("{} workers {what}", r.workers),
                            measured(f(r), None),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            let mut rows = paired(
                side(o.clone(), |r| r.overall_tps, "overall"),
                side(n.clone(), |r| r.overall_tps, "overall"),
                "t/s",
            );
            rows.extend(paired(
                side(o, |r| r.gen_tps, "generation"),
                side(n, |r| r.gen_tps, "generation"),
                "t/s",
            ));
            rows
        }
        (View::Analyze(o), View::Analyze(n)) => {
            let side = |a: &super::views::AnalyzeResult| {
                vec![
                    (
                        "prompt p50".to_string(),
                        measured(a.prompt_tokens.p50, None),
                    ),
                    (
                        "prompt p95".to_string(),
                        measured(a.prompt_tokens.p95, None),
                    ),
                    (
                        "output p50".to_string(),
                        measured(a.output_tokens.p50, None),
                    ),
                    (
                        "output p90".to_string(),
                        measured(a.output_tokens.p90, None),
                    ),
                    (
                        "n-prompt".to_string(),
                        measured(a.recommendation.n_prompt as f64, None),
                    ),
                    (
                        "n-predict".to_string(),
                        measured(a.recommendation.n_predict as f64, None),
                    ),
                ]
            };
            paired(side(&o), side(&n), "tokens")
        }
        (View::Perplexity(o), View::Perplexity(n)) => {
            let side = |p: &super::views::PerplexityResult| {
                vec![(
                    format!("ppl c{}", p.n_ctx),
                    measured(p.ppl, Some(p.ppl_error)),
                )]
            };
            paired(side(&o), side(&n), "ppl")
        }
        (View::Load(o), View::Load(n)) => {
            let side = |l: &super::views::LoadResult| {
                l.runs
                    .iter()
                    .map(|r| {
                        (
                            format!("{} output", r.key()),
                            measured(r.output_throughput, None),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            paired(side(&o), side(&n), "tok/s")
        }
        _ => return Err(ReportError::Mismatch("results of different kinds".into())),
    };
    Ok(Comparison {
        kind: old.kind.name(),
        rows,
        notes,
    })
}

impl Comparison {
    /// A Markdown table: test, old, new, ratio, beyond spread.
    pub fn markdown(&self) -> String {
        let cell = |m: Option<Measured>| match m {
            Some(Measured {
                value,
                spread: Some(s),
            }) => format!("{value:.2} ± {s:.2}"),
            Some(Measured {
                value,
                spread: None,
            }) => format!("{value:.2}"),
            None => "–".into(),
        };
        let rows = self.rows.iter().map(|r| {
            vec![
                r.test.clone(),
                r.unit.clone(),
                cell(r.old),
                cell(r.new),
                r.ratio
                    .map(|x| format!("{x:.3}×"))
                    .unwrap_or_else(|| "–".into()),
                match r.beyond_spread {
                    Some(true) => "yes".into(),
                    Some(false) => "no (within spread)".into(),
                    None if r.ratio.is_some() => "n/a (no spread)".into(),
                    None => "–".into(),
                },
            ]
        });
        crate::format::table(
            &["test", "unit", "old", "new", "new ÷ old", "beyond spread"],
            rows,
            |i| match i {
                2..5 => crate::format::Align::Right,
                _ => crate::format::Align::Left,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::saved::{BuildFacts, ResultKind};
    use super::*;
    use crate::system::Hardware;
    use serde_json::json;

    fn saved(kind: ResultKind, result: serde_json::Value) -> SavedResult {
        SavedResult {
            schema: 1,
            kind,
            command_line: vec![],
            created: String::new(),
            build: BuildFacts::current(),
            model: None,
            more_models: vec![],
            hardware: Hardware::detect(),
            result,
        }
    }

    #[test]
    fn bench_changes_are_judged_against_the_spread() {
        let old = saved(
            ResultKind::Bench,
            json!([
                {"model_type": "m", "n_prompt": 512, "n_threads": 2, "avg_ts": 100.0, "stddev_ts": 2.0},
                {"model_type": "m", "n_gen": 128, "n_threads": 2, "avg_ts": 50.0, "stddev_ts": 1.0},
                {"model_type": "m", "n_gen": 64, "n_threads": 2, "avg_ts": 51.0, "stddev_ts": 1.0}
            ]),
        );
        let new = saved(
            ResultKind::Bench,
            json!([
                {"model_type": "m", "n_prompt": 512, "n_threads": 2, "avg_ts": 103.0, "stddev_ts": 2.0},
                {"model_type": "m", "n_gen": 128, "n_threads": 2, "avg_ts": 60.0, "stddev_ts": 1.0}
            ]),
        );
        let c = compare(&old, &new).unwrap();
        assert_eq!(c.rows.len(), 3);
        assert_eq!(c.rows[0].test, "pp512");
        assert!(c.notes.is_empty());
        assert!((c.rows[0].ratio.unwrap() - 1.03).abs() < 1e-12);
        // 3 t/s apart with sd 2 + 2: inside the spread.
        assert_eq!(c.rows[0].beyond_spread, Some(false));
        // 10 t/s apart with sd 1 + 1: a real change.
        assert_eq!(c.rows[1].beyond_spread, Some(true));
        assert_eq!((c.rows[2].new, c.rows[2].ratio), (None, None));
        let md = c.markdown();
        assert!(
            md.contains("1.200×") && md.contains("yes") && md.contains("within spread"),
            "{md}"
        );
    }

    #[test]
    fn kinds_must_match_and_parallel_has_no_spread() {
        let b = saved(ResultKind::Bench, json!([]));
        let p = saved(
            ResultKind::Parallel,
            json!({"runs": [{"workers": 1, "overall_tps": 10.0, "gen_tps": 8.0}]}),
        );
        assert!(matches!(compare(&b, &p), Err(ReportError::Mismatch(_))));
        let mut q = p.clone();
        q.result = json!({"runs": [{"workers": 1, "overall_tps": 20.0, "gen_tps": 8.0}]});
        let c = compare(&p, &q).unwrap();
        assert_eq!(c.rows[0].ratio, Some(2.0));
        assert_eq!(c.rows[0].beyond_spread, None);
        assert_eq!(c.rows[1].test, "1 workers generation");
    }

    #[test]
    fn perplexity_uses_its_error_bars() {
        let a = saved(
            ResultKind::Perplexity,
            json!({"ppl": 16.4, "ppl_error": 0.8, "n_ctx": 256}),
        );
        let b = saved(
            ResultKind::Perplexity,
            json!({"ppl": 16.9, "ppl_error": 0.8, "n_ctx": 256}),
        );
        let c = compare(&a, &b).unwrap();
        assert_eq!(c.rows[0].beyond_spread, Some(false));
    }
}
