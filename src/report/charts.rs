//! SVG charts (plotters' SVG backend): lines over worker counts, grouped
//! bars per test, and dataset length distributions. Each returns the SVG text;
//! the caller decides where it goes.

use super::views::LengthStats;
use super::ReportError;
use plotters::coord::Shift;
use plotters::prelude::*;

const SIZE: (u32, u32) = (800, 440);
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// One panel of [`length_histograms`]: title, statistics, cut-offs (tokens, label).
pub type LengthPanel<'a> = (&'a str, &'a LengthStats, Vec<(u64, String)>);

/// A named line or bar series.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

fn chart_error(name: &str) -> impl Fn(String) -> ReportError + '_ {
    move |message| ReportError::Chart {
        name: name.to_string(),
        message,
    }
}

/// Runs `draw` on an SVG canvas and returns the SVG text.
fn svg(
    name: &str,
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), String>,
) -> Result<String, ReportError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .map_err(chart_error(name))?;
        draw(&root).map_err(chart_error(name))?;
        root.present()
            .map_err(|e| e.to_string())
            .map_err(chart_error(name))?;
    }
    Ok(out)
}

fn upper(values: impl Iterator<Item = f64>) -> f64 {
    let m = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    if m > 0.0 {
        m * 1.15
    } else {
        1.0
    }
}

/// Lines with point markers over a numeric x (e.g. workers), with an
/// optional dashed horizontal reference line.
pub fn line_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    reference: Option<(f64, &str)>,
) -> Result<String, ReportError> {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let x_max = xs.clone().fold(1.0, f64::max);
    let x_min = xs.fold(x_max, f64::min).min(1.0);
    let y_max = upper(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(reference.map(|r| r.0)),
    );
    svg(title, |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let pad = ((x_max - x_min) * 0.05).max(0.25);
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d((x_min - pad)..(x_max + pad), 0.0..y_max)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|x| format_tick(*x))
            .y_label_formatter(&|y| format_tick(*y))
            .draw()
            .map_err(|x| e(&x))?;
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(s.points.clone(), c.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(|x| e(&x))?;
        }
        if let Some((y, label)) = reference {
            let grey = RGBColor(120, 120, 120);
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x_min - pad, y), (x_max + pad, y)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(|x| e(&x))?
                .label(label.to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(&x))?;
        Ok(())
    })
}

/// Grouped bars: one group per category, one bar per series (`values[s][c]`).
pub fn bar_chart(
    title: &str,
    y_desc: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
) -> Result<String, ReportError> {
    let n = categories.len().max(1);
    let y_max = upper(series.iter().flat_map(|s| s.1.iter().copied()));
    svg(title, |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..y_max)
            .map_err(|x| e(&x))?;
        // Ticks land on whole numbers (the category centres) when at most n + 1 are asked for.
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                categories.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&label)
            .y_desc(y_desc)
            .y_label_formatter(&|y| format_tick(*y))
            .draw()
            .map_err(|x| e(&x))?;
        let k = series.len().max(1) as f64;
        let width = 0.8 / k;
        for (s, (name, values)) in series.iter().enumerate() {
            let c = color(s);
            let x0 = |i: usize| i as f64 - 0.4 + s as f64 * width;
            chart
                .draw_series(values.iter().enumerate().map(|(i, &v)| {
                    Rectangle::new([(x0(i), 0.0), (x0(i) + width * 0.92, v)], c.filled())
                }))
                .map_err(|x| e(&x))?
                .label(name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(&x))?;
        Ok(())
    })
}

/// Bins between consecutive percentiles: (from, to, share of records).
pub fn quantile_bins(stats: &LengthStats) -> Vec<(f64, f64, f64)> {
    stats
        .quantiles()
        .windows(2)
        .filter_map(|w| {
            let ((q0, x0), (q1, x1)) = (w[0], w[1]);
            (x1 > x0).then_some((x0, x1, q1 - q0))
        })
        .collect()
}

