//! Where the scheduler may put an actor: tolerations from `Compute`, and pod affinity or
//! anti-affinity from the actor's placement group.
//!
//! Placement groups follow Ray's strategies. `Pack` and `Spread` are *preferred* terms
//! (weight 100): the scheduler packs or spreads while it can and still starts every
//! member when it cannot, which is Ray's default and keeps a group from sitting pending
//! because one node is full. `StrictPack` and `StrictSpread` are *required* terms, for
//! when co-location (NVLink, a shared local disk) or separation (no shared failure) is a
//! matter of correctness. A strictly packed group's first member can still schedule: the
//! scheduler lets a pod that matches its own required affinity term start when no other
//! pod matches yet.
//!
//! The terms select on the session and the placement-group label, so two sessions'
//! groups of the same name never attract or repel each other.

use k8s_openapi::api::core::v1::{
    Affinity, PodAffinity, PodAffinityTerm, PodAntiAffinity, Toleration, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kt_core::{TaintEffect, TolerationOperator};

use super::contract::{LABEL_PLACEMENT_GROUP, LABEL_SESSION};
use super::names::{SessionId, label_value};
use super::plan::{PlacementGroup, PlacementStrategy};

/// The node label that makes "the same node" the topology domain.
const HOSTNAME_TOPOLOGY: &str = "kubernetes.io/hostname";

/// A `kt_core::Toleration` as Kubernetes spells it.
pub(crate) fn toleration(t: &kt_core::Toleration) -> Toleration {
    let effect = t.effect.map(|e| {
        match e {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
        .to_string()
    });
    let operator = match t.operator {
        TolerationOperator::Equal => "Equal",
        TolerationOperator::Exists => "Exists",
    };
    Toleration {
        key: (!t.key.is_empty()).then(|| t.key.clone()),
        operator: Some(operator.to_string()),
        value: (!t.value.is_empty()).then(|| t.value.clone()),
        effect,
        toleration_seconds: t.toleration_seconds,
    }
}

/// The affinity that places a placement group's members together or apart.
pub(crate) fn placement_affinity(session: &SessionId, group: &PlacementGroup) -> Affinity {
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(
                [
                    (LABEL_SESSION.to_string(), session.to_string()),
                    (LABEL_PLACEMENT_GROUP.to_string(), label_value(&group.name)),
                ]
                .into(),
            ),
            ..LabelSelector::default()
        }),
        topology_key: HOSTNAME_TOPOLOGY.into(),
        ..PodAffinityTerm::default()
    };
    let preferred = |term: PodAffinityTerm| {
        Some(vec![WeightedPodAffinityTerm {
            pod_affinity_term: term,
            weight: 100,
        }])
    };
    match group.strategy {
        PlacementStrategy::Pack => Affinity {
            pod_affinity: Some(PodAffinity {
                preferred_during_scheduling_ignored_during_execution: preferred(term),
                ..PodAffinity::default()
            }),
            ..Affinity::default()
        },
        PlacementStrategy::StrictPack => Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term]),
                ..PodAffinity::default()
            }),
            ..Affinity::default()
        },
        PlacementStrategy::Spread => Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: preferred(term),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        },
        PlacementStrategy::StrictSpread => Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term]),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_translate_field_by_field() {
        let t = toleration(&kt_core::Toleration::exists("nvidia.com/gpu").for_seconds(30));
        assert_eq!(t.key.as_deref(), Some("nvidia.com/gpu"));
        assert_eq!(t.operator.as_deref(), Some("Exists"));
        assert_eq!(t.value, None);
        assert_eq!(t.effect.as_deref(), Some("NoExecute"));
        assert_eq!(t.toleration_seconds, Some(30));
        let all = toleration(&kt_core::Toleration::everything());
        assert_eq!((all.key, all.operator.as_deref()), (None, Some("Exists")));
    }

    #[test]
    fn each_strategy_sets_one_term_of_the_right_kind() {
        let session = SessionId::new("s").expect("valid");
        let group = |strategy| PlacementGroup {
            name: "pg".into(),
            strategy,
        };
        let pack = placement_affinity(&session, &group(PlacementStrategy::Pack));
        let preferred = pack
            .pod_affinity
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution)
            .expect("preferred affinity");
        let term = &preferred[0].pod_affinity_term;
        assert_eq!(term.topology_key, HOSTNAME_TOPOLOGY);
        let labels = term
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref());
        assert_eq!(
            labels.map(|l| l[LABEL_PLACEMENT_GROUP].as_str()),
            Some("pg")
        );
        assert!(pack.pod_anti_affinity.is_none());

        let strict = placement_affinity(&session, &group(PlacementStrategy::StrictPack));
        assert!(strict.pod_affinity.is_some_and(|a| {
            a.required_during_scheduling_ignored_during_execution
                .is_some()
        }));
        let spread = placement_affinity(&session, &group(PlacementStrategy::Spread));
        assert!(spread.pod_affinity.is_none());
        assert!(spread.pod_anti_affinity.is_some_and(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .is_some()
        }));
        let apart = placement_affinity(&session, &group(PlacementStrategy::StrictSpread));
        assert!(apart.pod_anti_affinity.is_some_and(|a| {
            a.required_during_scheduling_ignored_during_execution
                .is_some()
        }));
    }
}
