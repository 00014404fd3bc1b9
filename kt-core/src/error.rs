//! The errors a kt user can meet, as one typed enum.
//!
//! Two layers compose: a method's own `Err(E)` is a *value* that travels back inside
//! the reply (`Call<Result<T, E>>` resolves to `kt::Result<Result<T, E>>`), while
//! [`Error`] says what went wrong with the call itself — the actor panicked, died,
//! was never found, or the message could not be encoded. Every variant carries the
//! structured facts a caller needs to decide what to do next, never only a string,
//! and every message ends with what to do about it.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `Result` with kt's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which actor an error is about: its id, its type and, when it has one, its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorLabel {
    /// The process-unique id of the actor (stable across restarts).
    pub id: u64,
    /// The actor's registered type name (see [`crate::Actor::TYPE_NAME`]).
    pub type_name: Cow<'static, str>,
    /// The name given at spawn, if any.
    pub name: Option<String>,
}

impl fmt::Display for ActorLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = self
            .type_name
            .rsplit("::")
            .next()
            .unwrap_or(&self.type_name);
        match &self.name {
            Some(name) => write!(f, "{short} '{name}' (#{})", self.id),
            None => write!(f, "{short}#{}", self.id),
        }
    }
}

/// Why an actor (or one incarnation of it) is gone.
///
/// Taken from what the runtime observed, never parsed from text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DeathCause {
    /// `kill()` was called on the actor.
    Killed,
    /// The actor stopped itself with `Context::stop`.
    Stopped,
    /// Every owning handle was dropped, so the owned actor stopped.
    HandlesDropped,
    /// A method panicked and no restarts were left (or this incarnation was replaced).
    Panicked {
        /// The method that panicked.
        method: String,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// The constructor or `on_start` failed while (re)starting the actor.
    StartFailed {
        /// What the constructor or hook reported.
        message: String,
    },
    /// The runtime that hosted the actor shut down under it.
    RuntimeShutdown,
    /// The actor's process exited on its own with this code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// The actor's process was killed by this signal (9 for `kill -9`, ...).
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// The connection to the actor's process broke and the backend gave up on it.
    ConnectionLost {
        /// What the transport reported.
        message: String,
    },
    /// The kernel killed the actor's container for using more memory than its limit
    /// (Kubernetes' `OOMKilled`).
    OomKilled,
    /// The actor's pod could not be placed on any node (Kubernetes' `Unschedulable`).
    Unschedulable {
        /// The scheduler's own message (`0/3 nodes are available: 3 Insufficient nvidia.com/gpu.`).
        message: String,
    },
    /// The actor's container image could not be pulled (`ErrImagePull`, `ImagePullBackOff`,
    /// `InvalidImageName`).
    ImagePullFailed {
        /// Kubernetes' reason.
        reason: String,
        /// Kubernetes' message (it names the image).
        message: String,
    },
    /// The actor's container keeps crashing and is being restarted with back-off
    /// (`CrashLoopBackOff`).
    CrashLoop {
        /// Kubernetes' message.
        message: String,
    },
    /// The node evicted the actor's pod (node pressure, drain).
    Evicted {
        /// Kubernetes' message.
        message: String,
    },
    /// The scheduler preempted the actor's pod for one of higher priority.
    Preempted {
        /// Kubernetes' message.
        message: String,
    },
    /// The actor's pod was deleted by someone else than this driver.
    PodDeleted,
    /// The actor's container could not be created or started, so its worker never ran:
    /// Kubernetes' `StartError` or `ContainerCannotRun` (the command is not in the image,
    /// or not executable), `CreateContainerError`, `CreateContainerConfigError` or
    /// `RunContainerError`. Restarting would fail the same way.
    ContainerStartFailed {
        /// Kubernetes' reason (`StartError`, ...).
        reason: String,
        /// Kubernetes' message: the container runtime's error, which names the command.
        message: String,
    },
}

impl DeathCause {
    /// What to do about a death of this cause: the end of an [`Error::ActorDied`] message.
    fn advice(&self) -> &'static str {
        match self {
            DeathCause::ContainerStartFailed { .. } => {
                "Restarting it would fail the same way: check the pod's image and the command \
                 that starts your binary in it (`Compute::image`, `Compute::command`, or the \
                 placement's; by default /usr/local/bin/<binary name>), `kubectl describe pod` \
                 shows the same reason, then spawn the actor again"
            }
            _ => {
                "Calls to it fail from now on unless it restarts; spawn a new actor, or use \
                 `max_restarts` to have kt restart it"
            }
        }
    }
}

