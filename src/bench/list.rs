//! llama-bench's list syntax for numeric flags: `512,1024`, ranges `1-8`
//! (step 1), `1-8+2` (additive step) and `1-16*2` (multiplicative step).

/// Most values one list may expand to; stops `1-1000000` from filling memory.
const MAX_VALUES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("{flag}: empty value")]
    Empty { flag: String },
    #[error("{flag}: '{item}' is not a number, a range (1-8, 1-8+2, 1-16*2) or a comma list")]
    Garbage { flag: String, item: String },
    #[error("{flag}: {value} is below the minimum of {min}")]
    TooSmall { flag: String, value: u64, min: u64 },
    #[error("{flag}: {value} is above the maximum of {max}")]
    TooLarge { flag: String, value: u64, max: u64 },
    #[error("{flag}: range {first}-{last} goes down; write it ascending")]
    Descending { flag: String, first: u64, last: u64 },
    #[error("{flag}: step in '{item}' must be at least {min}")]
    BadStep {
        flag: String,
        item: String,
        min: u64,
    },
    #[error("{flag}: expands to more than {MAX_VALUES} values")]
    TooMany { flag: String },
    #[error("{flag}: '{item}' must be a pair like 512,128")]
    BadPair { flag: String, item: String },
}

/// The values one flag accepts (inclusive bounds).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub min: u64,
    pub max: u64,
}

/// Parses one flag's value (`s`), e.g. `1,2,4-8*2`, into its values in order.
pub fn parse_list(flag: &str, s: &str, bounds: Bounds) -> Result<Vec<u64>, ListError> {
    if s.trim().is_empty() {
        return Err(ListError::Empty { flag: flag.into() });
    }
    let mut values = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(ListError::Empty { flag: flag.into() });
        }
        expand_item(flag, item, bounds, &mut values)?;
    }
    Ok(values)
}

/// Parses every occurrence of a repeatable flag and concatenates the values.
pub fn parse_lists(flag: &str, items: &[String], bounds: Bounds) -> Result<Vec<u64>, ListError> {
    let mut all = Vec::new();
    for s in items {
        all.extend(parse_list(flag, s, bounds)?);
    }
    if all.len() > MAX_VALUES {
        return Err(ListError::TooMany { flag: flag.into() });
    }
    Ok(all)
}

/// A `-pg` value: exactly two numbers, `prompt,generated`.
pub fn parse_pair(flag: &str, s: &str, bounds: Bounds) -> Result<(u64, u64), ListError> {
    let bad = || ListError::BadPair {
        flag: flag.into(),
        item: s.into(),
    };
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    if b.contains(',') {
        return Err(bad());
    }
    let a = number(flag, a.trim(), bounds)?;
    let b = number(flag, b.trim(), bounds)?;
    Ok((a, b))
}

fn expand_item(
    flag: &str,
    item: &str,
    bounds: Bounds,
    out: &mut Vec<u64>,
) -> Result<(), ListError> {
    let Some((first, rest)) = item.split_once('-') else {
        out.push(number(flag, item, bounds)?);
        return Ok(());
    };
    enum Step {
        Add(u64),
        Mul(u64),
    }
    let (last, step) = if let Some((last, step)) = rest.split_once('+') {
        let step = parse_u64(flag, step)?;
        if step < 1 {
            return Err(bad_step(flag, item, 1));
        }
        (last, Step::Add(step))
    } else if let Some((last, step)) = rest.split_once('*') {
        let step = parse_u64(flag, step)?;
        if step < 2 {
            return Err(bad_step(flag, item, 2));
        }
        (last, Step::Mul(step))
    } else {
        (rest, Step::Add(1))
    };
    let first = number(flag, first.trim(), bounds)?;
    let last = number(flag, last.trim(), bounds)?;
    if last < first {
        return Err(ListError::Descending {
            flag: flag.into(),
            first,
            last,
        });
    }
    if matches!(step, Step::Mul(_)) && first == 0 {
        // 0 times anything stays 0: the range would never advance.
        return Err(ListError::TooSmall {
            flag: flag.into(),
            value: 0,
            min: 1,
        });
    }
    let mut v = first;
    while v <= last {
        if out.len() >= MAX_VALUES {
            return Err(ListError::TooMany { flag: flag.into() });
        }
        out.push(v);
        v = match step {
            Step::Add(s) => v.saturating_add(s),
            Step::Mul(s) => v.saturating_mul(s),
        };
        if v == u64::MAX {
            break;
        }
    }
    Ok(())
}

