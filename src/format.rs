//! Human-readable numbers for terminal output.

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
    fn formats_like_upstream_tools() {
        assert_eq!(bytes(246_587_904), "235.16 MiB");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(params(268_098_176), "268.10 M");
        assert_eq!(params(23_572_403_200), "23.57 B");
    }
}
