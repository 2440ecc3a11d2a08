//! Streaming reader of dataset files: JSON Lines or one JSON array, either of them
//! gzip-compressed. It hands out the raw bytes of one record at a time, never the whole
//! file, and never more than `max_record_bytes` of one record: a longer record is skipped
//! (and reported) while the reader goes on.

use super::error::AnalyzeError;
use super::{Problem, ProblemKind};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Records larger than this are skipped unless the caller sets another limit.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 << 20;

const BUFFER_BYTES: usize = 256 << 10;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const UTF8_BOM: [u8; 3] = [0xef, 0xbb, 0xbf];

/// How records are laid out in the (decompressed) file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One JSON value per line.
    Jsonl,
    /// One JSON array whose elements are the records.
    JsonArray,
}

/// The raw bytes of one record and the line it starts on (1-based).
#[derive(Debug)]
pub struct RawRecord {
    pub line: u64,
    pub bytes: Vec<u8>,
}

/// What the reader yields: a record to parse, or a problem found while splitting the file.
#[derive(Debug)]
pub enum Item {
    Record(RawRecord),
    Problem(Problem),
}

/// Counts the bytes read from the underlying file (compressed bytes for .gz), for progress.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Where the JSON array splitter is.
#[derive(Debug, Default)]
struct ArrayScan {
    started: bool,
    finished: bool,
    depth: u64,
    in_string: bool,
    escape: bool,
    element: Vec<u8>,
    element_line: u64,
    element_len: usize,
    overflow: bool,
}

/// Splits a dataset file into records.
pub struct RecordReader {
    src: Box<dyn BufRead + Send>,
    path: PathBuf,
    layout: Layout,
    gzip: bool,
    /// Line of the next byte to read (1-based).
    line: u64,
    max_record_bytes: usize,
    bytes_read: Arc<AtomicU64>,
    scan: ArrayScan,
}

