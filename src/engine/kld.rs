//! KL-divergence against a base model, in the file format of
//! llama-perplexity's `--kl-divergence-base`, so a base written by either
//! tool is compared by either tool.
//!
//! The file: `_logits_`, then `n_ctx` (u32), `n_vocab` (i32), `n_chunk`
//! (i32), the `n_chunk · n_ctx` evaluated tokens (i32), then per chunk one
//! row per scored position (the second half of the chunk, as perplexity
//! scores it). A row is the log-softmax quantized to 16 bits: two F32
//! (`scale`, `min_log_prob`) in the first four u16, then one u16 per
//! vocabulary entry, `log p = scale · q + min_log_prob`, the range cut at
//! 16 nats below the top, padded to an even count. Little-endian, as
//! llama.cpp writes it on the machines it runs on.
//!
//! Per scored token (as llama-perplexity defines them): KLD(base ‖ this) over
//! the base's tokens within 16 nats of its top, the negative log-likelihood
//! of the next token under both, the difference of its probability (Δp),
//! and whether the two agree on the most likely token.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"_logits_";

/// Log-probabilities below the top by more than this are cut off.
const RANGE_NATS: f32 = 16.0;

#[derive(Debug, thiserror::Error)]
pub enum KldError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not a log-probability file (no `_logits_` header; write one with `perplexity --kl-divergence-base FILE`)")]
    NotLogits(PathBuf),
    #[error("{path}: {what}")]
    Bad { path: PathBuf, what: String },
    #[error("{path}: ends inside {what}")]
    Truncated { path: PathBuf, what: String },
}

/// u16 per quantized row for a vocabulary of `n_vocab`.
pub fn row_len(n_vocab: usize) -> usize {
    2 * n_vocab.div_ceil(2) + 4
}

/// Scored positions of one chunk of `n_ctx` (the rows a chunk has).
pub fn rows_per_chunk(n_ctx: usize) -> usize {
    n_ctx.saturating_sub(1 + n_ctx / 2)
}

/// Quantizes the log-softmax of `logits` into `out` (`row_len` u16), as
/// llama-perplexity does.
pub fn quantize_row(logits: &[f32], out: &mut [u16]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let min = logits
        .iter()
        .copied()
        .fold(f32::INFINITY, f32::min)
        .max(max - RANGE_NATS);
    let sum_exp: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let log_sum_exp = sum_exp.ln() as f32;
    let min_log_prob = min - max - log_sum_exp;
    let scale = (max - min) / 65535.0;
    let (head, values) = out.split_at_mut(4);
    for (pair, x) in head.chunks_exact_mut(2).zip([scale, min_log_prob]) {
        let bits = x.to_bits();
        pair[0] = bits as u16;
        pair[1] = (bits >> 16) as u16;
    }
    values.fill(0);
    if scale != 0.0 {
        let inv = 1.0 / scale;
        for (q, &l) in values.iter_mut().zip(logits) {
            if l > min {
                *q = (inv * (l - min)).round_ties_even() as u16;
            }
        }
    }
}

/// `(scale, min_log_prob)` of a quantized row.
fn row_header(row: &[u16]) -> (f32, f32) {
    let f = |lo: u16, hi: u16| f32::from_bits(u32::from(lo) | u32::from(hi) << 16);
    (f(row[0], row[1]), f(row[2], row[3]))
}

/// One scored token compared with the base.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenComparison {
    pub kld: f64,
    /// p(next token) here minus under the base.
    pub p_diff: f32,
    pub nll: f32,
    pub nll_base: f32,
    pub same_top: bool,
}

/// Compares `logits` with the base's quantized row for the token `next`.
pub fn compare_row(logits: &[f32], base: &[u16], next: u32) -> TokenComparison {
    let (mut max, mut top) = (f32::NEG_INFINITY, 0);
    for (i, &l) in logits.iter().enumerate() {
        if l > max {
            (max, top) = (l, i);
        }
    }
    let sum_exp: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let log_sum_exp = sum_exp.ln() as f32;
    let (scale, min_log_prob) = row_header(base);
    let q = &base[4..];
    let next = next as usize;
    let logit = |i: usize| logits.get(i).copied().unwrap_or(f32::NEG_INFINITY);
    let base_log_p = |i: usize| scale * f32::from(q.get(i).copied().unwrap_or(0)) + min_log_prob;
    let nll = max + log_sum_exp - logit(next);
    let nll_base = -base_log_p(next);
    let log_norm = max + log_sum_exp;
    let (mut kld, mut top_base, mut top_base_log_p) = (0f64, 0, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        let lp_base = base_log_p(i);
        if i == 0 || lp_base > top_base_log_p {
            (top_base, top_base_log_p) = (i, lp_base);
        }
        if lp_base > -RANGE_NATS {
            kld += f64::from(lp_base.exp() * (lp_base - l + log_norm));
        }
    }
    TokenComparison {
        kld,
        p_diff: (-nll).exp() - (-nll_base).exp(),
        nll,
        nll_base,
        same_top: top == top_base,
    }
}

