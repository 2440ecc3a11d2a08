//! `--plot FILE.svg`: both length distributions as histograms on a log2 axis, with the
//! recommended cut-offs marked. Plain SVG text, no drawing library needed.

use std::fmt::Write as _;

use super::report::AnalysisReport;
use crate::bench::stats::Tally;

const WIDTH: f64 = 900.0;
const PANEL_HEIGHT: f64 = 340.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
/// Room above each plot for its title and one legend line per marker.
const TOP: f64 = 84.0;
const BOTTOM: f64 = 50.0;
/// Histogram bins per doubling of length.
const BINS_PER_OCTAVE: f64 = 4.0;

/// A vertical line at a cut-off.
struct Marker {
    at: u64,
    label: String,
    color: &'static str,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn log2(v: u64) -> f64 {
    (v.max(1) as f64).log2()
}

/// One panel: histogram of `t` with markers, its top edge at `y0`.
fn panel(svg: &mut String, y0: f64, title: &str, t: &Tally, markers: &[Marker]) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = PANEL_HEIGHT - TOP - BOTTOM;
    let (base_y, top_y) = (y0 + TOP + plot_h, y0 + TOP);
    let highest = markers
        .iter()
        .map(|m| m.at)
        .chain(t.max())
        .max()
        .unwrap_or(1);
    let lo = log2(t.min().unwrap_or(1)).floor();
    let hi = (log2(highest) + 0.25).ceil().max(lo + 1.0);
    let x_of = |l: f64| LEFT + (l - lo) / (hi - lo) * plot_w;

    let n_bins = ((hi - lo) * BINS_PER_OCTAVE).ceil().max(1.0) as usize;
    let mut bins = vec![0u64; n_bins];
    for (v, c) in t.iter() {
        let i = ((log2(v) - lo) * BINS_PER_OCTAVE).floor().max(0.0) as usize;
        if let Some(slot) = bins.get_mut(i.min(n_bins - 1)) {
            *slot += c;
        }
    }
    let peak = bins.iter().copied().max().unwrap_or(0).max(1) as f64;

    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="16" font-weight="bold">{}</text>"#,
        LEFT,
        y0 + 24.0,
        escape(title)
    );
    for (i, &count) in bins.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let l0 = lo + i as f64 / BINS_PER_OCTAVE;
        let (x0, x1) = (x_of(l0), x_of(l0 + 1.0 / BINS_PER_OCTAVE));
        let h = count as f64 / peak * plot_h;
        let _ = writeln!(
            svg,
            r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#4e79a7"><title>{count}</title></rect>"##,
            base_y - h,
            (x1 - x0 - 1.0).max(0.5)
        );
    }
    // Axes and power-of-two ticks.
    let _ = writeln!(
        svg,
        r#"<line x1="{LEFT}" y1="{base_y}" x2="{}" y2="{base_y}" stroke="black"/>"#,
        WIDTH - RIGHT
    );
    let _ = writeln!(
        svg,
        r#"<line x1="{LEFT}" y1="{top_y}" x2="{LEFT}" y2="{base_y}" stroke="black"/>"#
    );
    let mut e = lo as i64;
    while e as f64 <= hi {
        let x = x_of(e as f64);
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{base_y}" x2="{x:.1}" y2="{}" stroke="black"/><text x="{x:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
            base_y + 5.0,
            base_y + 18.0,
            1u64 << e.clamp(0, 63)
        );
        e += 1;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">tokens (log scale)</text>"#,
        LEFT + plot_w / 2.0,
        base_y + 38.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text><text x="{}" y="{}" font-size="11" text-anchor="end">0</text>"#,
        LEFT - 6.0,
        top_y + 4.0,
        peak as u64,
        LEFT - 6.0,
        base_y
    );
    for (k, m) in markers.iter().enumerate() {
        let x = x_of(log2(m.at));
        let legend_y = y0 + 44.0 + 15.0 * k as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{top_y}" x2="{x:.1}" y2="{base_y}" stroke="{c}" stroke-width="2" stroke-dasharray="6,4"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="{c}">{}</text>"#,
            top_y - 3.0,
            m.at,
            c = m.color,
        );
        let _ = writeln!(
            svg,
            r#"<line x1="{LEFT}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="{c}" stroke-width="2" stroke-dasharray="6,4"/><text x="{}" y="{legend_y:.1}" font-size="12" fill="{c}">{}</text>"#,
            legend_y - 4.0,
            LEFT + 24.0,
            legend_y - 4.0,
            LEFT + 30.0,
            escape(&m.label),
            c = m.color,
        );
    }
}

