//! Resource quantities (`500m`, `1.5Gi`, `2`, `1e3`) as integer milli-units, for scheduling.

/// Parses a quantity into thousandths of its unit, rounding up (the scheduler's direction).
pub(crate) fn parse_milli(q: &str) -> Option<i128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    // Decimal exponent forms (`1e3`, `5E-1`) have a suffix starting with e/E and digits.
    let (numerator_exp, binary): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        s if s.starts_with(['e', 'E']) => (s[1..].parse().ok()?, 0),
        _ => return None,
    };
    let negative = number.starts_with('-');
    let number = number.trim_start_matches(['+', '-']);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let digits: String = format!("{int_part}{frac_part}");
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    // value = mantissa * 10^(exp - frac_len) * 2^binary, and we want value * 1000.
    let exp = numerator_exp + 3 - frac_part.len() as i32;
    let scaled = mantissa.checked_mul(1i128.checked_shl(binary)?)?;
    let value = if exp >= 0 {
        scaled.checked_mul(10i128.checked_pow(exp as u32)?)?
    } else {
        let div = 10i128.checked_pow((-exp) as u32)?;
        (scaled + div - 1) / div
    };
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::parse_milli;

    #[test]
    fn decimal_binary_and_exponent_forms() {
        assert_eq!(parse_milli("500m"), Some(500));
        assert_eq!(parse_milli("2"), Some(2000));
        assert_eq!(parse_milli("1.5"), Some(1500));
        assert_eq!(parse_milli("1Gi"), Some(1000 * (1 << 30)));
        assert_eq!(parse_milli("16Gi"), Some(1000 * 16 * (1 << 30)));
        assert_eq!(parse_milli("1k"), Some(1_000_000));
        assert_eq!(parse_milli("1e3"), Some(1_000_000));
        assert_eq!(parse_milli("100n"), Some(1));
        assert_eq!(parse_milli("abc"), None);
        assert_eq!(parse_milli("1Qi"), None);
    }
}
