//! [`Kubernetes`]: the placement that runs each actor in a pod.
//!
//! A spawn creates the actor's worker Secret (its config and TLS identity, mounted as
//! files) and its pod (plus, for a group, the group's headless Service), watches the pod
//! until it is ready — showing progress — then dials the worker on the pod's IP and
//! attaches to it (see `kt_transport::worker::dialed`). From then on calls go straight to the
//! pod over QUIC with mutual TLS. The pod keeps being watched: a status that means the
//! actor is gone (OOM-killed, evicted, preempted, deleted, crashed) reaches every waiting
//! caller as `ActorDied { cause }` with Kubernetes' own reason.
//!
//! Lifetime: owned actors' objects point at the session root (a ConfigMap), so deleting
//! it — [`Kubernetes::shutdown`], or `kt down` — garbage-collects them; their workers also
//! exit when the driver's connection goes. `kill()` deletes the actor's pod and Secret,
//! retrying failed deletes with back-off; one that still fails is logged with
//! `tracing::warn!` and the pod is found by lookups again ([`Kubernetes::deletions_settled`]
//! waits for deletes in flight). A failed actor's pod is kept for inspection until the
//! session ends (see the crate docs); its Secret goes at once. Detached actors have no
//! owner and live until killed; another driver finds them by name with `kt::get_actor`,
//! through their pods' labels. Every driver of a namespace shares one CA, kept in the
//! Secret `kt-ca`.

mod ca;
mod pod_state;
mod progress;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kt_core::backend::EncodedRoute;
use kt_core::backend::Placed;
use kt_core::handle_wire::HandleAddress;
use kt_core::registry::ActorType;
use kt_core::{ActorLabel, DeathCause, ErasedActor, Error, Lifetime, Placement, SpawnRequest};
use kt_transport::RemoteRoute;
use kt_transport::worker::dialed;
use kt_transport::worker::supervision::{StartIncarnation, supervised};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

pub use pod_state::{PodState, pod_state};

use crate::manifest::{
    ANNOTATION_ACTOR_NAME, ANNOTATION_TYPE_NAME, ActorPod, GroupRank, LABEL_ACTOR,
    LABEL_MANAGED_BY, MANAGED_BY, Owner, SessionId, SessionRoot, WorkerFiles, actor_pod_named,
    dns_label, group_service, incarnation_pod_name, label_value, session_owner, session_root,
    short_type_name, worker_secret_named, worker_secret_of_pod,
};
use progress::Progress;

/// The UDP port workers listen on, unless set otherwise.
pub const DEFAULT_PORT: u16 = 7070;

/// The TCP port rank 0 of a group offers for `torch.distributed` (`MASTER_PORT`).
pub const MASTER_PORT: u16 = 29500;

/// `kt.dev/actor-id`: the actor's id, written on its pod once its worker reported in, so
/// that another driver can address it.
pub const ANNOTATION_ACTOR_ID: &str = "kt.dev/actor-id";

/// How long a pod may take to become ready (image pulls included).
const READY_TIMEOUT: Duration = Duration::from_secs(600);

/// How long attaching to a ready pod's worker may take (it binds its port right after
/// the process starts).
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the stages of one spawn took: what `kt` spends and what Kubernetes does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnTiming {
    /// The actor's name.
    pub actor: String,
    /// From creating the pod to the pod being ready (scheduling, image pull, start).
    pub until_ready: Duration,
    /// From the pod being ready to the actor being attached: dialing the worker and its
    /// `Hello` (a first call adds one round trip).
    pub ready_to_attached: Duration,
}

/// How many recent spawn timings a placement keeps.
const TIMINGS_KEPT: usize = 64;

/// Builds a [`Kubernetes`] placement.
#[derive(Debug, Clone, Default)]
pub struct KubernetesBuilder {
    kubeconfig: Option<PathBuf>,
    namespace: Option<String>,
    image: Option<String>,
    command: Option<Vec<String>>,
    port: Option<u16>,
    reach: Option<Reach>,
    driver_address: Option<std::net::IpAddr>,
    quiet: bool,
}

/// How a driver reaches its actors' pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Straight to the pod's IP: for a driver on the pod network (inside the cluster).
    Direct,
    /// Through the API server's port-forward, QUIC carried over the forwarded TCP stream
    /// (see `kt_transport::wire::stream_socket`): for a driver outside the cluster (a laptop,
    /// a devbox). Actors in pods still call each other directly.
    PortForward,
}

impl Reach {
    /// `Direct` inside a pod (the API server's address is in the environment there),
    /// `PortForward` elsewhere.
    pub fn detect() -> Reach {
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            Reach::Direct
        } else {
            Reach::PortForward
        }
    }
}

impl KubernetesBuilder {
    /// Uses this kubeconfig file (otherwise `KUBECONFIG`, `~/.kube/config`, or the
    /// in-cluster service account, as kubectl does).
    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// Places actors in this namespace (otherwise the kubeconfig context's).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The image that holds this program, for actors whose `Compute` names none
    /// (otherwise `KT_IMAGE`).
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// The command that starts this program in the image (otherwise
    /// `/usr/local/bin/<this binary's file name>`).
    pub fn command(mut self, command: Vec<String>) -> Self {
        self.command = Some(command);
        self
    }

    /// Pods run this very binary, at its path on this machine, with the worker arguments
    /// of a test binary: for development clusters that mount the build directory, and for
    /// tests against the API-server emulator.
    pub fn this_binary(mut self) -> kt_core::Result<Self> {
        self.command = Some(kt_transport::worker_command()?);
        Ok(self)
    }