impl fmt::Display for DeathCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeathCause::Killed => f.write_str("it was killed"),
            DeathCause::Stopped => f.write_str("it stopped itself"),
            DeathCause::HandlesDropped => f.write_str("its last owning handle was dropped"),
            DeathCause::Panicked { method, message } => {
                write!(f, "method `{method}` panicked: {message}")
            }
            DeathCause::StartFailed { message } => write!(f, "it failed to start: {message}"),
            DeathCause::RuntimeShutdown => f.write_str("the runtime hosting it shut down"),
            DeathCause::Exited { code } => write!(f, "its process exited with code {code}"),
            DeathCause::Signaled { signal } => {
                write!(f, "its process was killed by signal {signal}")
            }
            DeathCause::ConnectionLost { message } => {
                write!(f, "the connection to it was lost: {message}")
            }
            DeathCause::OomKilled => {
                f.write_str("its container was OOM-killed (it used more memory than its limit)")
            }
            DeathCause::Unschedulable { message } => {
                write!(f, "its pod cannot be scheduled: {message}")
            }
            DeathCause::ImagePullFailed { reason, message } => {
                write!(f, "its image cannot be pulled ({reason}): {message}")
            }
            DeathCause::CrashLoop { message } => {
                write!(
                    f,
                    "its container keeps crashing (CrashLoopBackOff): {message}"
                )
            }
            DeathCause::Evicted { message } => write!(f, "its pod was evicted: {message}"),
            DeathCause::Preempted { message } => write!(f, "its pod was preempted: {message}"),
            DeathCause::PodDeleted => f.write_str("its pod was deleted"),
            DeathCause::ContainerStartFailed { reason, message } => {
                write!(f, "its container could not start ({reason}): {message}")
            }
        }
    }
}

