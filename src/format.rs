//! Human-readable numbers and the one Markdown table builder every
//! command and report uses.

use comfy_table::{presets::ASCII_MARKDOWN, CellAlignment, Table};

/// How a table column is aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A Markdown table (GitHub style) of `header` and `rows`, column `i`
/// aligned by `align(i)`.
pub fn table<S: ToString>(
    header: &[S],
    rows: impl IntoIterator<Item = Vec<String>>,
    align: impl Fn(usize) -> Align,
) -> String {
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN)
        .set_header(header.iter().map(ToString::to_string).collect::<Vec<_>>());
    for r in rows {
        t.add_row(r);
    }
    for i in 0..header.len() {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(match align(i) {
                Align::Left => CellAlignment::Left,
                Align::Right => CellAlignment::Right,
            });
        }
    }
    t.to_string()
}

/// Text columns left, every column from `right_from` on right-aligned.
pub fn numbers_from(right_from: usize) -> impl Fn(usize) -> Align {
    move |i| {
        if i >= right_from {
            Align::Right
        } else {
            Align::Left
        }
    }
}

/// 246587904 -> "235.16 MiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

/// 268098176 -> "268.10 M".
pub fn params(n: u64) -> String {
    let v = n as f64;
    if v >= 1e9 {
        format!("{:.2} B", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.2} K", v / 1e3)
    } else {
        format!("{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_markdown_with_the_asked_alignment() {
        let t = table(
            &["name", "n"],
            [vec!["a".into(), "1".into()], vec!["bb".into(), "22".into()]],
            numbers_from(1),
        );
        assert_eq!(
            t,
            "| name |  n |\n|------|----|\n| a    |  1 |\n| bb   | 22 |"
        );
    }

    #[test]
    fn formats_like_upstream_tools() {
        assert_eq!(bytes(246_587_904), "235.16 MiB");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(params(268_098_176), "268.10 M");
        assert_eq!(params(23_572_403_200), "23.57 B");
    }
}