    /// The UDP port workers listen on (default [`DEFAULT_PORT`]).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// How to reach the pods (otherwise [`Reach::detect`]).
    pub fn reach(mut self, reach: Reach) -> Self {
        self.reach = Some(reach);
        self
    }

    /// The address this driver's node listens on, one that pods can route to: then actors
    /// in pods can call actors that live in the driver (handles passed to them). Without it
    /// the node binds `KT_NODE_IP`, else `POD_IP`, else, inside a pod, the pod's address,
    /// else `127.0.0.1` (fine when nothing in a pod calls back into the driver).
    pub fn driver_address(mut self, ip: std::net::IpAddr) -> Self {
        self.driver_address = Some(ip);
        self
    }

    /// No progress output.
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Connects to the cluster, loads (or creates) the namespace's CA and makes this
    /// process's node use it. Call it before the first spawn of any placement.
    pub async fn connect(self) -> kt_core::Result<Kubernetes> {
        let unavailable = |message: String| Error::Unavailable {
            target: "the Kubernetes API server".into(),
            message,
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    unavailable(format!("cannot read kubeconfig {}: {e}", path.display()))
                })?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .map_err(|e| unavailable(format!("kubeconfig {}: {e}", path.display())))?
            }
            None => kube::Config::infer().await.map_err(|e| {
                unavailable(format!(
                    "no cluster configured ({e}); set KUBECONFIG or run inside a pod"
                ))
            })?,
        };
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = client_without_nagle(config).map_err(|e| unavailable(e.to_string()))?;
        let ca = ca::namespace_ca(&client, &namespace).await?;
        kt_transport::use_ca(ca)?;
        if let Some(ip) = self.driver_address {
            kt_transport::use_address(ip)?;
        }
        let image = self
            .image
            .or_else(|| std::env::var("KT_IMAGE").ok())
            .unwrap_or_default();
        let command = match self.command {
            Some(command) => command,
            None => vec![default_binary_path()?],
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        Ok(Kubernetes {
            inner: Arc::new(Inner {
                client,
                namespace,
                session: new_session_id()?,
                image,
                command,
                port: self.port.unwrap_or(DEFAULT_PORT),
                root: tokio::sync::OnceCell::new(),
                next: AtomicU64::new(1),
                progress: Progress::new(self.quiet),
                timings: std::sync::Mutex::new(std::collections::VecDeque::new()),
                killed: Arc::default(),
                deletions: Deletions::default(),
                kept: std::sync::Mutex::new(std::collections::HashSet::new()),
                closing: std::sync::atomic::AtomicBool::new(false),
                reach: self.reach.unwrap_or_else(Reach::detect),
                forwards: std::sync::Mutex::new(std::collections::HashMap::new()),
                runtime,
            }),
        })
    }
}

/// A kube client like `Client::try_from(config)`, but whose TCP connections send small
/// writes at once. Calls from outside the cluster travel through port-forwards on these
/// connections, a few small QUIC packets at a time; with Nagle's algorithm each would
/// wait for the previous one's acknowledgement (tens of milliseconds, delayed ACKs).
fn client_without_nagle(config: kube::Config) -> Result<Client, kube::Error> {
    use kube::client::ConfigExt;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config.rustls_https_connector_with_connector(http)?;
    let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}

fn default_binary_path() -> kt_core::Result<String> {
    let exe = std::env::current_exe().map_err(|e| {
        Error::invalid_options(format!(
            "cannot find this binary's name ({e}); set the placement's command"
        ))
    })?;
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "app".into());
    Ok(format!("/usr/local/bin/{name}"))
}

/// A session id nobody else in the namespace uses: 10 random lowercase characters.
fn new_session_id() -> kt_core::Result<SessionId> {
    let mut bytes = [0u8; 10];
    kt_transport::wire::tls::random_bytes(&mut bytes)?;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let id: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    SessionId::new(id)
}

/// Places actors in pods of one namespace, for one driver session.
#[derive(Clone)]
pub struct Kubernetes {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Kubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubernetes")
            .field("namespace", &self.inner.namespace)
            .field("session", &self.inner.session.as_str())
            .finish()
    }
}

