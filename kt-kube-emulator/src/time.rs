//! Timestamps in the `metav1.Time` format (RFC 3339, whole seconds, UTC).

/// Now, as `2026-01-02T03:04:05Z`.
pub(crate) fn now() -> String {
    format(jiff::Timestamp::now())
}

/// `t`, as `2026-01-02T03:04:05Z`.
pub(crate) fn format(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Now plus `seconds`, as `metav1.Time`.
pub(crate) fn now_plus(seconds: i64) -> String {
    let now = jiff::Timestamp::now();
    let later = now
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or(now);
    format(later)
}

#[cfg(test)]
mod tests {
    #[test]
    fn whole_seconds_utc() {
        let t = super::now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z'));
    }
}
