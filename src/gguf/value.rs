//! Metadata values of a GGUF file and their type tags.

use std::fmt::Write as _;

/// Deepest array nesting the reader accepts and the writer produces; real
/// files use one level, the cap bounds recursion on hostile input.
pub const MAX_ARRAY_NESTING: usize = 8;

/// A GGUF metadata value type id, as written before every value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Encoded size of one value of a fixed-size type; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// Fewest bytes one encoded value of this type can take: a string is at
    /// least its u64 length, an array at least its element type and count.
    pub fn min_encoded_size(self) -> usize {
        match self {
            ValueType::String => 8,
            ValueType::Array => 4 + 8,
            fixed => fixed.fixed_size().unwrap_or(1),
        }
    }
}

impl std::fmt::Display for ValueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value. Arrays carry their element type so that empty arrays
/// keep it through a read/write round trip.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array { elem: ValueType, items: Vec<Value> },
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F32(_) => ValueType::F32,
            Value::F64(_) => ValueType::F64,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array { .. } => ValueType::Array,
        }
    }

    /// Any integer widened to i128, which holds every integer type exactly.
    fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// Any non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// Any integer that fits in an i64.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// Any integer that fits in a u32.
    pub fn as_u32(&self) -> Option<u32> {
        self.as_i128().and_then(|v| u32::try_from(v).ok())
    }

    /// Floats, and integers converted (rounded to the nearest f32).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => self.as_i128().map(|v| v as f32),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array { items, .. } => Some(items),
            _ => None,
        }
    }

    /// Short human form: strings quoted and escaped, arrays showing at most
    /// `max_items` items, e.g. `[1, 2, ... (50 items)]`.
    pub fn to_display_string(&self, max_items: usize) -> String {
        let mut out = String::new();
        self.write_display(&mut out, max_items);
        out
    }

    fn write_display(&self, out: &mut String, max_items: usize) {
        // Writing into a String cannot fail, so the fmt::Results are ignored.
        let _ = match self {
            Value::U8(v) => write!(out, "{v}"),
            Value::I8(v) => write!(out, "{v}"),
            Value::U16(v) => write!(out, "{v}"),
            Value::I16(v) => write!(out, "{v}"),
            Value::U32(v) => write!(out, "{v}"),
            Value::I32(v) => write!(out, "{v}"),
            Value::U64(v) => write!(out, "{v}"),
            Value::I64(v) => write!(out, "{v}"),
            Value::F32(v) => write!(out, "{v}"),
            Value::F64(v) => write!(out, "{v}"),
            Value::Bool(v) => write!(out, "{v}"),
            Value::String(s) => write!(out, "{s:?}"),
            Value::Array { items, .. } => {
                out.push('[');
                for (i, item) in items.iter().take(max_items).enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_display(out, max_items);
                }
                if items.len() > max_items {
                    if max_items > 0 {
                        out.push_str(", ");
                    }
                    let _ = write!(out, "... ({} items)", items.len());
                }
                out.push(']');
                Ok(())
            }
        };
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(v)
            }
        })*
    };
}

value_from!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32,
            u64 => U64, i64 => I64, f32 => F32, f64 => F64, bool => Bool, String => String);

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::String(v.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_ids_round_trip_and_unknown_ids_are_refused() {
        for id in 0..=12 {
            let t = ValueType::from_id(id).unwrap();
            assert_eq!(t.id(), id);
        }
        assert_eq!(ValueType::from_id(13), None);
        assert_eq!(ValueType::from_id(u32::MAX), None);
    }

    #[test]
    fn integer_accessors_convert_only_when_the_value_fits() {
        assert_eq!(Value::I32(-1).as_u64(), None);
        assert_eq!(Value::I32(-1).as_i64(), Some(-1));
        assert_eq!(Value::I64(7).as_u64(), Some(7));
        assert_eq!(Value::U64(u64::MAX).as_i64(), None);
        assert_eq!(Value::U64(u64::MAX).as_u64(), Some(u64::MAX));
        assert_eq!(Value::U64(1 << 32).as_u32(), None);
        assert_eq!(Value::U16(65535).as_u32(), Some(65535));
        assert_eq!(Value::F32(1.0).as_u32(), None);
        assert_eq!(Value::Bool(true).as_u64(), None);
    }

    #[test]
    fn float_bool_str_array_accessors() {
        assert_eq!(Value::F64(0.5).as_f32(), Some(0.5));
        assert_eq!(Value::U32(3).as_f32(), Some(3.0));
        assert_eq!(Value::String("x".into()).as_f32(), None);
        assert_eq!(Value::Bool(false).as_bool(), Some(false));
        assert_eq!(Value::U8(1).as_bool(), None);
        assert_eq!(Value::from("hi").as_str(), Some("hi"));
        assert_eq!(Value::U8(1).as_str(), None);
        let arr = Value::Array {
            elem: ValueType::U8,
            items: vec![Value::U8(1)],
        };
        assert_eq!(arr.as_array(), Some(&[Value::U8(1)][..]));
        assert_eq!(arr.value_type(), ValueType::Array);
        assert_eq!(Value::U8(1).as_array(), None);
    }

    #[test]
    fn display_abbreviates_arrays_and_quotes_strings() {
        let arr = Value::Array {
            elem: ValueType::I32,
            items: (0..5).map(Value::I32).collect(),
        };
        assert_eq!(arr.to_display_string(2), "[0, 1, ... (5 items)]");
        assert_eq!(arr.to_display_string(5), "[0, 1, 2, 3, 4]");
        assert_eq!(arr.to_display_string(0), "[... (5 items)]");
        let empty = Value::Array {
            elem: ValueType::String,
            items: vec![],
        };
        assert_eq!(empty.to_display_string(3), "[]");
        assert_eq!(Value::from("a\"b\n").to_display_string(3), r#""a\"b\n""#);
        assert_eq!(Value::F32(0.25).to_display_string(3), "0.25");
        assert_eq!(Value::Bool(true).to_display_string(3), "true");
    }
}