struct Inner {
    client: Client,
    namespace: String,
    session: SessionId,
    image: String,
    command: Vec<String>,
    port: u16,
    root: tokio::sync::OnceCell<SessionRoot>,
    next: AtomicU64,
    progress: Progress,
    timings: std::sync::Mutex<std::collections::VecDeque<SpawnTiming>>,
    /// Pods of actors this driver killed whose deletion may not have reached the API
    /// server yet: lookups and name checks must not find them.
    killed: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Deletes of pods and Secrets in flight (`kill()`, cleanup after an actor's end).
    deletions: Deletions,
    /// Pods of this session whose actors failed, kept for inspection until the session
    /// ends (or a new actor of the same name replaces them).
    kept: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Set by `shutdown()`: pods that die from now on are not replaced (rule S3 ends with
    /// the session).
    closing: std::sync::atomic::AtomicBool,
    /// How this driver reaches pods.
    reach: Reach,
    /// Live port-forwards, by pod.
    forwards: std::sync::Mutex<std::collections::HashMap<String, kube::api::Portforwarder>>,
    runtime: tokio::runtime::Handle,
}

impl Kubernetes {
    /// A builder; [`KubernetesBuilder::connect`] makes the placement.
    pub fn builder() -> KubernetesBuilder {
        KubernetesBuilder::default()
    }

    /// Connects with the default kubeconfig (see [`KubernetesBuilder::kubeconfig`]).
    pub async fn connect() -> kt_core::Result<Kubernetes> {
        Kubernetes::builder().connect().await
    }

    /// This driver's session: every object it creates carries it (`kt.dev/session`).
    pub fn session(&self) -> &SessionId {
        &self.inner.session
    }

    /// The namespace actors are placed in.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// How the most recent spawns' time was spent, oldest first (at most 64).
    pub fn recent_spawns(&self) -> Vec<SpawnTiming> {
        let timings = self.inner.timings.lock().unwrap_or_else(|e| e.into_inner());
        timings.iter().cloned().collect()
    }

    /// Waits until every delete this placement started — by `kill()` on its actors' handles,
    /// or cleaning up after an actor's end — has succeeded or given up. Failed deletes are
    /// retried with back-off; one that gave up was logged (`tracing::warn!`) and its pod is
    /// found again by name lookups, since it may still run.
    pub async fn deletions_settled(&self) {
        self.inner.deletions.settled().await;
    }

    /// Ends the session: waits for the deletes in flight ([`Self::deletions_settled`]),
    /// then deletes the session's root, which garbage-collects every owned actor's pod,
    /// Service and Secret. Detached actors stay.
    pub async fn shutdown(&self) -> kt_core::Result<()> {
        self.inner.closing.store(true, Ordering::Release);
        self.deletions_settled().await;
        // The garbage collector deletes them with the root.
        self.inner
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if self.inner.root.get().is_none() {
            return Ok(());
        }
        let roots: Api<ConfigMap> = Api::namespaced(self.inner.client.clone(), self.namespace());
        let name = crate::manifest::session_root_name(self.session());
        match roots.delete(&name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(api_error("deleting the session root", error)),
        }
    }
}

impl Placement for Kubernetes {
    fn name(&self) -> &str {
        "kubernetes"
    }

    fn spawn(&self, request: SpawnRequest) -> BoxFuture<'static, kt_core::Result<Placed>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.spawn(request).await })
    }

    fn lookup(&self, name: &str) -> BoxFuture<'static, kt_core::Result<Option<Placed>>> {
        let inner = self.inner.clone();
        let name = name.to_string();
        Box::pin(async move { inner.lookup(&name).await })
    }
}

