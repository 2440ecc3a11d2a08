//! Result formats: a markdown table like llama-bench's, CSV, a JSON array
//! and JSON lines, all behind one [`Exporter`] trait.

use super::BenchRow;
use crate::build_info::BuildInfo;
use crate::format::{table, Align};
use crate::system::Hardware;
use serde::Serialize;
use std::io::{self, Write};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Md,
    Csv,
    Json,
    Jsonl,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "md" => Some(Format::Md),
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// Facts about the run shared by every row.
#[derive(Clone, Debug)]
pub struct RunFacts {
    pub build: BuildInfo,
    pub hardware: Hardware,
}

/// Receives rows as tests finish; formats that need all rows write at `end`.
pub trait Exporter {
    fn row(&mut self, out: &mut dyn Write, row: &BenchRow) -> io::Result<()>;
    fn end(&mut self, out: &mut dyn Write) -> io::Result<()>;
}

pub fn exporter(format: Format, facts: RunFacts) -> Box<dyn Exporter> {
    match format {
        Format::Md => Box::new(Markdown { rows: Vec::new() }),
        Format::Csv => Box::new(Csv {
            facts,
            wrote_header: false,
        }),
        Format::Json => Box::new(Json {
            facts,
            rows: Vec::new(),
        }),
        Format::Jsonl => Box::new(JsonLines { facts }),
    }
}

/// One row as JSON/JSONL write it: llama-bench's field names plus rbench's extras.
#[derive(Serialize)]
pub struct JsonRow<'a> {
    pub model_filename: &'a str,
    pub model_type: &'a str,
    pub model_size: u64,
    pub model_n_params: u64,
    pub synthetic: bool,
    pub n_batch: usize,
    pub n_ubatch: usize,
    pub n_threads: usize,
    pub type_k: &'static str,
    pub type_v: &'static str,
    pub flash_attn: bool,
    /// rbench's: who computed weight matmuls (`ggml` or `rbench`).
    pub kernels: &'static str,
    pub n_gpu_layers: u32,
    pub split_mode: &'static str,
    pub main_gpu: usize,
    pub devices: &'a str,
    pub tensor_split: &'a str,
    pub no_kv_offload: bool,
    pub use_mmap: bool,
    /// "CPU", or the offload backends used ("Vulkan", "CUDA", ...).
    pub backends: &'a str,
    pub gpu_info: &'a str,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub n_depth: usize,
    pub test_time: &'a str,
    pub avg_ns: u64,
    pub stddev_ns: u64,
    pub avg_ts: f64,
    pub stddev_ts: f64,
    pub samples_ns: &'a [u64],
    pub samples_ts: Vec<f64>,
    pub build: &'a BuildInfo,
    pub hardware: &'a Hardware,
}

impl<'a> JsonRow<'a> {
    pub fn new(row: &'a BenchRow, facts: &'a RunFacts) -> JsonRow<'a> {
        let p = &row.params;
        JsonRow {
            model_filename: &row.model.filename,
            model_type: &row.model.model_type,
            model_size: row.model.model_size,
            model_n_params: row.model.n_params,
            synthetic: row.model.synthetic,
            n_batch: p.n_batch,
            n_ubatch: p.n_ubatch,
            n_threads: p.n_threads,
            type_k: p.type_k.name(),
            type_v: p.type_v.name(),
            flash_attn: p.flash_attn,
            kernels: p.kernels.name(),
            n_gpu_layers: row.placement.n_gpu_layers,
            split_mode: row.placement.split_mode,
            main_gpu: row.placement.main_gpu,
            devices: &row.placement.devices,
            tensor_split: &row.placement.tensor_split,
            no_kv_offload: p.no_kv_offload,
            use_mmap: row.placement.use_mmap,
            backends: &row.placement.backends,
            gpu_info: &row.placement.gpu_info,
            n_prompt: p.n_prompt,
            n_gen: p.n_gen,
            n_depth: p.n_depth,
            test_time: &row.test_time,
            avg_ns: row.avg_ns(),
            stddev_ns: row.stddev_ns(),
            avg_ts: row.avg_ts(),
            stddev_ts: row.stddev_ts(),
            samples_ns: &row.samples_ns,
            samples_ts: row.samples_ts(),
            build: &facts.build,
            hardware: &facts.hardware,
        }
    }
}