/// The SVG document for a report and its length tallies.
pub fn svg(report: &AnalysisReport, prompt: &Tally, output: &Tally) -> String {
    let unit = if report.estimate {
        " (estimated tokens)"
    } else {
        ""
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{}" font-family="sans-serif">"#,
        2.0 * PANEL_HEIGHT
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let name = std::path::Path::new(&report.input)
        .file_name()
        .map_or(report.input.clone(), |n| n.to_string_lossy().into_owned());
    let r = &report.recommendation;
    let prompt_marks = [Marker {
        at: r.n_prompt,
        label: format!(
            "n-prompt {}: {:.1}% of prompts (p95 = {})",
            r.n_prompt,
            100.0 * r.prompt_coverage,
            report.prompt_tokens.p95
        ),
        color: "#e15759",
    }];
    let colors = ["#f28e2b", "#e15759", "#76b7b2"];
    let output_marks: Vec<Marker> = report
        .tiers
        .iter()
        .zip(colors.iter().cycle())
        .map(|(t, &color)| Marker {
            at: t.n_predict,
            label: format!(
                "{} n-predict {}: {:.1}% of outputs (p{} = {})",
                t.name,
                t.n_predict,
                100.0 * t.coverage,
                t.target_percentile,
                t.percentile_tokens
            ),
            color,
        })
        .collect();
    panel(
        &mut s,
        0.0,
        &format!("Prompt lengths{unit}: {} records of {name}", prompt.len()),
        prompt,
        &prompt_marks,
    );
    panel(
        &mut s,
        PANEL_HEIGHT,
        &format!("Output lengths{unit}: {} records", output.len()),
        output,
        &output_marks,
    );
    s += "</svg>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::input::Layout;
    use crate::analyze::pipeline::Analysis;
    use crate::analyze::{Shape, SkipCounts};

    #[test]
    fn svg_has_bars_markers_and_escaped_text() {
        let mut prompt = Tally::new();
        let mut output = Tally::new();
        for i in 1..=500u64 {
            prompt.add(10 + i % 90);
            output.add(i);
        }
        let analysis = Analysis {
            layout: Layout::Jsonl,
            gzip: false,
            shape: Shape::QuestionAnswer,
            records: 500,
            empty_outputs: 0,
            skipped: SkipCounts::default(),
            problems: Vec::new(),
            prompt: prompt.clone(),
            output: output.clone(),
            interrupted: false,
        };
        let report = AnalysisReport::new(&analysis, "dir/a<b>&c.jsonl", None, "n/a", 0.0).unwrap();
        let svg = svg(&report, &prompt, &output);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a&lt;b&gt;&amp;c.jsonl") && !svg.contains("a<b>"));
        // One dashed line on the plot and one in the legend per marker: n-prompt and 3 tiers.
        // p95 of 10 + i % 90 (i = 1..=500): the 25 values above 94 are residues 85..=89.
        assert_eq!(svg.matches("stroke-dasharray").count(), 8);
        assert!(
            svg.contains("n-prompt 128: 100.0% of prompts (p95 = 94)"),
            "{svg}"
        );
        assert!(svg.contains("Recommended n-predict 512: "));
        assert!(svg.contains("(estimated tokens)"));
        // Every bar has a positive height and stays inside the picture.
        for rect in svg.split("<rect x=").skip(1) {
            let height: f64 = rect
                .split("height=\"")
                .nth(1)
                .and_then(|h| h.split('"').next())
                .unwrap()
                .parse()
                .unwrap();
            assert!(height > 0.0 && height <= PANEL_HEIGHT);
        }
    }
}
