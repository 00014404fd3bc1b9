//! Label selectors (`?labelSelector=`) and field selectors (`?fieldSelector=`).
//!
//! Label selector grammar, as the API server accepts it: comma-separated requirements, each
//! `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists) or `!k` (absent).

use serde_json::Value;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set, found {rest:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn valid_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!("invalid label key {key:?}"));
    }
    Ok(key.to_string())
}

impl LabelSelector {
    /// Parses the query-string form.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("empty requirement in selector {s:?}"));
            }
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotIn(valid_key(k)?, vec![v.trim().to_string()])
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::In(valid_key(k)?, vec![v.trim().to_string()])
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::In(valid_key(k)?, vec![v.trim().to_string()])
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::DoesNotExist(valid_key(k)?)
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Requirement::NotIn(valid_key(k)?, parse_set(rest)?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Requirement::In(valid_key(k)?, parse_set(rest)?)
            } else {
                Requirement::Exists(valid_key(part)?)
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Parses the object form of a selector (`{matchLabels, matchExpressions}`, as in
    /// affinity terms); `{}` selects everything.
    pub fn from_json(selector: &Value) -> Result<Self, String> {
        if !selector.is_object() {
            return Err(format!(
                "a label selector must be an object, not {selector}"
            ));
        }
        let mut reqs = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("label {k:?} is not a string"))?;
                reqs.push(Requirement::In(k.clone(), vec![v.to_string()]));
            }
        }
        for e in selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            reqs.push(expression(e)?);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether `labels` (a JSON object of strings, or null) satisfies every requirement.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|req| match req {
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| vs.iter().all(|x| x != v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }

    /// Whether the object's `metadata.labels` match.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(object.pointer("/metadata/labels"))
    }
}

/// One `{key, operator, values}` expression; used by label selectors and node affinity.
fn expression(e: &Value) -> Result<Requirement, String> {
    let key = e
        .get("key")
        .and_then(Value::as_str)
        .ok_or("expression without key")?
        .to_string();
    let values: Vec<String> = e
        .get("values")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    match e.get("operator").and_then(Value::as_str) {
        Some("In") => Ok(Requirement::In(key, values)),
        Some("NotIn") => Ok(Requirement::NotIn(key, values)),
        Some("Exists") => Ok(Requirement::Exists(key)),
        Some("DoesNotExist") => Ok(Requirement::DoesNotExist(key)),
        other => Err(format!("unsupported operator {other:?}")),
    }
}

/// Whether node labels satisfy a pod's `requiredDuringSchedulingIgnoredDuringExecution`
/// node affinity (terms are ORed, expressions inside a term ANDed). `Gt`/`Lt` compare integers.
pub(crate) fn node_affinity_matches(affinity: Option<&Value>, node_labels: &Value) -> bool {
    let Some(terms) = affinity
        .and_then(|a| {
            a.pointer(
                "/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms",
            )
        })
        .and_then(Value::as_array)
    else {
        return true;
    };
    terms.iter().any(|term| {
        let exprs = term.get("matchExpressions").and_then(Value::as_array);
        exprs.is_none_or(|exprs| {
            exprs.iter().all(|e| {
                let op = e.get("operator").and_then(Value::as_str);
                if matches!(op, Some("Gt") | Some("Lt")) {
                    let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                    let have = node_labels
                        .get(key)
                        .and_then(Value::as_str)
                        .and_then(|v| v.parse::<i64>().ok());
                    let want = e
                        .pointer("/values/0")
                        .and_then(Value::as_str)
                        .and_then(|v| v.parse::<i64>().ok());
                    return match (have, want, op) {
                        (Some(h), Some(w), Some("Gt")) => h > w,
                        (Some(h), Some(w), _) => h < w,
                        _ => false,
                    };
                }
                expression(e).is_ok_and(|r| LabelSelector(vec![r]).matches(Some(node_labels)))
            })
        })
    })
}

/// A parsed field selector: `path=value`, `path==value` or `path!=value`, comma-separated.
/// Paths are dotted JSON paths (`metadata.name`, `spec.nodeName`, `status.phase`); the real
/// server allows only a few per kind, the emulator allows any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses the query-string form.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, equal, value) = if let Some((p, v)) = part.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = part.split_once("==") {
                (p, true, v)
            } else if let Some((p, v)) = part.split_once('=') {
                (p, true, v)
            } else {
                return Err(format!("invalid field selector {part:?}"));
            };
            reqs.push((path.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    /// Whether the object satisfies every requirement; a missing field reads as "".
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, want)| {
            let pointer = format!("/{}", path.replace('.', "/"));
            let have = match object.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (have == *want) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).expect("a valid selector")
    }

    #[test]
    fn equality_forms() {
        let labels = json!({"app": "web", "tier": "front"});
        assert!(sel("app=web").matches(Some(&labels)));
        assert!(sel("app==web,tier=front").matches(Some(&labels)));
        assert!(!sel("app!=web").matches(Some(&labels)));
        assert!(sel("app!=db").matches(Some(&labels)));
        assert!(sel("missing!=x").matches(Some(&labels)));
        assert!(sel("").matches(None));
    }

    #[test]
    fn set_forms_and_existence() {
        let labels = json!({"env": "prod", "gpu": "yes"});
        assert!(sel("env in (prod, staging)").matches(Some(&labels)));
        assert!(!sel("env notin (prod,staging)").matches(Some(&labels)));
        assert!(sel("env notin (dev),gpu").matches(Some(&labels)));
        assert!(!sel("!gpu").matches(Some(&labels)));
        assert!(sel("!cpu").matches(Some(&labels)));
        assert!(!sel("cpu").matches(None));
    }

    #[test]
    fn object_form_ands_labels_and_expressions() {
        let s = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
        }))
        .expect("valid");
        assert!(s.matches(Some(&json!({"app": "web", "tier": "front"}))));
        assert!(!s.matches(Some(&json!({"app": "web", "tier": "db"}))));
        assert!(!s.matches(Some(&json!({"tier": "front"}))));
        let everything = LabelSelector::from_json(&json!({})).expect("valid");
        assert!(everything.matches(None));
        assert!(LabelSelector::from_json(&json!(null)).is_err());
    }

    #[test]
    fn malformed_selectors_are_errors() {
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a=b,,c").is_err());
        assert!(LabelSelector::parse("=x").is_err());
    }

    #[test]
    fn node_affinity_terms() {
        let node = json!({"zone": "a", "gen": "5"});
        let affinity = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
            {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}
        ]}}});
        assert!(node_affinity_matches(Some(&affinity), &node));
        assert!(node_affinity_matches(None, &node));
        let strict = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}}});
        assert!(!node_affinity_matches(Some(&strict), &node));
    }

    #[test]
    fn field_selectors() {
        let pod =
            json!({"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Running"}});
        let f = FieldSelector::parse("metadata.name=p,status.phase!=Failed").expect("valid");
        assert!(f.matches(&pod));
        assert!(
            !FieldSelector::parse("metadata.name==q")
                .expect("valid")
                .matches(&pod)
        );
        assert!(
            FieldSelector::parse("spec.nodeName=")
                .expect("valid")
                .matches(&pod)
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