fn json_error(e: serde_json::Error) -> io::Error {
    io::Error::other(e)
}

struct Json {
    facts: RunFacts,
    rows: Vec<BenchRow>,
}

impl Exporter for Json {
    fn row(&mut self, _out: &mut dyn Write, row: &BenchRow) -> io::Result<()> {
        self.rows.push(row.clone());
        Ok(())
    }

    fn end(&mut self, out: &mut dyn Write) -> io::Result<()> {
        let rows: Vec<JsonRow> = self
            .rows
            .iter()
            .map(|r| JsonRow::new(r, &self.facts))
            .collect();
        serde_json::to_writer_pretty(&mut *out, &rows).map_err(json_error)?;
        writeln!(out)
    }
}

struct JsonLines {
    facts: RunFacts,
}

impl Exporter for JsonLines {
    fn row(&mut self, out: &mut dyn Write, row: &BenchRow) -> io::Result<()> {
        serde_json::to_writer(&mut *out, &JsonRow::new(row, &self.facts)).map_err(json_error)?;
        writeln!(out)?;
        out.flush()
    }

    fn end(&mut self, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
}

const CSV_HEADER: [&str; 38] = [
    "model_filename",
    "model_type",
    "model_size",
    "model_n_params",
    "synthetic",
    "n_batch",
    "n_ubatch",
    "n_threads",
    "type_k",
    "type_v",
    "flash_attn",
    "kernels",
    "n_gpu_layers",
    "split_mode",
    "main_gpu",
    "devices",
    "tensor_split",
    "no_kv_offload",
    "use_mmap",
    "backends",
    "gpu_info",
    "n_prompt",
    "n_gen",
    "n_depth",
    "test_time",
    "avg_ns",
    "stddev_ns",
    "avg_ts",
    "stddev_ts",
    "samples_ns",
    "samples_ts",
    "rbench_version",
    "build_commit",
    "ggml_version",
    "cpu_info",
    "logical_cores",
    "physical_cores",
    "cpu_features",
];

struct Csv {
    facts: RunFacts,
    wrote_header: bool,
}

/// Every field quoted, as llama-bench writes CSV; quotes inside are doubled.
fn csv_line(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(",")
}

fn join<T: ToString>(xs: &[T]) -> String {
    xs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(";")
}

impl Exporter for Csv {
    fn row(&mut self, out: &mut dyn Write, row: &BenchRow) -> io::Result<()> {
        if !self.wrote_header {
            let header: Vec<String> = CSV_HEADER.iter().map(|s| s.to_string()).collect();
            writeln!(out, "{}", csv_line(&header))?;
            self.wrote_header = true;
        }
        let j = JsonRow::new(row, &self.facts);
        let hw = &self.facts.hardware;
        let fields = vec![
            j.model_filename.to_string(),
            j.model_type.to_string(),
            j.model_size.to_string(),
            j.model_n_params.to_string(),
            j.synthetic.to_string(),
            j.n_batch.to_string(),
            j.n_ubatch.to_string(),
            j.n_threads.to_string(),
            j.type_k.to_string(),
            j.type_v.to_string(),
            j.flash_attn.to_string(),
            j.kernels.to_string(),
            j.n_gpu_layers.to_string(),
            j.split_mode.to_string(),
            j.main_gpu.to_string(),
            j.devices.to_string(),
            j.tensor_split.to_string(),
            j.no_kv_offload.to_string(),
            j.use_mmap.to_string(),
            j.backends.to_string(),
            j.gpu_info.to_string(),
            j.n_prompt.to_string(),
            j.n_gen.to_string(),
            j.n_depth.to_string(),
            j.test_time.to_string(),
            j.avg_ns.to_string(),
            j.stddev_ns.to_string(),
            format!("{:.6}", j.avg_ts),
            format!("{:.6}", j.stddev_ts),
            join(j.samples_ns),
            join(&j.samples_ts),
            self.facts.build.rbench_version.to_string(),
            self.facts.build.git_commit.to_string(),
            self.facts.build.ggml_version.to_string(),
            hw.cpu_model.clone().unwrap_or_default(),
            hw.logical_cores.to_string(),
            hw.physical_cores.map(|n| n.to_string()).unwrap_or_default(),
            hw.cpu_features.join(" "),
        ];
        writeln!(out, "{}", csv_line(&fields))?;
        out.flush()
    }