/// Writes a base file: the header and tokens at once, then chunk rows.
pub struct BaseWriter {
    out: BufWriter<std::fs::File>,
    path: PathBuf,
    n_vocab: usize,
    row: Vec<u16>,
    /// The row's bytes, reused.
    bytes: Vec<u8>,
}

impl BaseWriter {
    /// Starts `path` for `n_chunk` chunks of `n_ctx` of `tokens` (at least
    /// `n_chunk · n_ctx`, the text's tokens before any BOS replacement).
    pub fn create(
        path: &Path,
        n_ctx: usize,
        n_vocab: usize,
        n_chunk: usize,
        tokens: &[u32],
    ) -> Result<BaseWriter, KldError> {
        let io = |source| KldError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bad = |what: &str| KldError::Bad {
            path: path.to_path_buf(),
            what: what.to_string(),
        };
        let count = n_chunk * n_ctx;
        let tokens = tokens
            .get(..count)
            .ok_or_else(|| bad("fewer tokens than chunks"))?;
        let as_i32 = |n: usize| i32::try_from(n).map_err(|_| bad("a size does not fit 32 bits"));
        let mut out = BufWriter::new(std::fs::File::create(path).map_err(io)?);
        let mut head = MAGIC.to_vec();
        head.extend(
            u32::try_from(n_ctx)
                .map_err(|_| bad("n_ctx does not fit 32 bits"))?
                .to_le_bytes(),
        );
        head.extend(as_i32(n_vocab)?.to_le_bytes());
        head.extend(as_i32(n_chunk)?.to_le_bytes());
        for &t in tokens {
            head.extend(t.to_le_bytes());
        }
        out.write_all(&head).map_err(io)?;
        Ok(BaseWriter {
            out,
            path: path.to_path_buf(),
            n_vocab,
            row: vec![0; row_len(n_vocab)],
            bytes: Vec::with_capacity(2 * row_len(n_vocab)),
        })
    }

    /// Appends one scored position's row.
    pub fn write_row(&mut self, logits: &[f32]) -> Result<(), KldError> {
        quantize_row(&logits[..self.n_vocab.min(logits.len())], &mut self.row);
        self.bytes.clear();
        self.bytes
            .extend(self.row.iter().flat_map(|v| v.to_le_bytes()));
        self.out
            .write_all(&self.bytes)
            .map_err(|source| KldError::Io {
                path: self.path.clone(),
                source,
            })
    }

    pub fn finish(mut self) -> Result<(), KldError> {
        self.out.flush().map_err(|source| KldError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// A base file being read: its header and tokens, then chunk rows.
pub struct BaseReader {
    input: BufReader<std::fs::File>,
    path: PathBuf,
    pub n_ctx: usize,
    pub n_vocab: usize,
    pub n_chunk: usize,
    pub tokens: Vec<u32>,
}

impl BaseReader {
    pub fn open(path: &Path) -> Result<BaseReader, KldError> {
        let file = std::fs::File::open(path).map_err(|source| KldError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut input = BufReader::new(file);
        let mut magic = [0u8; 8];
        if input.read_exact(&mut magic).is_err() || &magic != MAGIC {
            return Err(KldError::NotLogits(path.to_path_buf()));
        }
        let mut reader = BaseReader {
            input,
            path: path.to_path_buf(),
            n_ctx: 0,
            n_vocab: 0,
            n_chunk: 0,
            tokens: Vec::new(),
        };
        let mut word = |what: &str| -> Result<u32, KldError> {
            let mut b = [0u8; 4];
            reader.read(&mut b, what)?;
            Ok(u32::from_le_bytes(b))
        };
        let (n_ctx, n_vocab, n_chunk) = (word("n_ctx")?, word("n_vocab")?, word("n_chunk")?);
        let bad = |what: String| KldError::Bad {
            path: path.to_path_buf(),
            what,
        };
        // i32 in the file: a negative value reads as a huge u32.
        if !(8..=1 << 20).contains(&n_ctx) || n_vocab == 0 || n_vocab > 1 << 24 || n_chunk > 1 << 20
        {
            return Err(bad(format!(
                "implausible header: n_ctx {n_ctx}, n_vocab {n_vocab}, n_chunk {n_chunk}"
            )));
        }
        let (n_ctx, n_vocab, n_chunk) = (n_ctx as usize, n_vocab as usize, n_chunk as usize);
        let mut raw = vec![0u8; n_ctx * n_chunk * 4];
        reader.read(&mut raw, "the tokens")?;
        reader.tokens = raw
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(t) = reader.tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(bad(format!(
                "token {t} is outside the vocabulary of {n_vocab}"
            )));
        }
        (reader.n_ctx, reader.n_vocab, reader.n_chunk) = (n_ctx, n_vocab, n_chunk);
        Ok(reader)
    }

    fn read(&mut self, buf: &mut [u8], what: &str) -> Result<(), KldError> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => KldError::Truncated {
                path: self.path.clone(),
                what: what.to_string(),
            },
            _ => KldError::Io {
                path: self.path.clone(),
                source: e,
            },
        })
    }

