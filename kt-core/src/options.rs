//! Spawn options: everything about *how* an actor runs, as opposed to its constructor's
//! arguments. They travel with the spawn request to whichever [`crate::Placement`]
//! places the actor, so every backend sees the same options.

use serde::{Deserialize, Serialize};

use crate::compute::Compute;
use crate::error::{Error, Result};

/// The mailbox capacity used when the spawn does not set one.
pub const DEFAULT_MAILBOX_CAPACITY: usize = 1024;

/// Who decides when an actor stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lifetime {
    /// The actor stops when the last handle to it is dropped (rule L1).
    #[default]
    Owned,
    /// The actor lives until it is killed, even after its spawner is gone (rule L2).
    Detached,
}

/// A member's place in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// This member's rank, `0..size`.
    pub rank: usize,
    /// How many members the group has.
    pub size: usize,
}

/// How to run one actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpawnOptions {
    /// A name unique among live actors, for `kt::get_actor`.
    pub name: Option<String>,
    /// Owned (default) or detached.
    pub lifetime: Lifetime,
    /// How many times a panicking actor is rebuilt with its original arguments.
    pub max_restarts: u32,
    /// How many `&self` calls may run at once (1 = one call at a time, the default).
    pub max_concurrency: usize,
    /// How many calls the mailbox holds before callers wait.
    pub mailbox_capacity: usize,
    /// Resources and environment.
    pub compute: Compute,
    /// Rank and size when the actor is a member of a group (set by group spawns).
    pub group: Option<GroupMember>,
    /// The group's name, the same for every member (set by group spawns: the name given
    /// to the group, or one made up); container backends name the group's objects by it.
    #[serde(default)]
    pub group_name: Option<String>,
    /// The placement group the actor joins: placed together with (or apart from) the
    /// other members, by backends that place on several machines (Kubernetes: pod
    /// affinity or anti-affinity). Processes of one machine ignore it.
    #[serde(default)]
    pub placement_group: Option<PlacementGroup>,
    /// When the placement lacks the resources asked for right now: wait for them (true)
    /// or fail at once with `Error::InsufficientResources` (false, the default).
    pub wait_for_resources: bool,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            name: None,
            lifetime: Lifetime::Owned,
            max_restarts: 0,
            max_concurrency: 1,
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
            compute: Compute::default(),
            group: None,
            group_name: None,
            placement_group: None,
            wait_for_resources: false,
        }
    }
}

impl SpawnOptions {
    /// Checks the options make sense together; every spawn calls this first.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: &str| Err(Error::invalid_options(message.to_string()));
        if self.lifetime == Lifetime::Detached && self.name.is_none() {
            return invalid(
                "a detached actor needs a name (`.name(\"...\")`): once its handles are dropped, \
                 nothing else could find or kill it",
            );
        }
        if self.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return invalid("an actor name cannot be empty");
        }
        if self.max_concurrency == 0 {
            return invalid("max_concurrency must be at least 1");
        }
        if self.mailbox_capacity == 0 {
            return invalid("mailbox_capacity must be at least 1");
        }
        self.compute.validate()
    }
}

/// A set of actors placed together or apart, like Ray's placement groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementGroup {
    /// The group's name (unique in the driver's session).
    pub name: String,
    /// Together or apart, and how firmly.
    pub strategy: PlacementStrategy,
}

/// How the members of a placement group are spread over nodes (Ray's four strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementStrategy {
    /// On as few nodes as possible; members that do not fit still start elsewhere
    /// (preferred pod affinity).
    Pack,
    /// All on one node, or not at all (required pod affinity): for members that must
    /// share NVLink or a local disk. A member that fits nowhere stays pending.
    StrictPack,
    /// On as many nodes as possible; members still start when nodes run out (preferred
    /// pod anti-affinity).
    Spread,
    /// Each on its own node, or not at all (required pod anti-affinity): for replicas
    /// that must not share a failure.
    StrictSpread,
}

/// Option setters shared by the single and the group spawn builders.
macro_rules! spawn_option_setters {
    () => {
        /// Names the actor (unique among live actors), so `kt::get_actor` finds it.
        /// Group members are named `NAME-RANK`.
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.options.name = Some(name.into());
            self
        }

        /// Makes the actor detached: it outlives its handles until killed. Needs a name.
        pub fn detached(mut self) -> Self {
            self.options.lifetime = $crate::options::Lifetime::Detached;
            self
        }

        /// Rebuilds the actor with its original arguments after a panic, up to `n` times.
        pub fn max_restarts(mut self, n: u32) -> Self {
            self.options.max_restarts = n;
            self
        }

        /// Lets up to `n` calls of `&self` methods run at once.
        pub fn max_concurrency(mut self, n: usize) -> Self {
            self.options.max_concurrency = n;
            self
        }

        /// Sets how many calls the mailbox holds before callers wait.
        pub fn mailbox_capacity(mut self, n: usize) -> Self {
            self.options.mailbox_capacity = n;
            self
        }

        /// Requests resources and a runtime environment.
        pub fn compute(mut self, compute: $crate::compute::Compute) -> Self {
            self.options.compute = compute;
            self
        }

        /// Places the actor in the placement group `name`: with the group's other members
        /// (`Pack`, `StrictPack`) or apart from them (`Spread`, `StrictSpread`).
        pub fn placement_group(
            mut self,
            name: impl Into<String>,
            strategy: $crate::options::PlacementStrategy,
        ) -> Self {
            self.options.placement_group = Some($crate::options::PlacementGroup {
                name: name.into(),
                strategy,
            });
            self
        }

        /// Waits for resources that are taken right now instead of failing the spawn.
        pub fn wait_for_resources(mut self) -> Self {
            self.options.wait_for_resources = true;
            self
        }

        /// Replaces all options at once.
        pub fn options(mut self, options: $crate::options::SpawnOptions) -> Self {
            self.options = options;
            self
        }

        /// Places the actor with `placement` instead of the default placement.
        pub fn on(mut self, placement: std::sync::Arc<dyn $crate::placement::Placement>) -> Self {
            self.placement = Some(placement);
            self
        }
    };
}
pub(crate) use spawn_option_setters;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_actors_need_a_name() {
        let options = SpawnOptions {
            lifetime: Lifetime::Detached,
            ..SpawnOptions::default()
        };
        let err = options.validate().expect_err("must fail");
        assert!(
            err.to_string().contains("a detached actor needs a name"),
            "{err}"
        );
    }

    #[test]
    fn zero_concurrency_or_capacity_is_rejected() {
        let zero_conc = SpawnOptions {
            max_concurrency: 0,
            ..SpawnOptions::default()
        };
        assert!(zero_conc.validate().is_err());
        let zero_cap = SpawnOptions {
            mailbox_capacity: 0,
            ..SpawnOptions::default()
        };
        assert!(zero_cap.validate().is_err());
        assert!(SpawnOptions::default().validate().is_ok());
    }
}