fn api_error(what: &str, error: kube::Error) -> Error {
    Error::Unavailable {
        target: "the Kubernetes API server".into(),
        message: format!("{what}: {error}"),
    }
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// What every incarnation of one pod actor is built from: a dead pod with restarts left
/// is replaced by a new pod from the same recipe (rule S3).
struct PodRecipe {
    plan: ActorPod,
    actor_type: ActorType,
    args: Bytes,
    options: kt_core::SpawnOptions,
    member: Member,
    label: ActorLabel,
}

/// What a spawn is building, for its error messages and progress.
struct Member {
    actor_name: String,
    board_title: String,
    board_size: usize,
    rank: usize,
}

impl Inner {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The session root, created on first use.
    async fn session_owner(&self) -> kt_core::Result<Owner> {
        let root = self
            .root
            .get_or_try_init(|| async {
                let roots: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
                let created = roots
                    .create(
                        &PostParams::default(),
                        &session_root(&self.session, &self.namespace),
                    )
                    .await
                    .map_err(|e| api_error("creating the session root", e))?;
                match session_owner(&created)? {
                    Owner::Session(root) => Ok(root),
                    Owner::Detached => Err(Error::Protocol {
                        message: "the session root has no owner reference".into(),
                    }),
                }
            })
            .await?;
        Ok(Owner::Session(root.clone()))
    }

    async fn spawn(self: Arc<Self>, request: SpawnRequest) -> kt_core::Result<Placed> {
        request.options.validate()?;
        let options = request.options.clone();
        let type_name = request.actor_type.type_name;
        let args = Bytes::from(request.encoded_args()?.to_vec());
        let actor_type = request.actor_type;
        let detached = options.lifetime == Lifetime::Detached;
        let member = self.member(type_name, &options);
        if options.name.is_some() {
            self.check_name_free(&member.actor_name).await?;
        }
        let owner = if detached {
            Owner::Detached
        } else {
            self.session_owner().await?
        };
        let group = match (&options.group, &options.group_name) {
            (Some(rank), Some(group)) => Some(GroupRank {
                group: group.clone(),
                rank: rank.rank,
                world_size: rank.size,
                master_port: MASTER_PORT,
            }),
            _ => None,
        };
        let plan = ActorPod {
            session: self.session.clone(),
            namespace: self.namespace.clone(),
            actor_name: member.actor_name.clone(),
            type_name: type_name.to_string(),
            image: self.image.clone(),
            command: self.command.clone(),
            compute: options.compute.clone(),
            port: self.port,
            group,
            placement: request.options.placement_group.clone(),
            owner,
        };
        let label = ActorLabel {
            id: 0,
            type_name: type_name.to_string().into(),
            name: Some(member.actor_name.clone()),
        };

        let restarts = options.max_restarts;
        let recipe = Arc::new(PodRecipe {
            plan,
            actor_type,
            args,
            options,
            member,
            label,
        });
        let first = self
            .clone()
            .start_incarnation(recipe.clone(), restarts)
            .await?;
        let start: StartIncarnation = {
            let (this, recipe) = (self.clone(), recipe.clone());
            Arc::new(move |left| Box::pin(this.clone().start_incarnation(recipe.clone(), left)))
        };
        let actor = supervised(first, actor_type, restarts, detached, start)?;
        Ok(Placed::elsewhere(actor))
    }

    /// Starts one worker pod from `recipe` with `left` restarts left (its budget for
    /// panics) and attaches to it: the first pod of a spawn, or the pod that replaces a
    /// dead one (rule S3). Watches the pod until it ends, then removes its objects or
    /// keeps the pod for inspection.
    async fn start_incarnation(
        self: Arc<Self>,
        recipe: Arc<PodRecipe>,
        left: u32,
    ) -> kt_core::Result<Arc<RemoteRoute>> {
        let PodRecipe {
            plan,
            actor_type,
            member,
            ..
        } = &*recipe;
        let type_name = actor_type.type_name;
        let detached = recipe.options.lifetime == Lifetime::Detached;
        let label = recipe.label.clone();
        let incarnation = recipe.options.max_restarts.saturating_sub(left);
        if incarnation > 0 && self.closing.load(Ordering::Acquire) {
            return Err(Error::WorkerStartFailed {
                type_name: type_name.to_string(),
                message: "the session is shutting down, so a dead pod is not replaced".into(),
            });
        }
        let mut options = recipe.options.clone();
        options.max_restarts = left;
        let pod_name = incarnation_pod_name(&plan.session, &member.actor_name, incarnation);
        let secret_name = worker_secret_of_pod(&pod_name);
        // Built (and checked) before anything is created.
        let pod = actor_pod_named(plan, &pod_name)?;
        // A pod the kubelet restarts keeps running after a failure: it is not kept.
        let restarts = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) != Some("Never");
        let prepared = dialed::prepare(type_name, recipe.args.clone(), options, self.port).await?;
        let files = WorkerFiles {
            ca_pem: prepared.files.ca_pem.into_bytes(),
            cert_pem: prepared.files.cert_pem.into_bytes(),
            key_pem: prepared.files.key_pem.into_bytes(),
            config: prepared.files.config,
        };
        let secret = worker_secret_named(plan, &files, &secret_name);

        self.replace_kept(&pod_name, &secret_name).await?;
        if plan.group.is_some() {
            let services: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
            match services
                .create(&PostParams::default(), &group_service(plan)?)
                .await
            {
                Ok(_) => {}
                Err(error) if is_conflict(&error) => {} // another member made it
                Err(error) => return Err(api_error("creating the group Service", error)),
            }
        }
        match self.secrets().create(&PostParams::default(), &secret).await {
            Ok(_) => {}
            Err(error) if is_conflict(&error) => {
                return Err(Error::NameTaken {
                    name: member.actor_name.clone(),
                });
            }
            Err(error) => return Err(api_error("creating the worker Secret", error)),
        }
        if let Err(error) = self.pods().create(&PostParams::default(), &pod).await {
            self.delete_objects(&pod_name, &secret_name, false).await;
            return Err(if is_conflict(&error) {
                Error::NameTaken {
                    name: member.actor_name.clone(),
                }
            } else {
                api_error("creating the pod", error)
            });
        }

        let created = std::time::Instant::now();
        let board = self.progress.board(&member.board_title, member.board_size);
        let mut states = Box::pin(pod_states(self.pods(), &pod_name));
        let ready = tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(state) = states.next().await {
                match state {
                    PodState::Starting { stage } => board.set(member.rank, stage),
                    PodState::Unschedulable { message } => {
                        if !recipe.options.wait_for_resources {
                            return Err(DeathCause::Unschedulable { message });
                        }
                        board.set(member.rank, "unschedulable");
                    }
                    PodState::Ready { ip } => {
                        board.set(member.rank, "ready");
                        return Ok(ip);
                    }
                    PodState::Dead(cause) => return Err(cause),
                }
            }
            Err(DeathCause::PodDeleted)
        })
        .await;
        let ip = match ready {
            Ok(Ok(ip)) => ip,
            Ok(Err(cause)) => {
                self.progress.done(&member.board_title);
                let end = End::of(&cause, detached, restarts);
                self.after_death(&pod_name, &secret_name, end, true).await;
                return Err(Error::ActorDied {
                    actor: label,
                    cause,
                });
            }
            Err(_) => {
                self.progress.done(&member.board_title);
                self.delete_objects(&pod_name, &secret_name, true).await;
                return Err(Error::WorkerStartFailed {
                    type_name: type_name.to_string(),
                    message: format!(
                        "pod {pod_name} was not ready within {READY_TIMEOUT:?}; see `kt ps` \
                         and `kubectl describe pod {pod_name}`"
                    ),
                });
            }
        };
        let ready = std::time::Instant::now();
        if board.all_ready() {
            self.progress.done(&member.board_title);
        }
        let address = ip
            .parse()
            .map(|ip| SocketAddr::new(ip, self.port))
            .map_err(|e| Error::Protocol {
                message: format!("pod {pod_name} has a bad IP '{ip}': {e}"),
            })?;
        // A pod can die while its worker is being dialed (a crash right after start).
        let attached = tokio::select! {
            attached = self.attach(address, prepared.token, &pod_name) => attached,
            cause = died(&mut states) => Err(Error::ActorDied { actor: label, cause }),
        };
        let attached = match attached {
            Ok(attached) => attached,
            Err(error) => {
                let end = match &error {
                    Error::ActorDied { cause, .. } => End::of(cause, detached, restarts),
                    _ => End::Clean,
                };
                self.after_death(&pod_name, &secret_name, end, true).await;
                return Err(error);
            }
        };
        self.record(SpawnTiming {
            actor: member.actor_name.clone(),
            until_ready: ready - created,
            ready_to_attached: ready.elapsed(),
        });
        attached.route.pace_to(
            recipe.options.mailbox_capacity,
            recipe.options.max_concurrency,
        );
        let actor_id = attached.route.label().id;
        let annotate = serde_json::json!({
            "metadata": {"annotations": {ANNOTATION_ACTOR_ID: actor_id.to_string()}}
        });
        // Without it, other drivers cannot address the actor; this driver can.
        if let Err(error) = self
            .pods()
            .patch(&pod_name, &PatchParams::default(), &Patch::Merge(&annotate))
            .await
        {
            tracing::warn!("annotating pod {pod_name} with its actor id: {error}");
        }

        // Keep watching the pod: its end is the actor's death, with Kubernetes' reason.
        // Once the actor is gone for good, its objects go, or its pod stays for inspection.
        let death = attached.death.clone();
        let mut stopped = attached.route.stopped();
        let this = self.clone();
        self.runtime.spawn(async move {
            let first = tokio::select! {
                cause = &mut stopped => Err(cause),
                cause = died(&mut states) => Ok(cause),
            };
            let (cause, _cleaning) = match first {
                Ok(cause) => {
                    // Counted before callers can see the death, so that
                    // `deletions_settled` also waits for what follows it.
                    let cleaning = this.deletions.start();
                    death.died(cause).await;
                    // The first cause wins: a `kill()` may have come first.
                    (stopped.await, Some(cleaning))
                }
                Err(cause) => {
                    // Ended through its handle (kill, release, a reported panic): the pod's
                    // end still tells the transport its process is gone.
                    this.runtime
                        .spawn(async move { death.died(died(&mut states).await).await });
                    (cause, None)
                }
            };
            let end = End::of(&cause, detached, restarts);
            this.after_death(&pod_name, &secret_name, end, false).await;
        });
        Ok(attached.route)
    }

    fn record(&self, timing: SpawnTiming) {
        let mut timings = self.timings.lock().unwrap_or_else(|e| e.into_inner());
        if timings.len() == TIMINGS_KEPT {
            timings.pop_front();
        }
        timings.push_back(timing);
    }

    /// The actor's name and where its progress shows.
    fn member(&self, type_name: &str, options: &kt_core::SpawnOptions) -> Member {
        let short = dns_label(&short_type_name(type_name).to_lowercase(), 40);
        match (&options.group, &options.group_name) {
            (Some(rank), Some(group)) => Member {
                actor_name: options
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{group}-{}", rank.rank)),
                board_title: group.clone(),
                board_size: rank.size,
                rank: rank.rank,
            },
            _ => {
                let actor_name = options.name.clone().unwrap_or_else(|| {
                    format!("{short}-{}", self.next.fetch_add(1, Ordering::Relaxed))
                });
                Member {
                    board_title: actor_name.clone(),
                    actor_name,
                    board_size: 1,
                    rank: 0,
                }
            }
        }
    }

    /// Rule N1 in a namespace: a name held by a live pod of any session is taken.
    async fn check_name_free(&self, name: &str) -> kt_core::Result<()> {
        if self.find_live(name).await?.is_some() {
            return Err(Error::NameTaken {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// The live pod of the actor named `name`, in any session.
    async fn find_live(&self, name: &str) -> kt_core::Result<Option<Pod>> {
        let selector = format!(
            "{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_ACTOR}={}",
            label_value(name)
        );
        let pods = self
            .pods()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| api_error("listing pods", e))?;
        let killed = self
            .killed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(pods.items.into_iter().find(|pod| {
            let pod_name = pod.metadata.name.as_ref();
            if pod_name.is_some_and(|pod_name| killed.contains(pod_name)) {
                return false;
            }
            let annotations = pod.metadata.annotations.as_ref();
            annotations
                .and_then(|a| a.get(ANNOTATION_ACTOR_NAME))
                .map(String::as_str)
                == Some(name)
                && pod.metadata.deletion_timestamp.is_none()
                && !matches!(pod_state(pod), PodState::Dead(_))
        }))
    }

    /// Dials a ready pod's worker, retrying while it is still binding its port.
    async fn attach(
        &self,
        address: SocketAddr,
        token: u64,
        pod_name: &str,
    ) -> kt_core::Result<dialed::Attached> {
        let deadline = tokio::time::Instant::now() + ATTACH_TIMEOUT;
        let mut timeouts = attach_timeouts(self.reach);
        loop {
            let attempt = timeouts.next().unwrap_or(MAX_ATTACH_ATTEMPT);
            // A new forward each attempt: one made before the worker listened is dead.
            let refused: ForwardError = match self.reach {
                Reach::PortForward => self.forward(pod_name, address).await?,
                Reach::Direct => Box::pin(std::future::pending()),
            };
            let killer = self.killer(pod_name);
            let result = tokio::select! {
                result = dialed::attach(address, token, Some(killer), attempt) => result,
                // The pod refused the forwarded connection: no need to wait the attempt out.
                message = refused => Err(Error::Unavailable {
                    target: format!("pod {pod_name}"),
                    message,
                }),
            };
            match result {
                Ok(attached) => return Ok(attached),
                Err(Error::Unavailable { .. }) if tokio::time::Instant::now() < deadline => {
                    // Nothing listens yet: QUIC hears nothing back, so each attempt
                    // waits out its own timeout; an immediate refusal waits a moment.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(Error::Unavailable { .. }) => {
                    return Err(Error::Unavailable {
                        target: format!("pod {pod_name}"),
                        message: format!(
                            "its worker did not answer at {address} within {ATTACH_TIMEOUT:?}"
                        ),
                    });
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Deletes the pod (and its Secret) at once: what `kill()` does to a pod actor. The
    /// pod is hidden from lookups meanwhile; failed deletes are retried with back-off,
    /// and one that gives up is logged and the pod shown again (it may still run).
    fn killer(&self, pod_name: &str) -> Box<dyn Fn() + Send + Sync> {
        let (pods, secrets, runtime) = (self.pods(), self.secrets(), self.runtime.clone());
        let (killed, deletions) = (self.killed.clone(), self.deletions.clone());
        let pod_name = pod_name.to_string();
        let secret_name = worker_secret_of_pod(&pod_name);
        Box::new(move || {
            killed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(pod_name.clone());
            let (pods, secrets, killed) = (pods.clone(), secrets.clone(), killed.clone());
            let (pod_name, secret_name) = (pod_name.clone(), secret_name.clone());
            let deleting = deletions.start();
            runtime.spawn(async move {
                let now = DeleteParams::default().grace_period(0);
                if let Err(error) = delete_with_retries(&pods, &pod_name, &now).await {
                    tracing::warn!(
                        "kill(): pod {pod_name} could not be deleted ({error}); its actor may \
                         still run: delete it with `kt kill` or `kubectl delete pod {pod_name}`"
                    );
                }
                let params = DeleteParams::default();
                if let Err(error) = delete_with_retries(&secrets, &secret_name, &params).await {
                    tracing::warn!(
                        "kill(): the worker Secret {secret_name} could not be deleted \
                         ({error}); delete it with `kubectl delete secret {secret_name}`"
                    );
                }
                // Deleted: the API server no longer lists it as live (it has a deletion
                // timestamp, or is gone). Not deleted: it may live, and lookups must say so.
                killed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&pod_name);
                drop(deleting);
            });
        })
    }

    /// Routes this process's QUIC connections to `address` through a port-forward to the
    /// pod, via the API server.
    /// Resolves with the forward's error if the pod refuses the forwarded connection (its
    /// worker does not listen yet), and never otherwise.
    async fn forward(&self, pod_name: &str, address: SocketAddr) -> kt_core::Result<ForwardError> {
        let mut forwarder = self
            .pods()
            .portforward(pod_name, &[address.port()])
            .await
            .map_err(|e| api_error(&format!("port-forwarding to pod {pod_name}"), e))?;
        let stream = forwarder
            .take_stream(address.port())
            .ok_or_else(|| Error::Unavailable {
                target: format!("pod {pod_name}"),
                message: "the port-forward gave no stream".into(),
            })?;
        kt_transport::Node::global()?.forward_through(address, stream)?;
        let refused: ForwardError = match forwarder.take_error(address.port()) {
            Some(error) => Box::pin(async move {
                match error.await {
                    Some(message) => message,
                    None => std::future::pending().await,
                }
            }),
            None => Box::pin(std::future::pending()),
        };
        let previous = self
            .forwards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pod_name.to_string(), forwarder);
        if let Some(previous) = previous {
            previous.abort();
        }
        Ok(refused)
    }

    /// Carries out what an actor's end means for its objects.
    async fn after_death(&self, pod_name: &str, secret_name: &str, end: End, now: bool) {
        match end {
            // `kill()` deletes them itself.
            End::Killed => self.drop_forward(pod_name),
            End::Clean => self.delete_objects(pod_name, secret_name, now).await,
            End::Failed { detached } => self.keep(pod_name, secret_name, detached).await,
            End::Unknown => self.drop_forward(pod_name),
        }
    }

    /// Keeps a failed actor's pod for inspection (`kt ps`, `kt logs`, `kubectl describe`)
    /// until the session ends: its Secret goes now, and a detached actor's pod is given to
    /// the session root so that ending the session removes it too.
    async fn keep(&self, pod_name: &str, secret_name: &str, detached: bool) {
        let _deleting = self.deletions.start();
        self.drop_forward(pod_name);
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pod_name.to_string());
        if detached {
            let adopted = match self.session_owner().await {
                Ok(owner) => {
                    let patch = serde_json::json!({
                        "metadata": {"ownerReferences": crate::manifest::owner_references(&owner)}
                    });
                    self.pods()
                        .patch(pod_name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                Err(error) => Err(error.to_string()),
            };
            if let Err(error) = adopted {
                tracing::warn!(
                    "the failed pod {pod_name} could not be given to this session ({error}); \
                     it stays until `kt kill` or `kt down --all`"
                );
            }
        }
        let params = DeleteParams::default();
        if let Err(error) = delete_with_retries(&self.secrets(), secret_name, &params).await {
            tracing::warn!(
                "the worker Secret {secret_name} could not be deleted ({error}); delete it \
                 with `kubectl delete secret {secret_name}`"
            );
        }
    }

    /// Before a new actor takes a name whose failed pod this session keeps: deletes that
    /// pod and waits until it is gone (its name is the new pod's).
    async fn replace_kept(&self, pod_name: &str, secret_name: &str) -> kt_core::Result<()> {
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pod_name);
        if !kept {
            return Ok(());
        }
        let now = DeleteParams::default().grace_period(0);
        delete_with_retries(&self.pods(), pod_name, &now)
            .await
            .map_err(|e| api_error(&format!("deleting the failed pod {pod_name}"), e))?;
        delete_with_retries(&self.secrets(), secret_name, &DeleteParams::default())
            .await
            .map_err(|e| api_error(&format!("deleting the worker Secret {secret_name}"), e))?;
        let gone =
            kube::runtime::wait::await_condition(self.pods(), pod_name, |p: Option<&Pod>| {
                p.is_none()
            });
        match tokio::time::timeout(ATTACH_TIMEOUT, gone).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(Error::Unavailable {
                target: "the Kubernetes API server".into(),
                message: format!("waiting for the failed pod {pod_name} to go: {error}"),
            }),
            Err(_) => Err(Error::Unavailable {
                target: "the Kubernetes API server".into(),
                message: format!(
                    "the failed pod {pod_name} of an earlier actor of this name was not gone \
                     within {ATTACH_TIMEOUT:?}; delete it (`kt kill`) and spawn again"
                ),
            }),
        }
    }

    /// Stops forwarding to a pod whose actor is gone.
    fn drop_forward(&self, pod_name: &str) {
        let forwarder = self
            .forwards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pod_name);
        if let Some(forwarder) = forwarder {
            forwarder.abort();
        }
    }

    /// Deletes an actor's pod and Secret (either may be gone already), retrying failures
    /// with back-off; what still fails is logged.
    async fn delete_objects(&self, pod_name: &str, secret_name: &str, now: bool) {
        let _deleting = self.deletions.start();
        self.drop_forward(pod_name);
        let params = if now {
            DeleteParams::default().grace_period(0)
        } else {
            DeleteParams::default()
        };
        if let Err(error) = delete_with_retries(&self.pods(), pod_name, &params).await {
            tracing::warn!(
                "pod {pod_name} could not be deleted ({error}); delete it with `kt kill` or \
                 `kubectl delete pod {pod_name}`, or end the session (`kt down`)"
            );
        }
        let params = DeleteParams::default();
        if let Err(error) = delete_with_retries(&self.secrets(), secret_name, &params).await {
            tracing::warn!(
                "the worker Secret {secret_name} could not be deleted ({error}); delete it \
                 with `kubectl delete secret {secret_name}`"
            );
        }
    }

    /// `get_actor` on Kubernetes: the live pod named for the actor, addressed by its IP
    /// and the actor id annotated on it.
    async fn lookup(&self, name: &str) -> kt_core::Result<Option<Placed>> {
        let Some(pod) = self.find_live(name).await? else {
            return Ok(None);
        };
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let (Some(id), Some(type_name), PodState::Ready { ip }) = (
            annotations
                .get(ANNOTATION_ACTOR_ID)
                .and_then(|id| id.parse::<u64>().ok()),
            annotations.get(ANNOTATION_TYPE_NAME).cloned(),
            pod_state(&pod),
        ) else {
            // Still starting: not reachable yet.
            return Ok(None);
        };
        let port = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.containers.first())
            .and_then(|c| c.ports.as_ref()?.first().map(|p| p.container_port))
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(self.port);
        let address = HandleAddress {
            node: format!("{ip}:{port}"),
            label: ActorLabel {
                id,
                type_name: type_name.into(),
                name: Some(name.to_string()),
            },
        };
        if self.reach == Reach::PortForward {
            let address = address.node.parse().map_err(|e| Error::Protocol {
                message: format!("pod address '{}': {e}", address.node),
            })?;
            // A live pod listens: a refusal would show up as calls failing.
            let _refused = self
                .forward(pod.metadata.name.as_deref().unwrap_or_default(), address)
                .await?;
        }
        // Its `kill()` deletes the pod and Secret, whoever spawned it.
        let killer = self.killer(pod.metadata.name.as_deref().unwrap_or_default());
        let actor: ErasedActor =
            kt_transport::Node::global()?.import_with_killer(address, killer)?;
        Ok(Some(Placed::elsewhere(actor)))
    }
}

/// The error a port-forward reports when the pod refuses its connection.
type ForwardError = std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>;

/// Resolves with the cause once the pod's states say it died.
async fn died(states: &mut (impl Stream<Item = PodState> + Unpin)) -> DeathCause {
    while let Some(state) = states.next().await {
        if let PodState::Dead(cause) = state {
            return cause;
        }
    }
    DeathCause::PodDeleted
}

/// The states one pod goes through, as the API server reports them (a watch on its
/// name); ends after it is deleted.
fn pod_states(pods: Api<Pod>, name: &str) -> impl Stream<Item = PodState> + Send + 'static {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut last: Option<PodState> = None;
    // Whether the current (re)list has held the pod.
    let mut listed = false;
    watcher(pods, config)
        .default_backoff()
        .filter_map(move |event| {
            let state = match event {
                Ok(watcher::Event::Init) => {
                    listed = false;
                    None
                }
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                    listed = true;
                    Some(pod_state(&pod))
                }
                Ok(watcher::Event::Delete(_)) => Some(PodState::Dead(DeathCause::PodDeleted)),
                // A relist (after a broken watch) that no longer holds the pod: it was
                // deleted meanwhile, and no Delete event will come for it.
                Ok(watcher::Event::InitDone) if !listed => {
                    Some(PodState::Dead(DeathCause::PodDeleted))
                }
                Ok(watcher::Event::InitDone) => None,
                Err(error) => {
                    tracing::debug!("pod watch: {error}");
                    None
                }
            };
            let fresh = state.filter(|s| last.as_ref() != Some(s));
            if let Some(state) = &fresh {
                last = Some(state.clone());
            }
            async move { fresh }
        })
        // Up to and including the first state that means death.
        .scan(false, |over, state| {
            let item = (!*over).then(|| {
                *over = matches!(state, PodState::Dead(_));
                state
            });
            async move { item }
        })
}

