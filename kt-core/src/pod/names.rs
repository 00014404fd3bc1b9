//! Checks for the name formats container platforms (Kubernetes first) accept, so that a
//! bad name in [`crate::Compute`] fails at `validate()` on the driver, with the field
//! named, instead of as an API-server rejection after resources were created.
//!
//! The rules are Kubernetes' (`k8s.io/apimachinery/pkg/util/validation`): they are the
//! strictest of the backends kt targets, and a name that passes them is safe anywhere.

/// Longest DNS-1123 label (`a-b-c`): volume names, container names.
pub(crate) const DNS_LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain (`a.b-c`): service accounts, priority classes, secrets.
pub(crate) const DNS_SUBDOMAIN_MAX: usize = 253;
/// Longest label value.
pub(crate) const LABEL_VALUE_MAX: usize = 63;

fn alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// Lowercase alphanumerics and `-`, starting and ending alphanumeric, at most 63.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= DNS_LABEL_MAX
        && s.chars().all(|c| alnum_lower(c) || c == '-')
        && s.starts_with(alnum_lower)
        && s.ends_with(alnum_lower)
}

/// Dot-separated DNS-1123 labels, at most 253 characters.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= DNS_SUBDOMAIN_MAX && s.split('.').all(is_dns_label)
}

/// Empty, or alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric, at most 63.
pub(crate) fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= LABEL_VALUE_MAX
            && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
            && s.starts_with(alnum)
            && s.ends_with(alnum))
}

/// A label key or taint key: an optional DNS-subdomain prefix and `/`, then a name
/// part that follows the label-value rules but cannot be empty.
pub(crate) fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_name_rules() {
        assert!(is_dns_label("dshm"));
        assert!(is_dns_label("a-1"));
        assert!(!is_dns_label("A"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("high.priority"));
        assert!(!is_dns_subdomain("high..priority"));
        assert!(is_label_value(""));
        assert!(is_label_value("Team_A.1"));
        assert!(!is_label_value("a b"));
        assert!(is_qualified_name("nvidia.com/gpu"));
        assert!(is_qualified_name("dedicated"));
        assert!(!is_qualified_name("nvidia.com/"));
        assert!(!is_qualified_name("Bad_Domain/x"));
    }
}
