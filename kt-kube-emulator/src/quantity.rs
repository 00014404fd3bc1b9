//! Resource quantities (`500m`, `1.5Gi`, `2`, `1e3`) as integer milli-units, for scheduling.

use kube_quantity::ParsedQuantity;

/// Parses a quantity into thousandths of its unit, rounding up (the scheduler's direction).
pub(crate) fn parse_milli(q: &str) -> Option<i128> {
    let q = q.trim();
    // kube_quantity reads a bare unit ("Gi") as zero; Kubernetes wants a number first.
    if !q.contains(|c: char| c.is_ascii_digit()) {
        return None;
    }
    // Through f64: the crate's integer accessors truncate fractions and refuse the
    // sub-unit scales ("500m", "100n") that CPU requests are written in.
    let milli = ParsedQuantity::try_from(q).ok()?.to_bytes_f64()? * 1000.0;
    if !milli.is_finite() {
        return None;
    }
    let nearest = milli.round();
    // Float noise ("1.1" × 1000 = 1100.0000000000002) is not a fraction to round up.
    let milli = if (milli - nearest).abs() <= nearest.abs() * 1e-12 {
        nearest
    } else {
        milli.ceil()
    };
    Some(milli as i128)
}

#[cfg(test)]
mod tests {
    use super::parse_milli;

    #[test]
    fn decimal_binary_and_exponent_forms() {
        assert_eq!(parse_milli("500m"), Some(500));
        assert_eq!(parse_milli("2"), Some(2000));
        assert_eq!(parse_milli("1.5"), Some(1500));
        assert_eq!(parse_milli("1.1"), Some(1100));
        assert_eq!(parse_milli("0.1"), Some(100));
        assert_eq!(parse_milli("250m"), Some(250));
        assert_eq!(parse_milli("1Gi"), Some(1000 * (1 << 30)));
        assert_eq!(parse_milli("16Gi"), Some(1000 * 16 * (1 << 30)));
        assert_eq!(parse_milli("1.5Gi"), Some(1000 * (3 << 29)));
        assert_eq!(parse_milli("1k"), Some(1_000_000));
        assert_eq!(parse_milli("1e3"), Some(1_000_000));
        assert_eq!(parse_milli("110"), Some(110_000));
        assert_eq!(parse_milli("0"), Some(0));
        assert_eq!(parse_milli("100n"), Some(1));
        assert_eq!(parse_milli("1500u"), Some(2));
        assert_eq!(parse_milli("abc"), None);
        assert_eq!(parse_milli("Gi"), None);
        assert_eq!(parse_milli("1Qi"), None);
    }
}
