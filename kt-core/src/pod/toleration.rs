//! [`Toleration`]: lets an actor be placed on nodes with matching taints (GPU pools are
//! commonly tainted so that only workloads asking for GPUs land there).
//!
//! The shape is Kubernetes' toleration, kept backend-neutral: kt-core does not depend on
//! Kubernetes types, and the Kubernetes backend translates it field by field.

use serde::{Deserialize, Serialize};

use super::names::is_qualified_name;

/// How a toleration's key and value match a taint's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TolerationOperator {
    /// The taint's key and value both equal the toleration's.
    Equal,
    /// Any taint with the key (any key, when the key is empty) matches.
    Exists,
}

/// Which scheduling effect of a taint is tolerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaintEffect {
    /// New pods are not scheduled on the node.
    NoSchedule,
    /// The scheduler avoids the node when it can.
    PreferNoSchedule,
    /// Running pods are evicted (after `toleration_seconds`, when set).
    NoExecute,
}

/// Tolerates the node taints it matches. Build with [`Toleration::equal`],
/// [`Toleration::exists`] or [`Toleration::everything`].
///
/// ```
/// use kt_core::{TaintEffect, Toleration};
/// let gpu_pool = Toleration::exists("nvidia.com/gpu").effect(TaintEffect::NoSchedule);
/// assert_eq!(gpu_pool.key, "nvidia.com/gpu");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toleration {
    /// The taint key; empty with [`TolerationOperator::Exists`] matches every taint.
    pub key: String,
    /// How key and value are compared.
    pub operator: TolerationOperator,
    /// The taint value to match (empty with [`TolerationOperator::Exists`]).
    pub value: String,
    /// The effect tolerated; `None` tolerates every effect.
    pub effect: Option<TaintEffect>,
    /// With [`TaintEffect::NoExecute`]: how long the pod stays after the taint appears.
    pub toleration_seconds: Option<i64>,
}

impl Toleration {
    /// Tolerates taints with this key and exactly this value.
    pub fn equal(key: impl Into<String>, value: impl Into<String>) -> Self {
        Toleration {
            key: key.into(),
            operator: TolerationOperator::Equal,
            value: value.into(),
            effect: None,
            toleration_seconds: None,
        }
    }

    /// Tolerates taints with this key, whatever their value.
    pub fn exists(key: impl Into<String>) -> Self {
        Toleration {
            key: key.into(),
            operator: TolerationOperator::Exists,
            value: String::new(),
            effect: None,
            toleration_seconds: None,
        }
    }

    /// Tolerates every taint (an empty key with `Exists`).
    pub fn everything() -> Self {
        Toleration::exists("")
    }

    /// Tolerates only this effect of the matching taints.
    pub fn effect(mut self, effect: TaintEffect) -> Self {
        self.effect = Some(effect);
        self
    }

    /// Stays on a node for `seconds` after a matching `NoExecute` taint appears, then is
    /// evicted. Sets the effect to `NoExecute`, the only one this applies to.
    pub fn for_seconds(mut self, seconds: i64) -> Self {
        self.effect = Some(TaintEffect::NoExecute);
        self.toleration_seconds = Some(seconds);
        self
    }

    /// What is wrong with this toleration, in the words of `Compute::validate`.
    pub(crate) fn problem(&self) -> Option<String> {
        let which = if self.key.is_empty() {
            "a toleration with an empty key".to_string()
        } else {
            format!("toleration '{}'", self.key)
        };
        if !self.key.is_empty() && !is_qualified_name(&self.key) {
            return Some(format!(
                "{which}: the key must be a label-style name like \"nvidia.com/gpu\" or \
                 \"dedicated\""
            ));
        }
        match self.operator {
            TolerationOperator::Equal if self.key.is_empty() => {
                return Some(format!(
                    "{which}: `Equal` needs a key; use `Toleration::everything()` to tolerate \
                     every taint"
                ));
            }
            TolerationOperator::Exists if !self.value.is_empty() => {
                return Some(format!(
                    "{which}: `Exists` matches any value, so the value must be empty; use \
                     `Toleration::equal(key, value)` to match one value"
                ));
            }
            _ => {}
        }
        if self.toleration_seconds.is_some() && self.effect != Some(TaintEffect::NoExecute) {
            return Some(format!(
                "{which}: toleration_seconds only applies to the NoExecute effect; use \
                 `.for_seconds(n)`, which sets it"
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_make_valid_tolerations() {
        assert_eq!(Toleration::equal("dedicated", "ml").problem(), None);
        assert_eq!(Toleration::everything().problem(), None);
        let evict_late = Toleration::exists("node.kubernetes.io/unreachable").for_seconds(30);
        assert_eq!(evict_late.effect, Some(TaintEffect::NoExecute));
        assert_eq!(evict_late.problem(), None);
    }

    #[test]
    fn inconsistent_tolerations_are_explained() {
        let mut exists_with_value = Toleration::exists("k");
        exists_with_value.value = "v".into();
        assert!(
            exists_with_value
                .problem()
                .is_some_and(|p| p.contains("value must be empty"))
        );
        assert!(
            Toleration::equal("", "v")
                .problem()
                .is_some_and(|p| p.contains("needs a key"))
        );
        let mut seconds = Toleration::exists("k").effect(TaintEffect::NoSchedule);
        seconds.toleration_seconds = Some(5);
        assert!(seconds.problem().is_some_and(|p| p.contains("NoExecute")));
        assert!(Toleration::exists("bad key").problem().is_some());
    }
}