/// Prompt and output length distributions, one panel each, drawn from the
/// percentiles (each bar holds the records between two percentiles; its
/// height is their density), with the cut-offs as dashed lines.
pub fn length_histograms(title: &str, panels: &[LengthPanel]) -> Result<String, ReportError> {
    svg(title, |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let root = root.titled(title, ("sans-serif", 22)).map_err(|x| e(&x))?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (p, ((name, stats, cuts), area)) in panels.iter().zip(&areas).enumerate() {
            let bins = quantile_bins(stats);
            // Percent of records per 100 tokens of length.
            let density: Vec<(f64, f64, f64)> = bins
                .iter()
                .map(|&(a, b, share)| (a, b, share * 100.0 / (b - a) * 100.0))
                .collect();
            let x_max = cuts
                .iter()
                .map(|c| c.0 as f64)
                .fold(stats.max, f64::max)
                .max(1.0)
                * 1.05;
            let y_max = upper(density.iter().map(|d| d.2));
            let mut chart = ChartBuilder::on(area)
                .caption(*name, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(0.0..x_max, 0.0..y_max)
                .map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 16))
                .x_desc("tokens")
                .y_desc("% of records per 100 tokens")
                .x_label_formatter(&|x| format_tick(*x))
                .y_label_formatter(&|y| format_tick(*y))
                .draw()
                .map_err(|x| e(&x))?;
            let c = color(p);
            chart
                .draw_series(
                    density
                        .iter()
                        .map(|&(a, b, d)| Rectangle::new([(a, 0.0), (b, d)], c.mix(0.7).filled())),
                )
                .map_err(|x| e(&x))?;
            for (i, (at, label)) in cuts.iter().enumerate() {
                let cc = color(p + 2 + i);
                let x = *at as f64;
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![(x, 0.0), (x, y_max)],
                        5,
                        3,
                        cc.stroke_width(2),
                    ))
                    .map_err(|x| e(&x))?
                    .label(label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], cc.stroke_width(2))
                    });
            }
            if !cuts.is_empty() {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|x| e(&x))?;
            }
        }
        Ok(())
    })
}

/// Axis numbers without float noise: 1500 → "1500", 0.25 → "0.25", 12000 → "12k".
fn format_tick(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{}k", trim(v / 1000.0))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_chart_is_svg_with_labels() {
        let s = line_chart(
            "Throughput vs workers",
            "workers",
            "t/s",
            &[Series {
                name: "generation t/s".into(),
                points: vec![(1.0, 50.0), (2.0, 95.0), (4.0, 170.0)],
            }],
            Some((0.75, "75%")),
        )
        .unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..60.min(s.len())]);
        assert!(s.contains("Throughput vs workers") && s.contains("generation t/s"));
        assert!(s.contains("<circle"));
    }

    #[test]
    fn bar_chart_labels_every_category() {
        let cats = vec!["pp512".to_string(), "tg128".to_string(), "pp64".to_string()];
        let s = bar_chart(
            "t/s",
            "t/s",
            &cats,
            &[
                ("a".into(), vec![100.0, 20.0, 80.0]),
                ("b".into(), vec![110.0, 22.0, 90.0]),
            ],
        )
        .unwrap();
        for c in &cats {
            assert!(s.contains(&format!("\n{c}\n</text>")), "missing {c}");
        }
        // 6 bars plus 2 legend swatches (plus the background).
        assert!(s.matches("<rect").count() >= 8);
    }

    #[test]
    fn quantile_bins_hold_the_shares() {
        let st = LengthStats {
            count: 100,
            min: 10.0,
            p50: 100.0,
            p75: 200.0,
            p90: 300.0,
            p95: 300.0,
            p99: 500.0,
            max: 900.0,
            ..LengthStats::default()
        };
        let bins = quantile_bins(&st);
        // p90 = p95: the empty-width bin is dropped.
        assert_eq!(bins.len(), 5);
        assert_eq!(bins[0], (10.0, 100.0, 0.5));
        assert!((bins[3].2 - 0.04).abs() < 1e-12);
        let svg =
            length_histograms("lengths", &[("prompt", &st, vec![(512, "-p 512".into())])]).unwrap();
        assert!(svg.contains("-p 512"));
    }

    #[test]
    fn ticks_are_tidy() {
        assert_eq!(format_tick(1500.0), "1500");
        assert_eq!(format_tick(0.25), "0.25");
        assert_eq!(format_tick(12000.0), "12k");
        assert_eq!(format_tick(-0.0), "0");
    }
}
