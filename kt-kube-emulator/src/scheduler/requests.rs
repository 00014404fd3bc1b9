//! What a pod asks of a node: its resource requests, in milli-units.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::quantity::parse_milli;

/// Resource name → milli-units.
pub(super) type Amounts = BTreeMap<String, i128>;

/// A pod's requests: per container, `requests` or else `limits`; plus one `pods` slot.
pub(super) fn requests(pod: &Value) -> Amounts {
    let mut total = Amounts::new();
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut mine: BTreeMap<String, i128> = BTreeMap::new();
        for field in ["limits", "requests"] {
            if let Some(map) = c
                .pointer(&format!("/resources/{field}"))
                .and_then(Value::as_object)
            {
                for (k, v) in map {
                    if let Some(q) = v
                        .as_str()
                        .and_then(parse_milli)
                        .or_else(|| v.as_i64().map(|n| i128::from(n) * 1000))
                    {
                        mine.insert(k.clone(), q);
                    }
                }
            }
        }
        for (k, v) in mine {
            *total.entry(k).or_default() += v;
        }
    }
    *total.entry("pods".into()).or_default() += 1000;
    total
}

/// A node's allocatable quantities (those that parse) in milli-units.
pub(super) fn amounts(quantities: &BTreeMap<String, String>) -> Amounts {
    quantities
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), parse_milli(v)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_fall_back_to_limits() {
        let pod = json!({"spec": {"containers": [
            {"resources": {"limits": {"cpu": "2", "nvidia.com/gpu": "1"}, "requests": {"cpu": "500m"}}},
            {"resources": {"limits": {"memory": "1Gi"}}}
        ]}});
        let r = requests(&pod);
        assert_eq!(r.get("cpu"), Some(&500));
        assert_eq!(r.get("nvidia.com/gpu"), Some(&1000));
        assert_eq!(r.get("memory"), Some(&(1000 * (1 << 30))));
        assert_eq!(r.get("pods"), Some(&1000));
    }
}