    /// The rows of the next chunk, `rows_per_chunk(n_ctx)` of `row_len(n_vocab)`.
    pub fn next_chunk(&mut self, chunk: usize) -> Result<Vec<u16>, KldError> {
        let n = rows_per_chunk(self.n_ctx) * row_len(self.n_vocab);
        let mut raw = vec![0u8; n * 2];
        self.read(&mut raw, &format!("the rows of chunk {}", chunk + 1))?;
        Ok(raw
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect())
    }
}

/// Running statistics of a comparison, llama-perplexity's figures.
#[derive(Clone, Debug, Default)]
pub struct KldStats {
    sum_nll: f64,
    sum_nll2: f64,
    sum_nll_base: f64,
    sum_nll_base2: f64,
    sum_nll_nll_base: f64,
    sum_kld: f64,
    sum_kld2: f64,
    sum_p_diff: f64,
    sum_p_diff2: f64,
    sum_p_diff4: f64,
    same_top: u64,
    kld: Vec<f32>,
    p_diff: Vec<f32>,
}

/// A value and its standard error.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub value: f64,
    pub error: f64,
}

/// The comparison's summary (`-o json` carries it whole).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KldSummary {
    pub tokens: u64,
    pub ppl: Estimate,
    pub ppl_base: Estimate,
    /// Correlation of the two per-token NLLs.
    pub ln_ppl_correlation: f64,
    pub ln_ppl_ratio: Estimate,
    pub ppl_ratio: Estimate,
    pub ppl_diff: Estimate,
    pub kld_mean: Estimate,
    /// (percentile 0-100, value), from the maximum down to the minimum.
    pub kld_percentiles: Vec<(f64, f64)>,
    pub p_diff_mean: Estimate,
    pub p_diff_percentiles: Vec<(f64, f64)>,
    pub p_diff_rms: Estimate,
    pub same_top: Estimate,
}

impl KldStats {
    pub fn add(&mut self, c: &TokenComparison) {
        let (nll, nll_base) = (f64::from(c.nll), f64::from(c.nll_base));
        self.sum_nll += nll;
        self.sum_nll2 += nll * nll;
        self.sum_nll_base += nll_base;
        self.sum_nll_base2 += nll_base * nll_base;
        self.sum_nll_nll_base += nll * nll_base;
        self.sum_kld += c.kld;
        self.sum_kld2 += c.kld * c.kld;
        let p = f64::from(c.p_diff);
        self.sum_p_diff += p;
        self.sum_p_diff2 += p * p;
        self.sum_p_diff4 += p * p * p * p;
        self.same_top += u64::from(c.same_top);
        self.kld.push(c.kld as f32);
        self.p_diff.push(c.p_diff);
    }

    pub fn count(&self) -> u64 {
        self.kld.len() as u64
    }

