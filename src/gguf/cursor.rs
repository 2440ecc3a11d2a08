//! Bounds-checked little-endian reading over the file bytes.
//!
//! Every read checks the remaining length first, so no byte sequence can make
//! the parser index out of range; errors carry the section, the item being
//! read and the offset.

use super::error::{GgufError, Section};

pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    pub section: Section,
    /// The item being read ("kv 3", "tensor 7 'output.weight'"; empty in
    /// the header), for messages.
    pub item: String,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor {
            buf,
            pos: 0,
            section: Section::Header,
            item: String::new(),
        }
    }

    pub fn offset(&self) -> u64 {
        self.pos as u64
    }

    pub fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos.min(self.buf.len())) as u64
    }

    pub fn file_size(&self) -> u64 {
        self.buf.len() as u64
    }

    pub fn what(&self, field: &str) -> String {
        if self.item.is_empty() {
            field.to_owned()
        } else {
            format!("{} {}", self.item, field)
        }
    }

    /// The next `n` bytes, or a truncation error naming `field`.
    pub fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], GgufError> {
        match self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
        {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(GgufError::Truncated {
                section: self.section,
                what: self.what(field),
                needed: n as u64,
                offset: self.offset(),
                file_size: self.file_size(),
            }),
        }
    }

    pub fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], GgufError> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn u8(&mut self, field: &str) -> Result<u8, GgufError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u16(&mut self, field: &str) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub fn u32(&mut self, field: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub fn u64(&mut self, field: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A GGUF string: u64 byte length, then UTF-8 bytes (no terminator).
    pub fn string(&mut self, field: &str) -> Result<&'a str, GgufError> {
        let len = self.u64(field)?;
        let start = self.offset();
        let bytes = match usize::try_from(len) {
            Ok(n) if len <= self.remaining() => self.take(n, field)?,
            _ => {
                return Err(GgufError::StringPastEnd {
                    section: self.section,
                    what: self.what(field),
                    len,
                    offset: start - 8,
                    file_size: self.file_size(),
                })
            }
        };
        std::str::from_utf8(bytes).map_err(|e| GgufError::InvalidUtf8 {
            what: self.what(field),
            offset: start + e.valid_up_to() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_reports_truncation_with_offset() {
        let bytes = [1u8, 0, 2, 0, 0, 0, 9];
        let mut c = Cursor::new(&bytes);
        assert_eq!(c.u16("a").unwrap(), 1);
        assert_eq!(c.u32("b").unwrap(), 2);
        let err = c.u16("c").unwrap_err();
        match err {
            GgufError::Truncated {
                needed,
                offset,
                file_size,
                ..
            } => assert_eq!((needed, offset, file_size), (2, 6, 7)),
            other => panic!("unexpected {other}"),
        }
        // A failed read does not move the cursor.
        assert_eq!(c.u8("d").unwrap(), 9);
        assert_eq!(c.remaining(), 0);
    }

    #[test]
    fn string_length_past_end_and_bad_utf8_are_refused() {
        let mut past = 5u64.to_le_bytes().to_vec();
        past.extend_from_slice(b"abc");
        assert!(matches!(
            Cursor::new(&past).string("s"),
            Err(GgufError::StringPastEnd {
                len: 5,
                offset: 0,
                ..
            })
        ));
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.push(b'a');
        assert!(matches!(
            Cursor::new(&huge).string("s"),
            Err(GgufError::StringPastEnd { .. })
        ));
        let mut bad = 3u64.to_le_bytes().to_vec();
        bad.extend_from_slice(&[b'a', 0xff, b'b']);
        assert!(matches!(
            Cursor::new(&bad).string("s"),
            Err(GgufError::InvalidUtf8 { offset: 9, .. })
        ));
        let mut ok = 2u64.to_le_bytes().to_vec();
        ok.extend_from_slice("é".as_bytes());
        assert_eq!(Cursor::new(&ok).string("s").unwrap(), "é");
    }
}