/// What an actor's end means for its pod and Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// `kill()`: it deletes them itself.
    Killed,
    /// Nothing to inspect, or a pod that could still run: both go.
    Clean,
    /// The actor failed and its pod has ended: the pod stays for inspection until the
    /// session ends, the Secret goes.
    Failed {
        /// A detached actor's pod, which the session root does not own yet.
        detached: bool,
    },
    /// This driver lost a detached actor, which may live on: leave it be.
    Unknown,
}

impl End {
    fn of(cause: &DeathCause, detached: bool, restarts: bool) -> End {
        match cause {
            DeathCause::Killed => End::Killed,
            DeathCause::ConnectionLost { .. } if detached => End::Unknown,
            DeathCause::Exited { code: 0 } => End::Clean,
            // A pod the kubelet restarts would keep running: it is not kept.
            _ if restarts => End::Clean,
            DeathCause::OomKilled
            | DeathCause::Exited { .. }
            | DeathCause::Signaled { .. }
            | DeathCause::ContainerStartFailed { .. }
            | DeathCause::Evicted { .. }
            | DeathCause::Panicked { .. }
            | DeathCause::StartFailed { .. }
            | DeathCause::ConnectionLost { .. } => End::Failed { detached },
            // Clean ends, pods being deleted anyway (PodDeleted, Preempted) and pods that
            // never ran and could still start (Unschedulable, ImagePullFailed).
            _ => End::Clean,
        }
    }
}