impl std::fmt::Debug for RecordReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordReader")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .field("gzip", &self.gzip)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl RecordReader {
    /// Opens a dataset file; gzip is recognized by its magic bytes, the layout by the first
    /// character (`[` is a JSON array, anything else JSON Lines).
    pub fn open(path: &Path, max_record_bytes: usize) -> Result<RecordReader, AnalyzeError> {
        let file = std::fs::File::open(path).map_err(|source| AnalyzeError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        RecordReader::new(file, path, max_record_bytes)
    }

    /// Reads records from any byte stream; `label` names it in messages.
    pub fn new(
        input: impl Read + Send + 'static,
        label: &Path,
        max_record_bytes: usize,
    ) -> Result<RecordReader, AnalyzeError> {
        let bytes_read = Arc::new(AtomicU64::new(0));
        let counting = CountingReader {
            inner: input,
            count: Arc::clone(&bytes_read),
        };
        let mut raw = BufReader::with_capacity(BUFFER_BYTES, counting);
        let read_err = |source| AnalyzeError::Read {
            path: label.to_path_buf(),
            line: 1,
            source,
        };
        let gzip = raw.fill_buf().map_err(read_err)?.starts_with(&GZIP_MAGIC);
        let src: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(
                BUFFER_BYTES,
                flate2::bufread::MultiGzDecoder::new(raw),
            ))
        } else {
            Box::new(raw)
        };
        let mut reader = RecordReader {
            src,
            path: label.to_path_buf(),
            layout: Layout::Jsonl,
            gzip,
            line: 1,
            max_record_bytes: max_record_bytes.max(1),
            bytes_read,
            scan: ArrayScan::default(),
        };
        reader.layout = reader.detect_layout().map_err(read_err)?;
        Ok(reader)
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// Bytes taken from the file so far (compressed bytes for gzip input).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// Skips a byte-order mark and leading whitespace, then looks at the first character.
    fn detect_layout(&mut self) -> std::io::Result<Layout> {
        if self.src.fill_buf()?.starts_with(&UTF8_BOM) {
            self.src.consume(UTF8_BOM.len());
        }
        loop {
            let buf = self.src.fill_buf()?;
            if buf.is_empty() {
                return Ok(Layout::Jsonl);
            }
            let mut used = 0;
            let mut first = None;
            for &b in buf {
                if !b.is_ascii_whitespace() {
                    first = Some(b);
                    break;
                }
                if b == b'\n' {
                    self.line += 1;
                }
                used += 1;
            }
            self.src.consume(used);
            if let Some(b) = first {
                return Ok(if b == b'[' {
                    Layout::JsonArray
                } else {
                    Layout::Jsonl
                });
            }
        }
    }

    /// The next record or problem; `None` at the end of the input.
    pub fn next_item(&mut self) -> Result<Option<Item>, AnalyzeError> {
        let result = match self.layout {
            Layout::Jsonl => self.next_line_item(),
            Layout::JsonArray => self.next_array_item(),
        };
        result.map_err(|source| AnalyzeError::Read {
            path: self.path.clone(),
            line: self.line,
            source,
        })
    }

    fn too_long(&self, line: u64, len: usize) -> Item {
        Item::Problem(Problem {
            line,
            kind: ProblemKind::TooLong,
            reason: format!(
                "record of {len} bytes is longer than the limit of {} bytes",
                self.max_record_bytes
            ),
        })
    }

    fn next_line_item(&mut self) -> std::io::Result<Option<Item>> {
        loop {
            let line = self.line;
            let mut bytes = Vec::new();
            let Some((len, overflow)) = self.read_bounded_line(&mut bytes)? else {
                return Ok(None);
            };
            self.line += 1;
            if overflow {
                return Ok(Some(self.too_long(line, len)));
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Item::Record(RawRecord { line, bytes })));
        }
    }

    /// Reads one line (without its `\n`) into `out`, storing at most `max_record_bytes`.
    /// Returns its full length and whether it was cut, or `None` at the end of the input.
    fn read_bounded_line(&mut self, out: &mut Vec<u8>) -> std::io::Result<Option<(usize, bool)>> {
        let mut total = 0usize;
        let mut overflow = false;
        let mut any = false;
        loop {
            let buf = self.src.fill_buf()?;
            if buf.is_empty() {
                return Ok(any.then_some((total, overflow)));
            }
            any = true;
            let newline = buf.iter().position(|&b| b == b'\n');
            let piece_len = newline.unwrap_or(buf.len());
            let (piece, _) = buf.split_at(piece_len);
            total += piece.len();
            if !overflow {
                if out.len() + piece.len() > self.max_record_bytes {
                    overflow = true;
                    *out = Vec::new();
                } else {
                    out.extend_from_slice(piece);
                }
            }
            let used = piece_len + usize::from(newline.is_some());
            self.src.consume(used);
            if newline.is_some() {
                return Ok(Some((total, overflow)));
            }
        }
    }

    fn next_array_item(&mut self) -> std::io::Result<Option<Item>> {
        if self.scan.finished {
            return self.check_after_array();
        }
        loop {
            let buf = self.src.fill_buf()?;
            if buf.is_empty() {
                self.scan.finished = true;
                let item = if self.scan.element_len > 0 {
                    // The unfinished element is reported as a record: its JSON error tells more.
                    self.take_element()
                } else {
                    Item::Problem(Problem {
                        line: self.line,
                        kind: ProblemKind::Structure,
                        reason: "the file ends inside the JSON array (no closing `]`)".into(),
                    })
                };
                return Ok(Some(item));
            }
            let max = self.max_record_bytes;
            let scan = &mut self.scan;
            let mut used = buf.len();
            let mut event = None;
            for (i, &b) in buf.iter().enumerate() {
                if !scan.started {
                    // detect_layout left us at the `[`.
                    scan.started = b == b'[' || scan.started;
                    continue;
                }
                if b == b'\n' {
                    self.line += 1;
                }
                if scan.in_string {
                    if scan.escape {
                        scan.escape = false;
                    } else if b == b'\\' {
                        scan.escape = true;
                    } else if b == b'"' {
                        scan.in_string = false;
                    }
                    scan.push(b, self.line, max);
                    continue;
                }
                match b {
                    b'"' => {
                        scan.in_string = true;
                        scan.push(b, self.line, max);
                    }
                    b'{' | b'[' => {
                        scan.depth += 1;
                        scan.push(b, self.line, max);
                    }
                    b'}' | b']' if scan.depth > 0 => {
                        scan.depth -= 1;
                        scan.push(b, self.line, max);
                    }
                    b']' => {
                        scan.finished = true;
                        used = i + 1;
                        event = Some(b']');
                        break;
                    }
                    b',' if scan.depth == 0 => {
                        used = i + 1;
                        event = Some(b',');
                        break;
                    }
                    _ if b.is_ascii_whitespace() && scan.element_len == 0 => {}
                    _ => scan.push(b, self.line, max),
                }
            }
            self.src.consume(used);
            match event {
                Some(b']') if self.scan.element_len == 0 => return self.check_after_array(),
                Some(b',') if self.scan.element_len == 0 => {
                    return Ok(Some(Item::Problem(Problem {
                        line: self.line,
                        kind: ProblemKind::Structure,
                        reason: "empty element in the JSON array".into(),
                    })))
                }
                Some(_) => return Ok(Some(self.take_element())),
                None => {}
            }
        }
    }

    fn take_element(&mut self) -> Item {
        let scan = &mut self.scan;
        let line = scan.element_line;
        let len = scan.element_len;
        let overflow = scan.overflow;
        let mut bytes = std::mem::take(&mut scan.element);
        while bytes.last().is_some_and(u8::is_ascii_whitespace) {
            bytes.pop();
        }
        scan.element_len = 0;
        scan.overflow = false;
        scan.depth = 0;
        scan.in_string = false;
        scan.escape = false;
        if overflow {
            self.too_long(line, len)
        } else {
            Item::Record(RawRecord { line, bytes })
        }
    }

    /// After the closing `]` only whitespace may follow; anything else is reported once.
    fn check_after_array(&mut self) -> std::io::Result<Option<Item>> {
        loop {
            let buf = self.src.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            let len = buf.len();
            let stray = buf.iter().position(|b| !b.is_ascii_whitespace());
            let newlines = buf
                .iter()
                .take(stray.unwrap_or(len))
                .filter(|&&b| b == b'\n')
                .count() as u64;
            self.line += newlines;
            if stray.is_some() {
                let line = self.line;
                // Drain the rest so this is reported only once.
                std::io::copy(&mut self.src, &mut std::io::sink())?;
                return Ok(Some(Item::Problem(Problem {
                    line,
                    kind: ProblemKind::Structure,
                    reason: "data after the end of the JSON array (ignored)".into(),
                })));
            }
            self.src.consume(len);
        }
    }
}