    fn end(&mut self, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
}

struct Markdown {
    rows: Vec<BenchRow>,
}

impl Exporter for Markdown {
    fn row(&mut self, _out: &mut dyn Write, row: &BenchRow) -> io::Result<()> {
        self.rows.push(row.clone());
        Ok(())
    }

    fn end(&mut self, out: &mut dyn Write) -> io::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        writeln!(out, "{}", markdown_table(&self.rows))
    }
}

/// An optional column, shown (like llama-bench) only when some row differs
/// from the default.
struct Extra {
    name: &'static str,
    value: fn(&BenchRow) -> String,
    default: &'static str,
}

const EXTRAS: [Extra; 13] = [
    Extra {
        name: "n_batch",
        value: |r| r.params.n_batch.to_string(),
        default: "2048",
    },
    Extra {
        name: "n_ubatch",
        value: |r| r.params.n_ubatch.to_string(),
        default: "512",
    },
    Extra {
        name: "type_k",
        value: |r| r.params.type_k.name().to_string(),
        default: "f16",
    },
    Extra {
        name: "type_v",
        value: |r| r.params.type_v.name().to_string(),
        default: "f16",
    },
    Extra {
        name: "fa",
        value: |r| if r.params.flash_attn { "1" } else { "0" }.to_string(),
        default: "1",
    },
    Extra {
        name: "kernels",
        value: |r| r.params.kernels.name().to_string(),
        default: "rbench",
    },
    Extra {
        name: "ngl",
        value: |r| r.placement.n_gpu_layers.to_string(),
        default: "99",
    },
    Extra {
        name: "sm",
        value: |r| r.placement.split_mode.to_string(),
        default: "layer",
    },
    Extra {
        name: "mg",
        value: |r| r.placement.main_gpu.to_string(),
        default: "0",
    },
    Extra {
        name: "dev",
        value: |r| r.placement.devices.clone(),
        default: "auto",
    },
    Extra {
        name: "ts",
        value: |r| r.placement.tensor_split.clone(),
        default: "0.00",
    },
    Extra {
        name: "nkvo",
        value: |r| u8::from(r.params.no_kv_offload).to_string(),
        default: "0",
    },
    Extra {
        name: "mmap",
        value: |r| u8::from(r.placement.use_mmap).to_string(),
        default: "1",
    },
];

/// The llama-bench style table: model, size, params, backend, threads,
/// (non-default settings), test, t/s as `mean ± sd`.
pub fn markdown_table(rows: &[BenchRow]) -> String {
    let extras: Vec<&Extra> = EXTRAS
        .iter()
        .filter(|e| {
            rows.iter().any(|r| (e.value)(r) != e.default)
                // As llama-bench, offloaded rows always say how many layers.
                || (e.name == "ngl" && rows.iter().any(|r| r.placement.backends != "CPU"))
        })
        .collect();
    let mut header = vec!["model", "size", "params", "backend", "threads"];
    header.extend(extras.iter().map(|e| e.name));
    header.extend(["test", "t/s"]);
    let rows = rows.iter().map(|r| {
        let mut model = r.model.model_type.clone();
        if r.model.synthetic {
            model.push_str(" (synthetic)");
        }
        let mut cells = vec![
            model,
            crate::format::bytes(r.model.model_size),
            crate::format::params(r.model.n_params),
            r.placement.backends.clone(),
            r.params.n_threads.to_string(),
        ];
        cells.extend(extras.iter().map(|e| (e.value)(r)));
        cells.push(r.params.name());
        cells.push(format!("{:.2} ± {:.2}", r.avg_ts(), r.stddev_ts()));
        cells
    });
    // Text columns left, numbers right, as llama-bench aligns them.
    table(&header, rows, |i| match header[i] {
        "model" | "backend" | "test" => Align::Left,
        _ => Align::Right,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{ModelFacts, TestParams};
    use super::*;
    use crate::quant::GgmlType;

    fn row(n_prompt: usize, n_gen: usize, flash_attn: bool) -> BenchRow {
        BenchRow {
            model: ModelFacts {
                filename: "/m/x.gguf".into(),
                model_type: "llama 15M Q4_K - Medium".into(),
                model_size: 1 << 20,
                n_params: 15_000_000,
                synthetic: true,
            },
            params: TestParams {
                n_prompt,
                n_gen,
                n_depth: 0,
                n_batch: 2048,
                n_ubatch: 512,
                n_threads: 2,
                type_k: GgmlType::F16,
                type_v: GgmlType::F16,
                flash_attn,
                kernels: Default::default(),
                no_kv_offload: false,
            },
            placement: super::super::RowPlacement::cpu(),
            test_time: "2025-01-01T00:00:00Z".into(),
            samples_ns: vec![1_000_000, 2_000_000],
        }
    }

    /// The facts every rendering of a test shares: the machine is read once,
    /// since its free memory moves between reads (two renderings of the same
    /// rows must agree).
    fn facts() -> RunFacts {
        static HARDWARE: std::sync::OnceLock<Hardware> = std::sync::OnceLock::new();
        RunFacts {
            build: crate::build_info::build_info(),
            hardware: HARDWARE.get_or_init(Hardware::detect).clone(),
        }
    }

    fn render(format: Format, rows: &[BenchRow]) -> String {
        let mut e = exporter(format, facts());
        let mut buf = Vec::new();
        for r in rows {
            e.row(&mut buf, r).unwrap();
        }
        e.end(&mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn markdown_has_the_upstream_bench_columns() {
        let md = render(Format::Md, &[row(16, 0, true), row(0, 4, true)]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 4, "{md}");
        for col in [
            "model", "size", "params", "backend", "threads", "test", "t/s",
        ] {
            assert!(lines[0].contains(col), "{md}");
        }
        assert!(!lines[0].contains("fa"), "{md}");
        assert!(lines[2].contains("(synthetic)") && lines[2].contains("pp16"));
        assert!(lines[2].contains("12000.00 ± 5656.85"), "{md}");
        assert!(lines[3].contains("tg4") && lines[3].contains("3000.00 ± 1414.21"));
        // A non-default setting gets its own column.
        let md = render(Format::Md, &[row(16, 0, true), row(16, 0, false)]);
        assert!(md.lines().next().unwrap().contains("fa"), "{md}");
    }

    #[test]
    fn json_and_jsonl_agree() {
        let rows = [row(16, 0, true), row(0, 4, false)];
        let arr: serde_json::Value = serde_json::from_str(&render(Format::Json, &rows)).unwrap();
        let lines: Vec<serde_json::Value> = render(Format::Jsonl, &rows)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(arr.as_array().unwrap(), &lines);
        assert_eq!(lines[0]["n_gen"], 0);
        assert_eq!(lines[1]["n_prompt"], 0);
        assert_eq!(lines[1]["flash_attn"], false);
        assert_eq!(lines[0]["avg_ns"], 1_500_000);
        assert_eq!(
            lines[0]["samples_ns"],
            serde_json::json!([1_000_000, 2_000_000])
        );
        assert!(lines[0]["hardware"]["logical_cores"].as_u64().unwrap() >= 1);
        assert!(lines[0]["build"]["rbench_version"].is_string());
    }

    #[test]
    fn csv_quotes_every_field() {
        let csv = render(Format::Csv, &[row(16, 0, true)]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("\"model_filename\",\"model_type\""));
        assert!(lines[1].contains("\"1000000;2000000\""), "{csv}");
        assert_eq!(
            csv_line(&["a\"b".into(), "c,d".into()]),
            "\"a\"\"b\",\"c,d\""
        );
    }
}
