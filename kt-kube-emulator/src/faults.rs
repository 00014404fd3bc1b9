//! Failure injection state: rules that the scheduler and the kubelet consult.
//! Set only through the [`Emulator`](crate::Emulator)'s injection methods, never by the API.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::Value;

use crate::selector::LabelSelector;

/// One forced-unschedulable rule: pods matching `selector` (all pods when `None`) stay
/// Pending with `message`.
#[derive(Debug, Clone)]
struct UnschedulableRule {
    selector: Option<LabelSelector>,
    message: String,
}

/// Deletes that fail: the next `remaining` DELETE requests for one object.
#[derive(Debug, Clone)]
struct DeleteFailureRule {
    /// The resource's plural (`pods`, `secrets`, ...).
    plural: String,
    namespace: String,
    name: String,
    remaining: u32,
}

/// The active failure rules.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    missing_images: Mutex<BTreeSet<String>>,
    unschedulable: Mutex<Vec<UnschedulableRule>>,
    delete_failures: Mutex<Vec<DeleteFailureRule>>,
}

impl Faults {
    pub fn new(missing_images: &[String]) -> Self {
        Faults {
            missing_images: Mutex::new(missing_images.iter().cloned().collect()),
            unschedulable: Mutex::new(Vec::new()),
            delete_failures: Mutex::new(Vec::new()),
        }
    }

    /// The next `times` deletes of this object fail (replacing any earlier rule for it;
    /// 0 removes the rule).
    pub fn fail_deletes(&self, plural: &str, namespace: &str, name: &str, times: u32) {
        let mut rules = self
            .delete_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        rules.retain(|r| !(r.plural == plural && r.namespace == namespace && r.name == name));
        if times > 0 {
            rules.push(DeleteFailureRule {
                plural: plural.to_string(),
                namespace: namespace.to_string(),
                name: name.to_string(),
                remaining: times,
            });
        }
    }

    /// Whether this delete request must fail (and counts it against its rule).
    pub fn delete_fails(&self, plural: &str, namespace: &str, name: &str) -> bool {
        let mut rules = self
            .delete_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(index) = rules
            .iter()
            .position(|r| r.plural == plural && r.namespace == namespace && r.name == name)
        else {
            return false;
        };
        rules[index].remaining -= 1;
        if rules[index].remaining == 0 {
            rules.remove(index);
        }
        true
    }

    pub fn set_image_missing(&self, image: &str, missing: bool) {
        let mut images = self
            .missing_images
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if missing {
            images.insert(image.to_string());
        } else {
            images.remove(image);
        }
    }

    pub fn image_missing(&self, image: &str) -> bool {
        self.missing_images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(image)
    }

    pub fn add_unschedulable(&self, selector: Option<LabelSelector>, message: String) {
        self.unschedulable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(UnschedulableRule { selector, message });
    }

    pub fn clear_unschedulable(&self) {
        self.unschedulable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The message of the first rule that makes this pod unschedulable.
    pub fn unschedulable_message(&self, pod: &Value) -> Option<String> {
        self.unschedulable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|r| r.selector.as_ref().is_none_or(|s| s.matches_object(pod)))
            .map(|r| r.message.clone())
    }
}