/// Everything that can go wrong with an actor call, a spawn or a lookup.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// The method panicked while handling this call. The actor then follows its restart policy.
    #[error(
        "actor {actor}: method `{method}` panicked: {message}. The actor restarts if it has \
         restarts left (spawn option `max_restarts`); fix the panic or return an error instead"
    )]
    ActorPanicked {
        /// The actor whose method panicked.
        actor: ActorLabel,
        /// The method that panicked.
        method: String,
        /// The panic payload, when it was a string.
        message: String,
    },

    /// The actor (or the incarnation this call was waiting on) is gone.
    #[error("actor {actor} is gone: {cause}. {}", .cause.advice())]
    ActorDied {
        /// The actor that is gone.
        actor: ActorLabel,
        /// Why it is gone.
        cause: DeathCause,
    },

    /// No actor is registered under this name.
    #[error(
        "no actor is named '{name}'. Check the name, and that the actor was spawned with \
         `.name(\"{name}\")` and is still alive"
    )]
    ActorNotFound {
        /// The name that was looked up.
        name: String,
    },

    /// An actor with this name exists but has another type.
    #[error(
        "actor '{name}' is a `{found}`, not a `{expected}`. Ask `get_actor` for the type it was \
         spawned as"
    )]
    WrongActorType {
        /// The name that was looked up.
        name: String,
        /// The type the caller asked for.
        expected: String,
        /// The type the actor really has.
        found: String,
    },

    /// Another live actor already has this name.
    #[error(
        "an actor named '{name}' already exists. Pick another name, or kill the existing actor \
         first (`kt::get_actor(name)` then `kill()`)"
    )]
    NameTaken {
        /// The name asked for.
        name: String,
    },

    /// No actor type of this name is registered in this binary.
    #[error(
        "no actor type named `{type_name}` is registered in this binary. Annotate the type \
         with #[kt::actor] and make sure the crate that defines it is linked into the binary"
    )]
    UnknownActorType {
        /// The type name asked for.
        type_name: String,
    },

    /// The actor type has no method of this name.
    #[error(
        "actor type `{type_name}` has no method `{method}`. The caller and the actor were \
         probably built from different versions of the code; rebuild both"
    )]
    UnknownMethod {
        /// The actor's type name.
        type_name: String,
        /// The method asked for.
        method: String,
    },

    /// A value could not be turned into bytes.
    #[error(
        "could not encode {what}: {message}. Values that cross actors must serialize with \
         serde; check the type's Serialize impl"
    )]
    Encode {
        /// What was being encoded (arguments, a reply, ...).
        what: String,
        /// The serializer's message.
        message: String,
    },

    /// Bytes could not be turned back into the expected value.
    #[error(
        "could not decode {what}: {message}. The sender and receiver disagree on the type; \
         make sure both run the same build of the code"
    )]
    Decode {
        /// What was being decoded.
        what: String,
        /// The deserializer's message.
        message: String,
    },

    /// The actor's constructor or `on_start` hook failed, so spawn failed.
    #[error(
        "actor {actor} failed to start: {message}. Check the constructor's arguments and its \
         on_start hook"
    )]
    StartFailed {
        /// The actor that failed to start.
        actor: ActorLabel,
        /// What the constructor or hook reported.
        message: String,
    },

    /// The spawn options or compute request are not valid: every problem found, each
    /// saying what is wrong and how to fix it.
    #[error("invalid spawn options: {}", problems.join("; "))]
    InvalidOptions {
        /// What is wrong and how to fix it, one entry per problem.
        problems: Vec<String>,
    },

    /// A message is larger than the transport accepts.
    #[error(
        "a message of {size} bytes is over the limit of {limit} bytes. Send bulk data through \
         the data store or a streamed payload, or raise the limit (KT_MAX_MESSAGE_BYTES)"
    )]
    MessageTooLarge {
        /// The message's size in bytes.
        size: usize,
        /// The largest message accepted.
        limit: usize,
    },

    /// A producer that never waits filled an actor's mailbox and the parking queue beside
    /// it (rule B1): this call was refused, not queued; the calls before it still run.
    #[error(
        "actor {actor} is overloaded: its mailbox is full and {limit} calls already wait \
         beside it, so this call was refused. Await calls (or `Call::sent()`) so that the \
         producer keeps the actor's pace, or raise `mailbox_capacity`"
    )]
    Overloaded {
        /// The actor.
        actor: ActorLabel,
        /// How many calls may wait beside a full mailbox.
        limit: usize,
    },

    /// A peer could not be reached (yet); it is not known to be dead.
    #[error(
        "{target} is unreachable: {message}. It may come back; retry, or check that it is running"
    )]
    Unavailable {
        /// What could not be reached (an actor, a node address).
        target: String,
        /// What the transport reported.
        message: String,
    },

    /// A peer broke the wire protocol (garbage bytes, a truncated frame, another version).
    #[error(
        "protocol error: {message}. The peer sent bytes kt cannot read; make sure both sides run \
         the same build of kt"
    )]
    Protocol {
        /// What was wrong with the bytes.
        message: String,
    },

    /// The machine-wide state directory (names of local-process actors, the machine CA,
    /// detached workers' logs) cannot be used.
    #[error(
        "the kt state directory {path} cannot be used: {message}. It must be a directory \
         owned by you with mode 0700; fix it, remove it, or point KT_STATE_DIR elsewhere"
    )]
    StateDirectory {
        /// The directory.
        path: String,
        /// What is wrong with it.
        message: String,
    },

    /// A backend could not start the process or pod that hosts an actor.
    #[error("could not start a worker for `{type_name}`: {message}")]
    WorkerStartFailed {
        /// The actor type the worker was for.
        type_name: String,
        /// What went wrong.
        message: String,
    },

    /// The placement does not have the resources the spawn asked for.
    #[error(
        "not enough resources for `{type_name}`: asked for {requested}, {available}. Free some \
         (kill actors), ask for less, or spawn with `.wait_for_resources()`"
    )]
    InsufficientResources {
        /// The actor type being spawned.
        type_name: String,
        /// What the spawn asked for.
        requested: String,
        /// What the placement has (free and in total).
        available: String,
    },

    /// A kt operation needs a tokio runtime and none is running on this thread.
    #[error(
        "no tokio runtime is running on this thread. Call kt from inside `#[kt::main]`, \
         `#[tokio::main]` or `#[tokio::test]`"
    )]
    NoRuntime,

    /// The data store has no value under this key.
    #[error(
        "the data store has no value under '{key}'. Check the key (`kt::store::ls` lists \
         them), or wait for its producer with `wait_newer(key, Version::NONE)`"
    )]
    KeyNotFound {
        /// The key asked for.
        key: String,
    },

    /// The version asked for was deleted or dropped by the key's retention.
    #[error(
        "version {version} of '{key}' is gone (removed, or past the key's retention); the \
         versions kept are {kept}. Ask for a kept version, or raise `keep_last` on put"
    )]
    VersionGone {
        /// The key.
        key: String,
        /// The version asked for.
        version: u64,
        /// The versions still kept, as a range ("3..=5") or "none".
        kept: String,
    },

    /// A stored value was read as another kind than it was put as (tensors as a serde
    /// value, say).
    #[error("version {version} of '{key}' holds {holds}: read it with `{read_with}`")]
    WrongValueKind {
        /// The key.
        key: String,
        /// The version.
        version: u64,
        /// What the version holds ("a tensor set (put with `put_tensors`)").
        holds: String,
        /// The reader that fits it (`Entry::tensors()`).
        read_with: String,
    },

    /// The store's memory and disk budgets cannot take this value.
    #[error(
        "the data store is full: {needed} bytes needed, {held} of its {budget}-byte budget \
         held by values that cannot be evicted or spilled. Remove versions (`rm`, \
         `keep_last`), or raise the budget (KT_STORE_MEMORY_BYTES, KT_STORE_DISK_BYTES)"
    )]
    StoreFull {
        /// The bytes the value needs.
        needed: u64,
        /// The budget in bytes (memory plus disk).
        budget: u64,
        /// The bytes held now.
        held: u64,
    },

    /// Every process that held this version is gone, so its bytes are lost.
    #[error(
        "version {version} of '{key}' is lost: its last holder ({holder}) is gone. Put the \
         value again from its producer; values live in the processes that put or fetched \
         them"
    )]
    HolderLost {
        /// The key.
        key: String,
        /// The version.
        version: u64,
        /// The last holder tried.
        holder: String,
    },

    /// A store operation did not complete in time.
    #[error("{operation} did not complete within {waited_ms} ms. {advice}")]
    Timeout {
        /// What was waited for.
        operation: String,
        /// How long it waited.
        waited_ms: u64,
        /// What to do about it.
        advice: String,
    },

    /// No GPU can be used here: no CUDA driver, no device, or no NCCL library.
    #[error("no GPU can be used: {reason}")]
    GpuUnavailable {
        /// What is missing and how to provide it.
        reason: String,
    },

    /// A CUDA or NCCL call failed.
    #[error(
        "{operation} failed: {message}. A CUDA error usually means a bad device index, too \
         little device memory, or a broken driver install (check `nvidia-smi`)"
    )]
    GpuFailed {
        /// The CUDA or NCCL operation.
        operation: String,
        /// The library's error name and text.
        message: String,
    },

    /// The members of a group disagreed about a collective (all-reduce, broadcast): its
    /// kind, root, or buffer length. The group can no longer be used.
    #[error(
        "{operation} failed: {message}. Every member of a group must run the same \
         collectives, in the same order, on buffers of the same length; form a new group to \
         go on"
    )]
    CollectiveMismatch {
        /// The collective, and which round of the group.
        operation: String,
        /// What did not match.
        message: String,
    },
}

