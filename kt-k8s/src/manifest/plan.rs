//! The plan: what the Kubernetes backend has decided about one actor before any object
//! exists — its session, names, image, compute, group rank, placement group and owner.
//! The builders in this module's siblings turn a plan into objects; they never talk to
//! the API server, so every shape can be tested and printed (`kt manifest`) offline.

use kt_core::Compute;
use serde::{Deserialize, Serialize};

use super::names::SessionId;

/// Everything needed to build one actor's pod (and its Secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorPod {
    /// The driver session that spawns the actor.
    pub session: SessionId,
    /// The namespace of the pod and of everything that belongs to it.
    pub namespace: String,
    /// The actor's name: the name given at spawn, or one the backend made up
    /// (`counter-7`); group members are `<group>-<rank>`.
    pub actor_name: String,
    /// The actor's registered type name (`my_crate::Trainer`).
    pub type_name: String,
    /// The image with the user's binary, used unless `compute.pod.image` names another.
    pub image: String,
    /// The command that starts the user's binary, used unless `compute.pod.command` replaces it.
    pub command: Vec<String>,
    /// What the actor asked for.
    pub compute: Compute,
    /// The UDP port the worker serves QUIC on.
    pub port: u16,
    /// Rank and size when the actor is a group member.
    pub group: Option<GroupRank>,
    /// The placement group the actor belongs to, if any.
    pub placement: Option<PlacementGroup>,
    /// Who owns the pod: the session (garbage-collected with it) or nobody (detached).
    pub owner: Owner,
}

/// A group member's place in its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRank {
    /// The group's name (unique in the session); names its headless Service.
    pub group: String,
    /// This member's rank, `0..world_size`.
    pub rank: usize,
    /// How many members the group has.
    pub world_size: usize,
    /// The TCP port rank 0 listens on for the torch.distributed rendezvous (`MASTER_PORT`).
    pub master_port: u16,
}

// Placement groups are a spawn option, defined with the other options in kt-core.
pub use kt_core::{PlacementGroup, PlacementStrategy};

/// Who owns an actor's objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Owner {
    /// The session root: deleting it garbage-collects the actor's objects.
    Session(SessionRoot),
    /// Nobody: a detached actor outlives its session until it is killed.
    Detached,
}

/// The session root as created in the cluster: its name and the uid the API server gave
/// it (an owner reference needs both). See [`super::session_owner`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRoot {
    /// The root object's name (`kt-session-<id>`).
    pub name: String,
    /// The root object's uid.
    pub uid: String,
}

/// The bytes of one worker's Secret: its TLS identity and its config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkerFiles {
    /// The session CA's certificate (PEM).
    pub ca_pem: Vec<u8>,
    /// The worker's certificate (PEM).
    pub cert_pem: Vec<u8>,
    /// The worker's private key (PEM).
    pub key_pem: Vec<u8>,
    /// The worker's config (MessagePack).
    pub config: Vec<u8>,
}
