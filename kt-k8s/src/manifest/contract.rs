//! The contract between kt and the objects it creates: label and annotation keys, the
//! environment a worker finds, and the paths and ports it uses. The driver selects and
//! watches by these labels, workers read these variables, and operators grep for them,
//! so they are all defined here, once.
//!
//! kt's own keys use the `kt.dev/` prefix; the recommended `app.kubernetes.io/` labels
//! are set too, so generic tooling (dashboards, `kubectl get -l`) understands the pods.

/// `app.kubernetes.io/managed-by`: always [`MANAGED_BY`].
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "kt";
/// `app.kubernetes.io/name`: the actor's type, short form (`Trainer`), sanitized.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/component`: `actor`, `actor-group` or `session`.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/instance`: the actor's name, sanitized.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";

/// `kt.dev/session`: the driver session an object belongs to.
pub const LABEL_SESSION: &str = "kt.dev/session";
/// `kt.dev/actor`: the actor's name, sanitized (the full name is in [`ANNOTATION_ACTOR_NAME`]).
pub const LABEL_ACTOR: &str = "kt.dev/actor";
/// `kt.dev/group`: the group a member belongs to, sanitized; the group Service selects on it.
pub const LABEL_GROUP: &str = "kt.dev/group";
/// `kt.dev/rank`: a group member's rank, in decimal.
pub const LABEL_RANK: &str = "kt.dev/rank";
/// `kt.dev/placement-group`: the placement group, sanitized; affinity terms select on it.
pub const LABEL_PLACEMENT_GROUP: &str = "kt.dev/placement-group";

/// `kt.dev/actor-name`: the actor's full name, unsanitized.
pub const ANNOTATION_ACTOR_NAME: &str = "kt.dev/actor-name";
/// `kt.dev/type-name`: the actor's full registered type name.
pub const ANNOTATION_TYPE_NAME: &str = "kt.dev/type-name";
/// `kt.dev/lifetime`: `owned` (garbage-collected with the session) or `detached`.
pub const ANNOTATION_LIFETIME: &str = "kt.dev/lifetime";
/// `kt.dev/world-size`: a group's size, on each member.
pub const ANNOTATION_WORLD_SIZE: &str = "kt.dev/world-size";

/// Kueue's label naming the local queue that admits a pod.
pub const LABEL_KUEUE_QUEUE: &str = "kueue.x-k8s.io/queue-name";
/// Kueue's label that makes the members of a group one workload (admitted all at once).
pub const LABEL_KUEUE_POD_GROUP: &str = "kueue.x-k8s.io/pod-group-name";
/// Kueue's annotation: how many pods the pod group has.
pub const ANNOTATION_KUEUE_POD_GROUP_COUNT: &str = "kueue.x-k8s.io/pod-group-total-count";

/// `KT_WORKER=1`: starts the user's binary in worker mode (see `kt_transport::worker`).
pub const ENV_WORKER: &str = "KT_WORKER";
/// `KT_WORKER_DIR`: where the worker reads its config and TLS identity ([`WORKER_DIR`]).
pub const ENV_WORKER_DIR: &str = "KT_WORKER_DIR";
/// The pod's IP, from the downward API: the worker binds and advertises it.
pub const ENV_POD_IP: &str = "POD_IP";
/// The pod's name, from the downward API.
pub const ENV_POD_NAME: &str = "POD_NAME";
/// The pod's namespace, from the downward API.
pub const ENV_POD_NAMESPACE: &str = "POD_NAMESPACE";
/// torchrun's variables, set on group members: rank, size, the local ones (one worker
/// per pod) and rank 0's address and port for the rendezvous.
pub const ENV_TORCHRUN: [&str; 6] = [
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
];

/// Where the worker Secret is mounted, read-only. Its files are named below.
pub const WORKER_DIR: &str = "/var/run/kt";
/// The session CA certificate (PEM), in the worker Secret.
pub const FILE_CA: &str = "ca.pem";
/// The worker's certificate (PEM), in the worker Secret.
pub const FILE_CERT: &str = "tls.crt";
/// The worker's private key (PEM), in the worker Secret; never in the environment.
pub const FILE_KEY: &str = "tls.key";
/// The worker's config (MessagePack), in the worker Secret.
pub const FILE_CONFIG: &str = "worker.msgpack";

/// The name of the actor's container in its pod (`kubectl logs POD -c actor`).
pub const CONTAINER_NAME: &str = "actor";
/// The name of the container port the worker serves QUIC on (UDP).
pub const PORT_NAME: &str = "kt-quic";
/// The name of the worker Secret's volume.
pub const WORKER_VOLUME: &str = "kt-worker";