/// Deletes in flight, counted so that they can be waited for.
#[derive(Clone)]
struct Deletions(Arc<tokio::sync::watch::Sender<usize>>);

impl Default for Deletions {
    fn default() -> Self {
        Deletions(Arc::new(tokio::sync::watch::channel(0).0))
    }
}

impl Deletions {
    /// Counts a delete until the returned guard is dropped.
    fn start(&self) -> Deleting {
        self.0.send_modify(|n| *n += 1);
        Deleting(self.0.clone())
    }

    /// Resolves once no delete is in flight.
    async fn settled(&self) {
        let mut count = self.0.subscribe();
        // The sender lives in `self`: the wait ends only when the count is zero.
        let _ = count.wait_for(|n| *n == 0).await;
    }
}

/// One delete in flight.
struct Deleting(Arc<tokio::sync::watch::Sender<usize>>);

impl Drop for Deleting {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The longest one attach attempt waits for the worker's handshake.
const MAX_ATTACH_ATTEMPT: Duration = Duration::from_secs(2);

/// How long successive attach attempts wait for the worker's handshake. One with a
/// listening worker takes a few milliseconds directly, more through a port-forward (the API
/// server's WebSocket, then TCP); one that is not listening yet hears nothing back, so the
/// attempt waits out its timeout. Start short and double, up to [`MAX_ATTACH_ATTEMPT`].
fn attach_timeouts(reach: Reach) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    let first = match reach {
        Reach::Direct => Duration::from_millis(20),
        Reach::PortForward => Duration::from_millis(500),
    };
    backon::ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(MAX_ATTACH_ATTEMPT)
        .with_factor(2.0)
        .without_max_times()
        .build()
}

