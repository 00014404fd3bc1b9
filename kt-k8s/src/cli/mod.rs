//! The `kt` command: an operator's view of kt's actors on any cluster, through a
//! kubeconfig. The binary (`src/bin/kt.rs`) only parses arguments and calls [`run`];
//! everything else lives here so that tests drive it against the API-server emulator.
//!
//! | command | what it does |
//! |---|---|
//! | `kt ps [--session S] [-A] [-o json]` | one row per kt actor pod: name, type, session, pod, node, status, restarts, age |
//! | `kt logs NAME [-f] [--tail N] [--previous]` | an actor's output; a group's name prints every member's lines prefixed `[rank N]` |
//! | `kt kill NAME` | deletes an actor's pod and worker Secret (a group's: every member's and its Service) |
//! | `kt down [--session S] [--all]` | deletes session roots (the garbage collector deletes what they own); `--all` also detached actors |
//! | `kt manifest --type T --image I ...` | prints the YAML kt would create for an actor or a group, offline |
//! | `kt store ls [PREFIX] [-o json]` | the data stores of the drivers on this machine: key, version, size, holders, metadata |
//!
//! Actors are found by the labels and annotations of the contract
//! ([`crate::manifest`]): pods labelled `app.kubernetes.io/managed-by=kt` and
//! `app.kubernetes.io/component=actor`, named by the `kt.dev/actor-name` annotation
//! (the label holds a sanitized form). The command needs `get`, `list`, `watch` and
//! `delete` on pods, `get` on `pods/log`, `list` and `delete` on services and
//! configmaps, and `delete` on secrets; it never lists Secrets (worker Secrets are
//! found by name, `<pod>-worker`).
//!
//! Which cluster: `--kubeconfig PATH`, else what `kube::Config::infer` finds
//! (`KUBECONFIG`, `~/.kube/config`, then the in-cluster service account); `--context`
//! picks a kubeconfig context; `-n` a namespace, else the context's.

mod down;
mod error;
mod find;
mod kill;
mod logs;
mod manifest;
mod ps;
mod status;
mod store;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};

pub use down::down;
pub use error::CliError;
pub use kill::kill;
pub use logs::logs;
pub use manifest::manifest;
pub use ps::{PsRow, ps, ps_rows};
pub use status::{format_age, pod_status};
pub use store::store_ls;

/// `kt`: kt's actors on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "kt", version, about = "kt's actors on Kubernetes: list, logs, kill, tear down, print manifests", long_about = None)]
pub struct Cli {
    /// Which cluster and namespace.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes: which cluster, context and namespace.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// The kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster account).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace).
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List kt's actor pods.
    Ps(PsArgs),
    /// Print an actor's logs (a group's: every member's, prefixed `[rank N]`).
    Logs(LogsArgs),
    /// Delete an actor (or a whole group): its pods, worker Secrets and group Service.
    Kill(KillArgs),
    /// Delete kt sessions (their owned actors go with them); `--all` also detached actors.
    Down(DownArgs),
    /// Print the YAML kt would create for an actor or a group (no cluster needed).
    Manifest(Box<ManifestArgs>),
    /// The data stores of the drivers on this machine (no cluster needed).
    #[command(subcommand)]
    Store(StoreCommand),
}

/// `kt store ...`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// List keys: version, size, holders, metadata, per driver on this machine.
    Ls(StoreLsArgs),
}

