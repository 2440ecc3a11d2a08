//! The serving report's scenarios: fixed input/output shapes at fixed
//! concurrencies, shrunk by `--scale` for small models or machines and
//! capped to the server's context.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioName {
    /// Single-user latency: 2048 → 512 at concurrency 1.
    Latency,
    /// Short-context throughput: 512 → 256 at 16.
    Short,
    /// Long context: 16384 → 1024 at 4.
    LongContext,
    /// Decode stress: 128 → 2048 at 1.
    DecodeStress,
    /// Mixed traffic: 2048 → 512 ±50% at 8.
    Mixed,
    /// Concurrency sweep: 1024 → 256 at 2, 4, 8, 16, 32.
    Sweep,
    /// All of the above, in this order.
    All,
}

/// One scenario step: a shape at one concurrency.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Shape {
    pub scenario: &'static str,
    pub input_len: usize,
    pub output_len: usize,
    pub range_ratio: f64,
    pub concurrency: usize,
    /// Why the shape differs from the report's, if it does.
    pub note: Option<String>,
}

fn base(name: ScenarioName) -> Vec<(&'static str, usize, usize, f64, usize)> {
    match name {
        ScenarioName::Latency => vec![("latency", 2048, 512, 0.0, 1)],
        ScenarioName::Short => vec![("short", 512, 256, 0.0, 16)],
        ScenarioName::LongContext => vec![("long-context", 16384, 1024, 0.0, 4)],
        ScenarioName::DecodeStress => vec![("decode-stress", 128, 2048, 0.0, 1)],
        ScenarioName::Mixed => vec![("mixed", 2048, 512, 0.5, 8)],
        ScenarioName::Sweep => [2, 4, 8, 16, 32]
            .into_iter()
            .map(|c| ("sweep", 1024, 256, 0.0, c))
            .collect(),
        ScenarioName::All => [
            ScenarioName::Latency,
            ScenarioName::Short,
            ScenarioName::LongContext,
            ScenarioName::DecodeStress,
            ScenarioName::Mixed,
            ScenarioName::Sweep,
        ]
        .into_iter()
        .flat_map(base)
        .collect(),
    }
}

/// The steps of `name`, token counts times `scale`, each request's largest
/// prompt + output kept within `context` when the server told it.
pub fn shapes(
    name: ScenarioName,
    scale: f64,
    context: Option<usize>,
) -> Result<Vec<Shape>, String> {
    if !(scale > 0.0 && scale <= 1.0) {
        return Err(format!("--scale must be within (0, 1], got {scale}"));
    }
    Ok(base(name)
        .into_iter()
        .map(|(scenario, input, output, ratio, concurrency)| {
            let scaled = |n: usize| ((n as f64 * scale).round() as usize).max(1);
            let (mut i, mut o) = (scaled(input), scaled(output));
            let mut notes = Vec::new();
            if scale < 1.0 {
                notes.push(format!("scaled ×{scale} from {input} → {output}"));
            }
            if let Some(ctx) = context {
                // The longest request of a ±ratio shape must fit too.
                let longest = |n: usize| (n as f64 * (1.0 + ratio)).ceil() as usize;
                if longest(i) + longest(o) > ctx {
                    let f = ctx as f64 / (longest(i) + longest(o)) as f64;
                    i = ((i as f64 * f).floor() as usize).max(1);
                    o = ((o as f64 * f).floor() as usize).max(1);
                    notes.push(format!("capped to the server's context of {ctx}"));
                }
            }
            Shape {
                scenario,
                input_len: i,
                output_len: o,
                range_ratio: ratio,
                concurrency,
                note: (!notes.is_empty()).then(|| notes.join("; ")),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reports_shapes_scaled_and_capped() {
        let all = shapes(ScenarioName::All, 1.0, None).unwrap();
        assert_eq!(all.len(), 10);
        assert_eq!(
            (all[0].input_len, all[0].output_len, all[0].concurrency),
            (2048, 512, 1)
        );
        let sweep: Vec<usize> = all
            .iter()
            .filter(|s| s.scenario == "sweep")
            .map(|s| s.concurrency)
            .collect();
        assert_eq!(sweep, [2, 4, 8, 16, 32]);
        let small = shapes(ScenarioName::LongContext, 0.25, Some(2048)).unwrap();
        // 4096 + 256 > 2048: capped, both notes given.
        assert!(small[0].input_len + small[0].output_len <= 2048);
        assert!(small[0].note.as_deref().unwrap().contains("capped"));
        let mixed = shapes(ScenarioName::Mixed, 1.0, Some(4096)).unwrap();
        assert!((mixed[0].input_len + mixed[0].output_len) as f64 * 1.5 <= 4096.0 + 2.0);
        assert!(shapes(ScenarioName::Short, 0.0, None).is_err());
        assert!(shapes(ScenarioName::Short, 2.0, None).is_err());
    }
}