    /// Mean and standard error as llama-perplexity takes them (no error
    /// under 11 values).
    fn mean(&self, sum: f64, sum2: f64) -> Estimate {
        let n = self.count() as f64;
        if n < 1.0 {
            return Estimate {
                value: 0.0,
                error: 0.0,
            };
        }
        let value = sum / n;
        let var = sum2 / n - value * value;
        let error = if var > 0.0 && n > 10.0 {
            (var / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Estimate { value, error }
    }

    pub fn ppl(&self) -> f64 {
        self.mean(self.sum_nll, self.sum_nll2).value.exp()
    }

    pub fn mean_kld(&self) -> f64 {
        self.mean(self.sum_kld, self.sum_kld2).value
    }

    pub fn same_top_share(&self) -> f64 {
        self.same_top as f64 / self.count().max(1) as f64
    }

    pub fn summary(&self) -> KldSummary {
        let n = self.count() as f64;
        let log_ppl = self.mean(self.sum_nll, self.sum_nll2);
        let log_base = self.mean(self.sum_nll_base, self.sum_nll_base2);
        let cov = if n < 10.0 {
            0.0
        } else {
            (self.sum_nll_nll_base / n - (self.sum_nll / n) * (self.sum_nll_base / n)) / (n - 1.0)
        };
        let exp_of = |e: Estimate| Estimate {
            value: e.value.exp(),
            error: e.value.exp() * e.error,
        };
        let (ppl, ppl_base) = (exp_of(log_ppl), exp_of(log_base));
        let ratio_error = (log_ppl.error.powi(2) + log_base.error.powi(2) - 2.0 * cov)
            .max(0.0)
            .sqrt();
        let ln_ratio = Estimate {
            value: log_ppl.value - log_base.value,
            error: ratio_error,
        };
        let ppl_cov = ppl.value * ppl_base.value * cov;
        let mse = self.mean(self.sum_p_diff2, self.sum_p_diff4);
        let rms = mse.value.sqrt();
        let top = self.same_top_share();
        let sorted = |v: &[f32]| {
            let mut s: Vec<f64> = v.iter().map(|&x| f64::from(x)).collect();
            s.sort_by(f64::total_cmp);
            s
        };
        let (kld, p_diff) = (sorted(&self.kld), sorted(&self.p_diff));
        let at = |s: &[f64], q: &[f64]| -> Vec<(f64, f64)> {
            q.iter()
                .map(|&p| (p, crate::load::metrics::percentile(s, p)))
                .collect()
        };
        KldSummary {
            tokens: self.count(),
            ppl,
            ppl_base,
            ln_ppl_correlation: if log_ppl.error > 0.0 && log_base.error > 0.0 {
                cov / (log_ppl.error * log_base.error)
            } else {
                0.0
            },
            ln_ppl_ratio: ln_ratio,
            ppl_ratio: exp_of(ln_ratio),
            ppl_diff: Estimate {
                value: ppl.value - ppl_base.value,
                error: (ppl.error.powi(2) + ppl_base.error.powi(2) - 2.0 * ppl_cov)
                    .max(0.0)
                    .sqrt(),
            },
            kld_mean: self.mean(self.sum_kld, self.sum_kld2),
            kld_percentiles: at(
                &kld,
                &[
                    100.0, 99.9, 99.0, 95.0, 90.0, 50.0, 10.0, 5.0, 1.0, 0.1, 0.0,
                ],
            ),
            p_diff_mean: self.mean(self.sum_p_diff, self.sum_p_diff2),
            p_diff_percentiles: at(
                &p_diff,
                &[
                    100.0, 99.9, 99.0, 95.0, 90.0, 75.0, 50.0, 25.0, 10.0, 5.0, 1.0, 0.1, 0.0,
                ],
            ),
            p_diff_rms: Estimate {
                value: rms,
                error: if rms > 0.0 {
                    0.5 / rms * mse.error
                } else {
                    0.0
                },
            },
            same_top: Estimate {
                value: top,
                error: if n > 1.0 {
                    (top * (1.0 - top) / (n - 1.0)).sqrt()
                } else {
                    0.0
                },
            },
        }
    }
}

impl KldSummary {
    /// The text llama-perplexity prints after a comparison.
    pub fn lines(&self) -> Vec<String> {
        let mut l = Vec::new();
        let e = |x: Estimate| format!("{:10.6} ± {:10.6}", x.value, x.error);
        let pct = |x: Estimate| format!("{:6.3} ± {:5.3} %", 100.0 * x.value, 100.0 * x.error);
        let name = |p: f64| match p {
            100.0 => "Maximum".to_string(),
            0.0 => "Minimum".to_string(),
            50.0 => "Median ".to_string(),
            _ => format!("{:>5}%  ", format!("{p:.1}")),
        };
        l.push("====== Perplexity statistics ======".into());
        l.push(format!("Mean PPL(Q)                   : {}", e(self.ppl)));
        l.push(format!(
            "Mean PPL(base)                : {}",
            e(self.ppl_base)
        ));
        l.push(format!(
            "Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%",
            100.0 * self.ln_ppl_correlation
        ));
        l.push(format!(
            "Mean ln(PPL(Q)/PPL(base))     : {}",
            e(self.ln_ppl_ratio)
        ));
        l.push(format!(
            "Mean PPL(Q)/PPL(base)         : {}",
            e(self.ppl_ratio)
        ));
        l.push(format!(
            "Mean PPL(Q)-PPL(base)         : {}",
            e(self.ppl_diff)
        ));
        l.push(String::new());
        l.push("====== KL divergence statistics ======".into());
        l.push(format!("Mean    KLD: {}", e(self.kld_mean)));
        for &(p, v) in &self.kld_percentiles {
            l.push(format!("{} KLD: {v:10.6}", name(p)));
        }
        l.push(String::new());
        l.push("====== Token probability statistics ======".into());
        l.push(format!("Mean    Δp: {}", pct(self.p_diff_mean)));
        for &(p, v) in &self.p_diff_percentiles {
            l.push(format!("{} Δp: {:6.3}%", name(p), 100.0 * v));
        }
        l.push(format!("RMS Δp    : {}", pct(self.p_diff_rms)));
        l.push(format!("Same top p: {}", pct(self.same_top)));
        l
    }
}

#[cfg(test)]
mod tests;