fn bad_step(flag: &str, item: &str, min: u64) -> ListError {
    ListError::BadStep {
        flag: flag.into(),
        item: item.into(),
        min,
    }
}

fn parse_u64(flag: &str, s: &str) -> Result<u64, ListError> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ListError::Garbage {
            flag: flag.into(),
            item: s.into(),
        });
    }
    // Digits only, so the one failure left is overflow.
    s.parse().map_err(|_| ListError::TooLarge {
        flag: flag.into(),
        value: u64::MAX,
        max: u64::MAX,
    })
}

fn number(flag: &str, s: &str, bounds: Bounds) -> Result<u64, ListError> {
    let v = parse_u64(flag, s)?;
    if v < bounds.min {
        return Err(ListError::TooSmall {
            flag: flag.into(),
            value: v,
            min: bounds.min,
        });
    }
    if v > bounds.max {
        return Err(ListError::TooLarge {
            flag: flag.into(),
            value: v,
            max: bounds.max,
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds { min: 1, max: 1000 };

    fn p(s: &str) -> Result<Vec<u64>, ListError> {
        parse_list("-p", s, B)
    }

    #[test]
    fn single_values_and_comma_lists() {
        assert_eq!(p("512").unwrap(), vec![512]);
        assert_eq!(p("128,512, 64").unwrap(), vec![128, 512, 64]);
    }

    #[test]
    fn ranges_with_each_step_kind() {
        assert_eq!(p("1-4").unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(p("1-8+3").unwrap(), vec![1, 4, 7]);
        assert_eq!(p("1-16*2").unwrap(), vec![1, 2, 4, 8, 16]);
        assert_eq!(p("3-20*3").unwrap(), vec![3, 9]);
        assert_eq!(p("5-5").unwrap(), vec![5]);
        assert_eq!(p("1,4-6,100").unwrap(), vec![1, 4, 5, 6, 100]);
    }

    #[test]
    fn garbage_and_empty_are_refused() {
        assert!(matches!(p(""), Err(ListError::Empty { .. })));
        assert!(matches!(p("1,,2"), Err(ListError::Empty { .. })));
        assert!(matches!(p("abc"), Err(ListError::Garbage { .. })));
        assert!(matches!(p("-3"), Err(ListError::Garbage { .. })));
        assert!(matches!(p("1.5"), Err(ListError::Garbage { .. })));
        assert!(matches!(p("1-8/2"), Err(ListError::Garbage { .. })));
        assert!(matches!(p("1-8+x"), Err(ListError::Garbage { .. })));
    }

    #[test]
    fn bounds_steps_and_direction_are_checked() {
        assert_eq!(
            p("0"),
            Err(ListError::TooSmall {
                flag: "-p".into(),
                value: 0,
                min: 1
            })
        );
        assert!(matches!(p("1001"), Err(ListError::TooLarge { .. })));
        assert!(matches!(
            p("99999999999999999999999"),
            Err(ListError::TooLarge { .. })
        ));
        assert!(matches!(p("8-1"), Err(ListError::Descending { .. })));
        assert!(matches!(p("1-8+0"), Err(ListError::BadStep { .. })));
        assert!(matches!(p("1-8*1"), Err(ListError::BadStep { .. })));
        let with_zero = Bounds { min: 0, max: 10 };
        assert_eq!(parse_list("-d", "0-4+2", with_zero).unwrap(), vec![0, 2, 4]);
        assert!(parse_list("-d", "0-4*2", with_zero).is_err());
    }

    #[test]
    fn huge_ranges_are_capped() {
        let wide = Bounds {
            min: 1,
            max: 1_000_000,
        };
        assert!(matches!(
            parse_list("-p", "1-1000000", wide),
            Err(ListError::TooMany { .. })
        ));
    }

    #[test]
    fn repeated_flags_concatenate() {
        let items = vec!["1,2".to_string(), "8-16*2".to_string()];
        assert_eq!(parse_lists("-t", &items, B).unwrap(), vec![1, 2, 8, 16]);
    }

    #[test]
    fn pairs() {
        assert_eq!(parse_pair("-pg", "512,128", B).unwrap(), (512, 128));
        assert!(matches!(
            parse_pair("-pg", "512", B),
            Err(ListError::BadPair { .. })
        ));
        assert!(matches!(
            parse_pair("-pg", "1,2,3", B),
            Err(ListError::BadPair { .. })
        ));
        assert!(matches!(
            parse_pair("-pg", "0,3", B),
            Err(ListError::TooSmall { .. })
        ));
    }
}