/// `kt store ls`.
#[derive(Debug, Clone, Default, Args)]
pub struct StoreLsArgs {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `kt ps`.
#[derive(Debug, Clone, Default, Args)]
pub struct PsArgs {
    /// Only this session's actors.
    #[arg(long, value_name = "S")]
    pub session: Option<String>,
    /// Every namespace (adds a NAMESPACE column).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `kt ps -o`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns, like `kubectl get`.
    #[default]
    Table,
    /// A JSON array of rows, for scripts.
    Json,
}

/// `kt logs`.
#[derive(Debug, Clone, Default, Args)]
pub struct LogsArgs {
    /// The actor's name, a group's name (every member), or a member's `GROUP-RANK`.
    pub name: String,
    /// Keep printing new lines until the pod ends (or Ctrl-C).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (of each member).
    #[arg(long, value_name = "N")]
    pub tail: Option<i64>,
    /// The previous container instance's logs (after a restart).
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only actors of this session (when the name exists in several).
    #[arg(long, value_name = "S")]
    pub session: Option<String>,
}

/// `kt kill`.
#[derive(Debug, Clone, Default, Args)]
pub struct KillArgs {
    /// The actor's name, or a group's name (every member and the group's Service).
    pub name: String,
    /// Only actors of this session (when the name exists in several).
    #[arg(long, value_name = "S")]
    pub session: Option<String>,
}

/// `kt down`.
#[derive(Debug, Clone, Default, Args)]
pub struct DownArgs {
    /// Only this session.
    #[arg(long, value_name = "S")]
    pub session: Option<String>,
    /// Also delete detached actors (their pods and worker Secrets).
    #[arg(long)]
    pub all: bool,
}

/// `kt manifest`: an actor's (or a group's) objects as kt would create them.
#[derive(Debug, Clone, Default, Args)]
pub struct ManifestArgs {
    /// The actor's registered type name (`my_crate::Trainer`).
    #[arg(long = "type", value_name = "TYPE")]
    pub type_name: String,
    /// The image with the user's binary.
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    /// The actor's (or group's) name (default: the type's short name, lower-cased).
    #[arg(long, value_name = "N")]
    pub name: Option<String>,
    /// A group of N ranked members behind a headless Service.
    #[arg(long, value_name = "N")]
    pub replicas: Option<usize>,
    /// CPUs per actor.
    #[arg(long, value_name = "X")]
    pub cpus: Option<f64>,
    /// GPUs per actor (`nvidia.com/gpu`).
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    /// Memory per actor, a Kubernetes quantity (`64Gi`).
    #[arg(long, value_name = "Q")]
    pub memory: Option<String>,
    /// An environment variable, `K=V` (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// A node selector, `K=V` (repeatable).
    #[arg(long = "node-selector", value_name = "K=V")]
    pub node_selector: Vec<String>,
    /// A toleration, `KEY[=VALUE][:EFFECT]` (repeatable; EFFECT is NoSchedule,
    /// PreferNoSchedule or NoExecute; without `=VALUE` the key only has to exist).
    #[arg(long = "toleration", value_name = "KEY[=VALUE]:EFFECT")]
    pub toleration: Vec<String>,
    /// The pod's priority class.
    #[arg(long, value_name = "P")]
    pub priority_class: Option<String>,
    /// Kueue's local queue.
    #[arg(long, value_name = "Q")]
    pub queue: Option<String>,
    /// Placement of the actor's (group's) pods over nodes.
    #[arg(long, value_enum, value_name = "STRATEGY")]
    pub placement: Option<Placement>,
    /// A pod patch from a JSON file: an object is a merge patch (RFC 7386), an array a
    /// JSON patch (RFC 6902).
    #[arg(long, value_name = "FILE.json")]
    pub patch: Option<PathBuf>,
    /// A detached actor: owned by no session, it outlives its driver until killed.
    #[arg(long)]
    pub detached: bool,
    /// The session id (1 to 16 lowercase letters and digits).
    #[arg(long, value_name = "S", default_value = "manual")]
    pub session: String,
    /// The session root's uid (`kubectl get configmap kt-session-S -o
    /// jsonpath='{.metadata.uid}'`): without it owned objects carry no owner reference.
    #[arg(long, value_name = "UID")]
    pub session_uid: Option<String>,
    /// The UDP port the worker serves QUIC on (by default the placement's own).
    #[arg(long, value_name = "PORT", default_value_t = crate::placement::DEFAULT_PORT)]
    pub port: u16,
    /// The TCP port of a group's rank 0 for the torch.distributed rendezvous.
    #[arg(long, value_name = "PORT", default_value_t = crate::placement::MASTER_PORT)]
    pub master_port: u16,
    /// The command that starts the user's binary in the image, with its arguments; put
    /// it last, it takes every value after it.
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_name = "PROGRAM [ARG]...")]
    pub command: Vec<String>,
}

