//! Kubernetes quantities (`"64Gi"`, `"1.5G"`, `"1000"`), for memory requests and volume
//! size limits, parsed by `kube_quantity` with the checks Kubernetes adds.

/// Parses a Kubernetes quantity (memory, storage) into bytes.
pub(crate) fn parse_quantity(quantity: &str) -> std::result::Result<u64, String> {
    let bad = || {
        format!(
            "memory quantity '{quantity}' is not valid; write a number with an optional unit, \
             like \"64Gi\", \"512Mi\" or \"1G\""
        )
    };
    let trimmed = quantity.trim();
    // kube_quantity reads a bare unit ("Gi") as zero; Kubernetes wants a number first.
    // (It also reads "E"/"Ei" as the start of an exponent, so exabyte quantities are
    // refused; no actor asks for one.)
    if !trimmed.contains(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    let parsed = kube_quantity::ParsedQuantity::try_from(trimmed).map_err(|_| bad())?;
    // Through f64 rather than `to_bytes_u64`, which truncates the number before scaling
    // ("1.5Gi" would come out as 1Gi) and refuses sub-unit scales ("500m").
    let bytes = parsed.to_bytes_f64().ok_or_else(bad)?;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities_parse_like_kubernetes() {
        assert_eq!(parse_quantity("64Gi"), Ok(64 << 30));
        assert_eq!(parse_quantity("512Mi"), Ok(512 << 20));
        assert_eq!(parse_quantity("1G"), Ok(1_000_000_000));
        assert_eq!(parse_quantity("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_quantity("1000"), Ok(1000));
        assert_eq!(parse_quantity("1e3"), Ok(1000));
        assert_eq!(parse_quantity(" 2Ki "), Ok(2048));
        assert_eq!(parse_quantity("2Pi"), Ok(2 << 50));
        assert_eq!(parse_quantity("1Ti"), Ok(1 << 40));
        assert!(parse_quantity("lots").is_err());
        assert!(parse_quantity("Gi").is_err());
        assert!(parse_quantity("1Qi").is_err());
        assert!(parse_quantity("64 gigs").is_err());
        assert!(parse_quantity("20000000000000000000").is_err());
        assert!(parse_quantity("-1Gi").is_err());
        assert!(parse_quantity("").is_err());
    }
}
