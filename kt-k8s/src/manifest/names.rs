//! Names and label values: turning kt's free-form names (actor names, type names, group
//! names) into what Kubernetes accepts, and the names of every object kt creates.
//!
//! Object names are DNS-1123 labels (lowercase alphanumerics and `-`, at most 63) so that
//! a pod name can double as its hostname; label values allow upper case, `_` and `.`
//! but also stop at 63. A name that had to be changed — truncated, lower-cased, or with
//! characters replaced — gets a suffix of 8 hex digits of its SHA-256, so two different
//! actor names never map to one pod (`Trainer_A` and `trainer-a` differ), and a name that
//! already fits is used as is, readable in `kubectl get pods`.

use std::fmt::Write as _;

use kt_core::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest object name kt produces: a DNS-1123 label, so pod names are valid hostnames.
pub const NAME_MAX: usize = 63;
/// Longest label value Kubernetes accepts.
pub const LABEL_VALUE_MAX: usize = 63;
/// Longest session id: short, because it is part of every object name.
pub const SESSION_ID_MAX: usize = 16;
/// `-` and 8 hex digits.
const HASH_SUFFIX_LEN: usize = 9;

/// One driver session: part of every object name and the `kt.dev/session` label.
///
/// ```
/// use kt_k8s::manifest::SessionId;
/// assert!(SessionId::new("a1b2c3").is_ok());
/// assert!(SessionId::new("Not-A-Session").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionId(String);