impl ArrayScan {
    fn push(&mut self, b: u8, line: u64, max: usize) {
        if self.element_len == 0 {
            self.element_line = line;
        }
        self.element_len += 1;
        if self.overflow {
            return;
        }
        if self.element.len() >= max {
            self.overflow = true;
            self.element = Vec::new();
        } else {
            self.element.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn items(data: &[u8], max: usize) -> (Layout, Vec<Item>) {
        let mut r =
            RecordReader::new(std::io::Cursor::new(data.to_vec()), Path::new("t"), max).unwrap();
        let mut out = Vec::new();
        while let Some(item) = r.next_item().unwrap() {
            out.push(item);
        }
        (r.layout(), out)
    }

    /// Records as (line, text), problems as (line, "!kind").
    fn summary(items: &[Item]) -> Vec<(u64, String)> {
        items
            .iter()
            .map(|i| match i {
                Item::Record(r) => (r.line, String::from_utf8_lossy(&r.bytes).into_owned()),
                Item::Problem(p) => (p.line, format!("!{:?}", p.kind)),
            })
            .collect()
    }

    #[test]
    fn jsonl_lines_with_numbers_blank_lines_and_crlf() {
        let data = b"\xef\xbb\xbf\n{\"a\":1}\r\n\n  \n{\"b\":2}";
        let (layout, got) = items(data, 100);
        assert_eq!(layout, Layout::Jsonl);
        assert_eq!(
            summary(&got),
            vec![(2, "{\"a\":1}\r".to_string()), (5, "{\"b\":2}".to_string())]
        );
    }

    #[test]
    fn long_line_is_skipped_and_reading_goes_on() {
        let long = format!("{{\"x\":\"{}\"}}", "y".repeat(5000));
        let data = format!("{{\"a\":1}}\n{long}\n{{\"b\":2}}\n");
        let (_, got) = items(data.as_bytes(), 1000);
        assert_eq!(
            summary(&got),
            vec![
                (1, "{\"a\":1}".to_string()),
                (2, "!TooLong".to_string()),
                (3, "{\"b\":2}".to_string())
            ]
        );
        match &got[1] {
            Item::Problem(p) => assert!(p.reason.contains("5008 bytes"), "{}", p.reason),
            _ => unreachable!(),
        }
    }

    #[test]
    fn json_array_elements_keep_strings_and_nesting_intact() {
        let data = br#"
  [ {"a": "x,]}"}, {"b": [1, {"c": "\"]"}]},
    "str", 7
  ]
"#;
        let (layout, got) = items(data, 1000);
        assert_eq!(layout, Layout::JsonArray);
        assert_eq!(
            summary(&got),
            vec![
                (2, r#"{"a": "x,]}"}"#.to_string()),
                (2, r#"{"b": [1, {"c": "\"]"}]}"#.to_string()),
                (3, r#""str""#.to_string()),
                (3, "7".to_string()),
            ]
        );
    }

    #[test]
    fn json_array_problems_are_reported() {
        let (_, got) = items(b"[{\"a\":1},,{\"b\":2}] junk", 1000);
        assert_eq!(
            summary(&got),
            vec![
                (1, "{\"a\":1}".to_string()),
                (1, "!Structure".to_string()),
                (1, "{\"b\":2}".to_string()),
                (1, "!Structure".to_string()),
            ]
        );
        let (_, got) = items(b"[{\"a\":1},\n{\"b\":", 1000);
        assert_eq!(
            summary(&got),
            vec![(1, "{\"a\":1}".to_string()), (2, "{\"b\":".to_string())]
        );
        let (_, got) = items(b"[{\"a\":1},\n", 1000);
        assert_eq!(
            summary(&got),
            vec![(1, "{\"a\":1}".to_string()), (2, "!Structure".to_string())]
        );
        let (_, got) = items(b"[]", 1000);
        assert!(got.is_empty());
    }

    #[test]
    fn json_array_element_over_the_limit_is_skipped() {
        let data = format!("[{{\"a\":\"{}\"}}, {{\"b\":1}}]", "z".repeat(300));
        let (_, got) = items(data.as_bytes(), 100);
        assert_eq!(
            summary(&got),
            vec![(1, "!TooLong".to_string()), (1, "{\"b\":1}".to_string())]
        );
    }

    #[test]
    fn gzip_is_recognized_by_magic_bytes() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"[{\"a\":1}]").unwrap();
        let data = gz.finish().unwrap();
        let mut r =
            RecordReader::new(std::io::Cursor::new(data.clone()), Path::new("t"), 100).unwrap();
        assert!(r.is_gzip());
        assert_eq!(r.layout(), Layout::JsonArray);
        assert!(matches!(r.next_item().unwrap(), Some(Item::Record(_))));
        assert!(r.next_item().unwrap().is_none());
        assert_eq!(r.bytes_read(), data.len() as u64);
        // A corrupt stream is an error, not a panic.
        let mut broken = data;
        broken.truncate(broken.len() / 2);
        let result = RecordReader::new(std::io::Cursor::new(broken), Path::new("t"), 100)
            .and_then(|mut r| r.next_item().and_then(|_| r.next_item()));
        assert!(matches!(result, Err(AnalyzeError::Read { .. })));
    }

    #[test]
    fn empty_input_has_no_records() {
        let (layout, got) = items(b"", 100);
        assert_eq!(layout, Layout::Jsonl);
        assert!(got.is_empty());
    }
}