impl Error {
    /// [`Error::InvalidOptions`] with one problem.
    pub fn invalid_options(problem: impl Into<String>) -> Error {
        Error::InvalidOptions {
            problems: vec![problem.into()],
        }
    }

    /// True when the error says the target actor is gone (died, was killed or stopped).
    pub fn is_actor_gone(&self) -> bool {
        matches!(self, Error::ActorDied { .. })
    }

    /// The cause of death, when the error says the actor is gone.
    pub fn death_cause(&self) -> Option<&DeathCause> {
        match self {
            Error::ActorDied { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: Option<&str>) -> ActorLabel {
        ActorLabel {
            id: 7,
            type_name: Cow::Borrowed("app::Counter"),
            name: name.map(String::from),
        }
    }

    #[test]
    fn labels_show_short_type_name_and_name() {
        assert_eq!(label(None).to_string(), "Counter#7");
        assert_eq!(label(Some("c")).to_string(), "Counter 'c' (#7)");
    }

    #[test]
    fn errors_say_what_happened_and_what_to_do() {
        let err = Error::ActorDied {
            actor: label(None),
            cause: DeathCause::Killed,
        };
        let text = err.to_string();
        assert!(text.contains("Counter#7 is gone: it was killed"), "{text}");
        assert!(text.contains("spawn a new actor"), "{text}");
        assert!(err.is_actor_gone());
        assert_eq!(err.death_cause(), Some(&DeathCause::Killed));
        // A container that cannot start says why, and that restarting will not help.
        let err = Error::ActorDied {
            actor: label(None),
            cause: DeathCause::ContainerStartFailed {
                reason: "StartError".into(),
                message: "failed to start \"/usr/local/bin/app\": no such file or directory".into(),
            },
        };
        let text = err.to_string();
        assert!(
            text.contains(
                "its container could not start (StartError): failed to start \
                 \"/usr/local/bin/app\": no such file or directory"
            ),
            "{text}"
        );
        assert!(
            text.contains("check the pod's image and the command"),
            "{text}"
        );
        assert!(!text.contains("max_restarts"), "{text}");
    }

    #[test]
    fn errors_round_trip_through_msgpack() {
        let err = Error::ActorPanicked {
            actor: label(Some("x")),
            method: "boom".into(),
            message: "oh no".into(),
        };
        let bytes = rmp_serde::to_vec(&err).expect("encode");
        let back: Error = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(back, err);
    }
}