impl SessionId {
    /// A session id: 1 to 16 lowercase letters and digits (a random one, typically).
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let fits = !id.is_empty()
            && id.len() <= SESSION_ID_MAX
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if fits {
            Ok(SessionId(id))
        } else {
            Err(Error::invalid_options(format!(
                "session id '{id}' is not valid: use 1 to {SESSION_ID_MAX} lowercase \
                     letters and digits"
            )))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Eight hex digits of the SHA-256 of `raw`: stable across builds and platforms (unlike
/// `std`'s hasher), so a driver of a later version finds the same names.
fn hash8(raw: &str) -> String {
    let digest = Sha256::digest(raw.as_bytes());
    digest.iter().take(4).fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// Shortens `kept` to make room for a hash suffix of `raw`, keeping the result's ends valid.
fn with_hash(kept: &str, raw: &str, max: usize, valid_end: fn(char) -> bool) -> String {
    let room = max.saturating_sub(HASH_SUFFIX_LEN);
    let head: String = kept.chars().take(room).collect();
    let head = head.trim_end_matches(|c: char| !valid_end(c));
    if head.is_empty() {
        // Nothing usable survived (a name of only symbols): the hash alone is a valid
        // name once prefixed with a letter, which DNS-1035 names (Services) need.
        format!("x-{}", hash8(raw))
    } else {
        format!("{head}-{}", hash8(raw))
    }
}

/// Replaces characters that are not `allowed` with `-`, one `-` per run: `a::b` reads
/// better as `a-b` than as `a--b`.
fn replace_invalid(raw: &str, allowed: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut replacing = false;
    for c in raw.chars() {
        if allowed(c) {
            out.push(c);
            replacing = false;
        } else if !replacing {
            out.push('-');
            replacing = true;
        }
    }
    out
}

/// `raw` as a DNS-1123 label of at most `max` characters (`max` ≤ 63).
pub fn dns_label(raw: &str, max: usize) -> String {
    let max = max.min(NAME_MAX);
    let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let out = replace_invalid(&raw.to_ascii_lowercase(), lower_alnum);
    let out = out.trim_matches('-');
    if out == raw && out.len() <= max {
        return out.to_string();
    }
    with_hash(out, raw, max, lower_alnum)
}

/// `raw` as a label value (at most 63 alphanumerics, `-`, `_`, `.`; alphanumeric ends).
pub fn label_value(raw: &str) -> String {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let out = replace_invalid(raw, |c| alnum(c) || matches!(c, '-' | '_' | '.'));
    let out = out.trim_matches(|c: char| !alnum(c));
    if out == raw && out.len() <= LABEL_VALUE_MAX {
        return out.to_string();
    }
    with_hash(out, raw, LABEL_VALUE_MAX, alnum)
}

/// The last path segment of a Rust type name: `my_crate::rl::Trainer` → `Trainer`.
pub fn short_type_name(type_name: &str) -> &str {
    type_name.rsplit("::").next().unwrap_or(type_name)
}

/// The session root's name: `kt-session-<id>`.
pub fn session_root_name(session: &SessionId) -> String {
    format!("kt-session-{session}")
}

/// The stem of an actor's objects: `kt-<session>-<actor>`, at most 56 characters so that
/// `-worker` still fits in 63.
fn actor_stem(session: &SessionId, actor_name: &str) -> String {
    dns_label(
        &format!("kt-{session}-{actor_name}"),
        NAME_MAX - "-worker".len(),
    )
}

/// The pod of an actor: `kt-<session>-<actor>`.
pub fn pod_name(session: &SessionId, actor_name: &str) -> String {
    actor_stem(session, actor_name)
}

/// The pod of an actor's `incarnation`-th worker process: the first is [`pod_name`];
/// after a dead pod (rule S3: it is replaced while restarts are left, and may stay for
/// inspection), `<pod>-r<n>`. The suffix always survives truncation.
pub fn incarnation_pod_name(session: &SessionId, actor_name: &str, incarnation: u32) -> String {
    if incarnation == 0 {
        return pod_name(session, actor_name);
    }
    let suffix = format!("-r{incarnation}");
    let stem = dns_label(
        &format!("kt-{session}-{actor_name}"),
        NAME_MAX - "-worker".len() - suffix.len(),
    );
    format!("{stem}{suffix}")
}

/// The Secret holding an actor's TLS identity and worker config: `<pod>-worker`.
pub fn worker_secret_name(session: &SessionId, actor_name: &str) -> String {
    worker_secret_of_pod(&actor_stem(session, actor_name))
}

/// The worker Secret of the pod named `pod_name` (for a pod found by its labels, whose
/// session and actor are not at hand).
pub fn worker_secret_of_pod(pod_name: &str) -> String {
    format!("{pod_name}-worker")
}

/// The headless Service of a group: `kt-<session>-<group>` (a DNS-1035 label: starts
/// with a letter, which `kt-` guarantees).
pub fn group_service_name(session: &SessionId, group: &str) -> String {
    dns_label(&format!("kt-{session}-g-{group}"), NAME_MAX)
}

/// A group member's hostname under the group's Service: `<group>-<rank>`; rank 0's is
/// what `MASTER_ADDR` points at. The rank always survives truncation.
pub fn member_hostname(group: &str, rank: usize) -> String {
    let rank = format!("-{rank}");
    format!("{}{rank}", dns_label(group, NAME_MAX - rank.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_fit_are_kept() {
        assert_eq!(dns_label("trainer-3", 63), "trainer-3");
        assert_eq!(label_value("Trainer_v2.1"), "Trainer_v2.1");
        assert_eq!(label_value(""), "");
        assert_eq!(short_type_name("my_crate::rl::Trainer"), "Trainer");
    }

    #[test]
    fn changed_names_get_a_stable_hash_suffix() {
        let upper = dns_label("Trainer_A", 63);
        assert!(upper.starts_with("trainer-a-"), "{upper}");
        assert_eq!(upper.len(), "trainer-a-".len() + 8);
        assert_ne!(
            upper,
            dns_label("trainer-a", 63),
            "a changed name cannot collide"
        );
        assert_eq!(upper, dns_label("Trainer_A", 63), "stable");
        assert_eq!(
            label_value("rl::Trainer"),
            format!("rl-Trainer-{}", hash8("rl::Trainer"))
        );
    }

    #[test]
    fn long_names_are_truncated_with_a_hash_and_valid_ends() {
        let long = format!("{}-{}", "a".repeat(60), "b".repeat(60));
        let name = dns_label(&long, 63);
        assert_eq!(name.len(), 63);
        assert!(name.starts_with(&"a".repeat(54)), "{name}");
        assert_ne!(name, dns_label(&format!("{long}c"), 63));
        // A cut that lands on a '-' must not leave it at the end of the kept part.
        let dashy = format!("{}-{}", "a".repeat(53), "b".repeat(20));
        let cut = dns_label(&dashy, 63);
        assert!(!cut.contains("--"), "{cut}");
        let value = label_value(&"x.".repeat(40));
        assert!(value.len() <= 63 && !value.contains(".-"), "{value}");
        assert_eq!(dns_label("::", 63), format!("x-{}", hash8("::")));
    }

    #[test]
    fn object_names_fit_kubernetes_limits() {
        let session = SessionId::new("s1").expect("valid");
        assert_eq!(pod_name(&session, "counter-7"), "kt-s1-counter-7");
        assert_eq!(
            worker_secret_name(&session, "counter-7"),
            "kt-s1-counter-7-worker"
        );
        assert_eq!(session_root_name(&session), "kt-session-s1");
        assert_eq!(group_service_name(&session, "trainers"), "kt-s1-g-trainers");
        let long = "x".repeat(100);
        assert!(pod_name(&session, &long).len() <= 56);
        assert!(worker_secret_name(&session, &long).len() <= 63);
        let host = member_hostname(&long, 1023);
        assert!(host.len() <= 63 && host.ends_with("-1023"), "{host}");
        assert_eq!(member_hostname("trainers", 0), "trainers-0");
    }

    #[test]
    fn session_ids_are_short_and_lowercase() {
        assert!(SessionId::new("").is_err());
        assert!(SessionId::new("a".repeat(17)).is_err());
        assert!(SessionId::new("abc-1").is_err());
        assert_eq!(
            SessionId::new("abc1").map(|s| s.to_string()),
            Ok("abc1".into())
        );
    }
}