/// How failed deletes are retried: an API server that fails one (overloaded, restarting,
/// a webhook timing out) usually takes it a moment later. Eight tries over 5 to 10 s
/// (with jitter).
fn delete_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(7)
        .with_jitter()
}

/// Errors a retry cannot fix: a malformed request, or one this driver may not make.
fn permanent(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if matches!(status.code, 400 | 401 | 403 | 405 | 422))
}

/// Deletes the object `name`, retrying failures with back-off; one already gone (404)
/// counts as deleted.
async fn delete_with_retries<K>(
    api: &Api<K>,
    name: &str,
    params: &DeleteParams,
) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use backon::Retryable;
    let attempt = || async {
        match api.delete(name, params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(error),
        }
    };
    attempt
        .retry(delete_backoff())
        .sleep(tokio::time::sleep)
        .when(|error| !permanent(error))
        .notify(|error, after| {
            tracing::debug!("deleting {name} failed ({error}); retrying in {after:?}");
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_attempts_wait_longer_each_time_up_to_the_cap() {
        let ms = |reach| -> Vec<u128> {
            attach_timeouts(reach)
                .take(9)
                // backon scales in f32: 40 ms comes out as 39.99…
                .map(|d| (d.as_secs_f64() * 1000.0).round() as u128)
                .collect()
        };
        assert_eq!(
            ms(Reach::Direct),
            [20, 40, 80, 160, 320, 640, 1280, 2000, 2000]
        );
        assert_eq!(ms(Reach::PortForward)[..4], [500, 1000, 2000, 2000]);
    }
}