/// `kt manifest --placement`: Ray's four strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Placement {
    /// On as few nodes as possible (preferred pod affinity).
    Pack,
    /// On as many nodes as possible (preferred pod anti-affinity).
    Spread,
    /// All on one node, or not at all.
    StrictPack,
    /// Each on its own node, or not at all.
    StrictSpread,
}

/// A connected cluster: the client, the namespace commands act in, and a description
/// of where both came from, for error messages.
#[derive(Clone)]
pub struct Target {
    /// The API client.
    pub client: kube::Client,
    /// The namespace from `-n`, else the context's.
    pub namespace: String,
    /// Which kubeconfig and context were used (`kubeconfig /x (context y)`).
    pub source: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("namespace", &self.namespace)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// A target from a client built elsewhere.
    pub fn new(
        client: kube::Client,
        namespace: impl Into<String>,
        source: impl Into<String>,
    ) -> Self {
        Target {
            client,
            namespace: namespace.into(),
            source: source.into(),
        }
    }

    /// `namespace 'x' (kubeconfig ...)`: where a failed request went.
    pub(crate) fn place(&self) -> String {
        format!("namespace '{}' ({})", self.namespace, self.source)
    }
}

/// Loads the kubeconfig the flags name (or the inferred one) and connects.
pub async fn connect(global: &GlobalArgs) -> Result<Target, CliError> {
    let options = KubeConfigOptions {
        context: global.context.clone(),
        ..KubeConfigOptions::default()
    };
    let context = global
        .context
        .as_deref()
        .map(|c| format!(", context '{c}'"))
        .unwrap_or_default();
    let (config, source) = if let Some(path) = &global.kubeconfig {
        let source = format!("kubeconfig {}{context}", path.display());
        let kubeconfig = Kubeconfig::read_from(path).map_err(|e| CliError::Config {
            source_desc: source.clone(),
            message: e.to_string(),
        })?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| CliError::Config {
                source_desc: source.clone(),
                message: e.to_string(),
            })?;
        (config, source)
    } else {
        let file = match std::env::var_os("KUBECONFIG") {
            Some(paths) => format!("$KUBECONFIG={}", paths.to_string_lossy()),
            None => "~/.kube/config".to_string(),
        };
        if global.context.is_some() {
            // A context only exists in a kubeconfig: no in-cluster fallback.
            let source = format!("kubeconfig {file}{context}");
            let config =
                kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| CliError::Config {
                        source_desc: source.clone(),
                        message: e.to_string(),
                    })?;
            (config, source)
        } else {
            let source = format!("kubeconfig {file} or the in-cluster service account");
            let config = kube::Config::infer().await.map_err(|e| CliError::Config {
                source_desc: source.clone(),
                message: e.to_string(),
            })?;
            (config, source)
        }
    };
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let source = format!("{source}, server {}", config.cluster_url);
    let client = kube::Client::try_from(config).map_err(|e| CliError::Config {
        source_desc: source.clone(),
        message: e.to_string(),
    })?;
    Ok(Target::new(client, namespace, source))
}

/// Runs one parsed command line, writing its output to `out`. `kt manifest` never
/// connects; the other commands do, once.
pub async fn run(cli: &Cli, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    if let Command::Manifest(args) = &cli.command {
        let namespace = cli.global.namespace.as_deref().unwrap_or("default");
        return manifest(args, namespace, out);
    }
    if let Command::Store(StoreCommand::Ls(args)) = &cli.command {
        return store_ls(args, out).await;
    }
    let target = connect(&cli.global).await?;
    match &cli.command {
        Command::Ps(args) => ps(&target, args, out).await,
        Command::Logs(args) => logs(&target, args, out).await,
        Command::Kill(args) => kill(&target, args, out).await,
        Command::Down(args) => down(&target, args, out).await,
        Command::Manifest(_) | Command::Store(_) => Ok(()),
    }
}
