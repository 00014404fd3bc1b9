//! The `kt` command against the API-server emulator, through a kubeconfig file: kt's
//! objects are created with `kt_k8s::manifest` exactly as the placement would, their
//! containers run `/bin/sh` (the emulator runs a pod's command as a local process and
//! ignores the image), and every wait is on a watch with a timeout, never a sleep.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kt_core::Compute;
use kt_k8s::cli::{self, Cli, CliError, GlobalArgs, Target, pod_status};
use kt_k8s::manifest::{
    ActorPod, Owner, SessionId, WorkerFiles, actor_pod, group_manifests, session_owner,
    session_root, worker_secret,
};
use kt_kube_emulator::{Emulator, EmulatorConfig};
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;

/// How long any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(15);
const NS: &str = "default";

struct Harness {
    emulator: Emulator,
    target: Target,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

async fn start_with(config: EmulatorConfig) -> Harness {
    let emulator = Emulator::start(config).await.expect("the emulator starts");
    let dir = tempfile::tempdir().expect("a temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    emulator
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig written");
    let global = GlobalArgs {
        kubeconfig: Some(kubeconfig.clone()),
        ..GlobalArgs::default()
    };
    let target = cli::connect(&global).await.expect("connects");
    assert_eq!(target.namespace, NS, "the context's namespace");
    Harness {
        emulator,
        target,
        kubeconfig,
        _dir: dir,
    }
}

async fn start() -> Harness {
    start_with(EmulatorConfig::default()).await
}

impl Harness {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.target.client.clone(), NS)
    }

    /// Creates the session root as a driver does and returns the owner for its actors.
    async fn session(&self, id: &str) -> Owner {
        let root = session_root(&SessionId::new(id).expect("valid"), NS);
        let root = self
            .api::<ConfigMap>()
            .create(&PostParams::default(), &root)
            .await
            .expect("root created");
        session_owner(&root).expect("an owner")
    }

    /// Creates an actor's worker Secret and pod; returns the pod's name.
    async fn actor(&self, plan: &ActorPod) -> String {
        let pod = actor_pod(plan).expect("a valid pod");
        self.create(plan, pod).await
    }

    async fn create(&self, plan: &ActorPod, pod: Pod) -> String {
        self.api::<Secret>()
            .create(
                &PostParams::default(),
                &worker_secret(plan, &WorkerFiles::default()),
            )
            .await
            .expect("secret created");
        let created = self
            .api::<Pod>()
            .create(&PostParams::default(), &pod)
            .await
            .expect("pod created");
        created.metadata.name.expect("a name")
    }

    /// Creates a group (its Service, then each member's Secret and pod).
    async fn group(&self, template: &ActorPod, group: &str, size: usize) -> Vec<String> {
        let (service, pods) = group_manifests(template, group, size, 29500).expect("valid");
        self.api::<Service>()
            .create(&PostParams::default(), &service)
            .await
            .expect("service created");
        let mut names = Vec::new();
        for (rank, pod) in pods.into_iter().enumerate() {
            let member = ActorPod {
                actor_name: format!("{group}-{rank}"),
                ..template.clone()
            };
            names.push(self.create(&member, pod).await);
        }
        names
    }

    async fn wait_status(&self, pod: &str, want: &str) -> Pod {
        let want_owned = want.to_string();
        let cond = move |p: Option<&Pod>| p.is_some_and(|p| pod_status(p) == want_owned);
        match tokio::time::timeout(WAIT, await_condition(self.api(), pod, cond)).await {
            Ok(Ok(Some(p))) => p,
            other => {
                let now = self.api::<Pod>().get_opt(pod).await;
                panic!("{pod} did not become {want}: {other:?}; now {now:#?}")
            }
        }
    }

    async fn wait_gone<K>(&self, name: &str)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
        K::DynamicType: Default,
    {
        let cond = |o: Option<&K>| o.is_none();
        let waited = tokio::time::timeout(WAIT, await_condition(self.api::<K>(), name, cond)).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "{name} was not deleted within {WAIT:?}"
        );
    }

    async fn exists<K>(&self, name: &str) -> bool
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        self.api::<K>()
            .get_opt(name)
            .await
            .expect("get works")
            .is_some()
    }

    /// Runs `kt ARGS...` in-process, through the kubeconfig file.
    async fn kt(&self, args: &[&str]) -> Result<String, CliError> {
        let kubeconfig = self.kubeconfig.display().to_string();
        let mut argv = vec!["kt", "--kubeconfig", kubeconfig.as_str()];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("valid arguments");
        let mut out = Vec::new();
        cli::run(&cli, &mut out).await?;
        Ok(String::from_utf8(out).expect("UTF-8"))
    }
}

/// A plan for an actor of session `session` running `script` in `/bin/sh`.
fn plan(session: &str, name: &str, owner: Owner, script: &str) -> ActorPod {
    ActorPod {
        session: SessionId::new(session).expect("valid"),
        namespace: NS.into(),
        actor_name: name.into(),
        type_name: "demo::Counter".into(),
        image: "busybox:1.36".into(),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        compute: Compute::new(),
        port: kt_k8s::placement::DEFAULT_PORT,
        group: None,
        placement: None,
        owner,
    }
}

const RUNS: &str = "echo hello; exec sleep 30";

/// The table's rows as cells, keyed by the first column.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn row<'a>(table: &'a [Vec<String>], name: &str) -> &'a [String] {
    table
        .iter()
        .find(|r| r.first().map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no row for {name} in {table:?}"))
}

#[tokio::test]
async fn ps_lists_actors_with_kubectl_statuses() {
    let mut config = EmulatorConfig::default();
    // Long enough that ErrImagePull is still what the pod shows when ps runs.
    config.image_pull_backoff = Duration::from_secs(60);
    let h = start_with(config).await;
    h.emulator
        .make_unschedulable_matching(
            "kt.dev/actor=blocked",
            "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
        )
        .expect("a valid selector");
    h.emulator.fail_image_pull("registry.invalid/missing:1");
    let owner = h.session("s1").await;

    let counter = h.actor(&plan("s1", "counter", owner.clone(), RUNS)).await;
    let hog = h.actor(&plan("s1", "hog", owner.clone(), RUNS)).await;
    let blocked = h.actor(&plan("s1", "blocked", owner.clone(), RUNS)).await;
    let mut pull = plan("s1", "puller", owner.clone(), RUNS);
    pull.image = "registry.invalid/missing:1".into();
    let puller = h.actor(&pull).await;
    let evictee = h.actor(&plan("s1", "evictee", owner.clone(), RUNS)).await;
    let members = h
        .group(&plan("s1", "ignored", owner.clone(), RUNS), "trainers", 2)
        .await;
    let other = h.session("s2").await;
    h.actor(&plan("s2", "elsewhere", other, RUNS)).await;

    h.wait_status(&counter, "Running").await;
    h.wait_status(&hog, "Running").await;
    h.emulator.oom_kill(NS, &hog).expect("hog runs");
    h.wait_status(&hog, "OOMKilled").await;
    h.wait_status(&blocked, "Unschedulable").await;
    h.wait_status(&puller, "ErrImagePull").await;
    h.wait_status(&evictee, "Running").await;
    h.emulator.evict(NS, &evictee).expect("evictee runs");
    h.wait_status(&evictee, "Evicted").await;
    for member in &members {
        h.wait_status(member, "Running").await;
    }

    let table = h.kt(&["ps", "--session", "s1"]).await.expect("ps");
    let cells = rows(&table);
    assert_eq!(
        cells[0],
        [
            "NAME", "TYPE", "SESSION", "POD", "NODE", "STATUS", "RESTARTS", "AGE"
        ],
        "{table}"
    );
    // Columns are aligned: every row's POD column starts where the header's does.
    let pod_col = table
        .lines()
        .next()
        .and_then(|l| l.find("POD"))
        .expect("POD");
    for line in table.lines().skip(1) {
        assert!(line[pod_col..].starts_with("kt-s1-"), "{table}");
    }
    let node = h.emulator.node_name();
    assert_eq!(
        row(&cells, "counter")[1..7],
        ["Counter", "s1", "kt-s1-counter", node, "Running", "0"]
    );
    assert_eq!(row(&cells, "hog")[5], "OOMKilled");
    assert_eq!(row(&cells, "blocked")[4..6], ["<none>", "Unschedulable"]);
    assert_eq!(row(&cells, "puller")[5], "ErrImagePull");
    assert_eq!(row(&cells, "evictee")[5], "Evicted");
    assert_eq!(row(&cells, "trainers-0")[5], "Running");
    assert_eq!(row(&cells, "trainers-1")[3], "kt-s1-trainers-1");
    let age = &row(&cells, "counter")[7];
    assert!(age.ends_with('s'), "a fresh pod's age is in seconds: {age}");
    assert!(!table.contains("elsewhere"), "--session filters: {table}");
    assert_eq!(cells.len(), 1 + 7, "{table}");

    let json = h.kt(&["ps", "-o", "json"]).await.expect("ps -o json");
    let json: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let all = json.as_array().expect("an array");
    assert_eq!(all.len(), 8, "both sessions: {json:#}");
    let hog_row = all.iter().find(|r| r["name"] == "hog").expect("hog's row");
    assert_eq!(hog_row["status"], "OOMKilled");
    assert_eq!(hog_row["type"], "Counter");
    assert_eq!(hog_row["type_name"], "demo::Counter");
    assert_eq!(hog_row["lifetime"], "owned");
    let trainer = all
        .iter()
        .find(|r| r["name"] == "trainers-1")
        .expect("member");
    assert_eq!(trainer["group"], "trainers");
    assert_eq!(trainer["rank"], 1);

    let everywhere = h.kt(&["ps", "-A"]).await.expect("ps -A");
    let cells = rows(&everywhere);
    assert_eq!(cells[0][0], "NAMESPACE");
    assert_eq!(row(&cells, NS).len(), 9);

    let none = h.kt(&["ps", "--session", "zz"]).await.expect("ps");
    assert_eq!(
        none.trim(),
        "No kt actors of session 'zz' in namespace 'default'."
    );
}

/// A writer whose bytes a test reads as they are written (for `logs -f`).
struct ChannelWriter(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_of_an_actor_a_group_and_followed_until_the_pod_ends() {
    let h = start().await;
    let owner = h.session("s1").await;
    let talker = h
        .actor(&plan(
            "s1",
            "talker",
            owner.clone(),
            "echo hello; echo world",
        ))
        .await;
    let members = h
        .group(
            &plan(
                "s1",
                "x",
                owner.clone(),
                "echo \"I am $RANK of $WORLD_SIZE\"",
            ),
            "workers",
            2,
        )
        .await;
    h.wait_status(&talker, "Completed").await;
    for member in &members {
        h.wait_status(member, "Completed").await;
    }

    assert_eq!(
        h.kt(&["logs", "talker"]).await.expect("logs"),
        "hello\nworld\n"
    );
    assert_eq!(
        h.kt(&["logs", "talker", "--tail", "1"])
            .await
            .expect("tail"),
        "world\n"
    );
    assert_eq!(
        h.kt(&["logs", "workers"]).await.expect("group logs"),
        "[rank 0] I am 0 of 2\n[rank 1] I am 1 of 2\n"
    );
    assert_eq!(
        h.kt(&["logs", "workers-1"]).await.expect("member logs"),
        "I am 1 of 2\n"
    );
    let missing = h.kt(&["logs", "talkr"]).await.expect_err("a typo");
    assert!(
        matches!(&missing, CliError::NotFound { close, .. } if close == &["talker"]),
        "{missing}"
    );
    assert!(
        missing.to_string().contains("did you mean talker?"),
        "{missing}"
    );

    // A pod that has not started has no logs: an error naming its status without -f;
    // -f waits until it starts (here: once the node fits it again) and ends with it.
    h.emulator
        .make_unschedulable_matching("kt.dev/actor=late", "0/1 nodes are available.")
        .expect("a valid selector");
    let late = h
        .actor(&plan("s1", "late", owner.clone(), "echo late"))
        .await;
    h.wait_status(&late, "Unschedulable").await;
    let err = h.kt(&["logs", "late"]).await.expect_err("not started");
    assert!(
        err.to_string()
            .contains("has not started (status Unschedulable)"),
        "{err}"
    );
    let target = h.target.clone();
    let follow = tokio::spawn(async move {
        let args = cli::LogsArgs {
            name: "late".into(),
            follow: true,
            ..cli::LogsArgs::default()
        };
        let mut out = Vec::new();
        cli::logs(&target, &args, &mut out).await.map(|()| out)
    });
    h.emulator.clear_unschedulable();
    let out = tokio::time::timeout(WAIT, follow)
        .await
        .expect("follow ends when the pod ends")
        .expect("the task ran")
        .expect("no error");
    assert_eq!(String::from_utf8_lossy(&out), "late\n");

    // Follow: the process prints, waits for the test's signal (a file), prints again
    // and exits; `logs -f` ends because the pod ended.
    let dir = tempfile::tempdir().expect("a temp dir");
    let go = dir.path().join("go");
    let script = format!(
        "echo first; while [ ! -e {0} ]; do sleep 0.01; done; echo second",
        go.display()
    );
    let follower = h.actor(&plan("s1", "follower", owner, &script)).await;
    h.wait_status(&follower, "Running").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let target = h.target.clone();
    let follow = tokio::spawn(async move {
        let args = cli::LogsArgs {
            name: "follower".into(),
            follow: true,
            ..cli::LogsArgs::default()
        };
        cli::logs(&target, &args, &mut ChannelWriter(tx)).await
    });
    let mut seen = Vec::new();
    while !seen.ends_with(b"\n") {
        let bytes = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("in time");
        seen.extend(bytes.expect("logs -f is still running"));
    }
    assert_eq!(String::from_utf8_lossy(&seen), "first\n");
    std::fs::write(&go, b"").expect("signal the process");
    let ended = tokio::time::timeout(WAIT, follow)
        .await
        .expect("follow ends when the pod ends")
        .expect("the task ran");
    ended.expect("no error");
    let mut rest = Vec::new();
    while let Ok(bytes) = rx.try_recv() {
        rest.extend(bytes);
    }
    assert_eq!(String::from_utf8_lossy(&rest), "second\n");
}

#[tokio::test]
async fn kill_deletes_pods_secrets_and_the_group_service() {
    let h = start().await;
    let owner = h.session("s1").await;
    let victim = h.actor(&plan("s1", "victim", owner.clone(), RUNS)).await;
    let gang = h
        .group(&plan("s1", "x", owner.clone(), RUNS), "gang", 2)
        .await;
    let survivor = h.actor(&plan("s1", "survivor", owner, RUNS)).await;

    let unknown = h.kt(&["kill", "victm"]).await.expect_err("a typo");
    let message = unknown.to_string();
    assert!(
        message.contains("no actor or group named 'victm'")
            && message.contains("namespace 'default'")
            && message.contains("kubeconfig")
            && message.contains("victim"),
        "{message}"
    );

    let said = h.kt(&["kill", "victim"]).await.expect("kill");
    assert_eq!(
        said,
        format!("deleted pod/{victim}\ndeleted secret/{victim}-worker\n")
    );
    h.wait_gone::<Pod>(&victim).await;
    h.wait_gone::<Secret>(&format!("{victim}-worker")).await;

    let said = h.kt(&["kill", "gang"]).await.expect("kill a group");
    assert!(said.contains("deleted service/kt-s1-g-gang"), "{said}");
    for pod in &gang {
        assert!(said.contains(&format!("deleted pod/{pod}\n")), "{said}");
        h.wait_gone::<Pod>(pod).await;
        h.wait_gone::<Secret>(&format!("{pod}-worker")).await;
    }
    h.wait_gone::<Service>("kt-s1-g-gang").await;
    assert!(h.exists::<Pod>(&survivor).await);
    assert!(h.exists::<Secret>(&format!("{survivor}-worker")).await);
}

#[tokio::test]
async fn down_deletes_session_roots_and_with_all_detached_actors() {
    let h = start().await;
    let s1 = h.session("s1").await;
    let s2 = h.session("s2").await;
    let a = h.actor(&plan("s1", "a", s1.clone(), RUNS)).await;
    let b = h.actor(&plan("s2", "b", s2, RUNS)).await;
    let d = h.actor(&plan("s1", "d", Owner::Detached, RUNS)).await;
    // A failed detached actor's pod, which its driver handed to its session to keep it
    // for inspection until the session ends.
    let kept_plan = plan("s1", "e", Owner::Detached, RUNS);
    let mut kept_pod = actor_pod(&kept_plan).expect("a valid pod");
    let Owner::Session(root) = &s1 else {
        panic!("an owned session")
    };
    kept_pod.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: root.name.clone(),
        uid: root.uid.clone(),
        ..OwnerReference::default()
    }]);
    let e = h.create(&kept_plan, kept_pod).await;

    let said = h.kt(&["down", "--session", "s1"]).await.expect("down s1");
    assert!(
        said.starts_with(&format!(
            "deleted configmap/kt-session-s1; the garbage collector deletes what it owns: \
             pod/{a}, secret/{a}-worker"
        )),
        "{said}"
    );
    assert!(said.contains(&format!("pod/{e}")), "{said}");
    assert!(said.contains("1 detached actor(s) remain"), "{said}");
    h.wait_gone::<ConfigMap>("kt-session-s1").await;
    h.wait_gone::<Pod>(&a).await;
    h.wait_gone::<Pod>(&e).await;
    h.wait_gone::<Secret>(&format!("{a}-worker")).await;
    assert!(h.exists::<Pod>(&b).await, "another session is untouched");

    let said = h.kt(&["down"]).await.expect("down");
    assert!(
        said.starts_with("deleted configmap/kt-session-s2"),
        "{said}"
    );
    h.wait_gone::<Pod>(&b).await;
    assert!(h.exists::<Pod>(&d).await, "detached actors survive `down`");

    let said = h.kt(&["down", "--all"]).await.expect("down --all");
    assert_eq!(
        said,
        format!("deleted pod/{d}\ndeleted secret/{d}-worker\n")
    );
    h.wait_gone::<Pod>(&d).await;
    h.wait_gone::<Secret>(&format!("{d}-worker")).await;

    let said = h.kt(&["down", "--all"]).await.expect("nothing left");
    assert!(said.starts_with("Nothing to delete"), "{said}");
}

#[tokio::test]
async fn manifest_output_parses_back_into_kubernetes_types() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let patch = dir.path().join("patch.json");
    std::fs::write(&patch, r#"{"metadata": {"labels": {"team": "rl"}}}"#).expect("written");
    let patch = patch.display().to_string();
    let argv = [
        "kt",
        "-n",
        "ml",
        "manifest",
        "--type",
        "rl::Trainer",
        "--image",
        "ghcr.io/team/rl:1",
        "--replicas",
        "2",
        "--gpus",
        "1",
        "--cpus",
        "4",
        "--memory",
        "32Gi",
        "--env",
        "RUST_LOG=info",
        "--node-selector",
        "pool=gpu",
        "--toleration",
        "nvidia.com/gpu:NoSchedule",
        "--placement",
        "spread",
        "--queue",
        "team-a",
        "--patch",
        &patch,
        "--session",
        "abc",
        "--session-uid",
        "0a1b",
        "--command",
        "/app/bin/train",
        "--serve",
    ];
    let cli = Cli::try_parse_from(argv).expect("valid arguments");
    let mut out = Vec::new();
    cli::run(&cli, &mut out).await.expect("manifest");
    let yaml = String::from_utf8(out).expect("UTF-8");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).expect("YAML");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "Service", "Secret", "Pod", "Secret", "Pod"],
        "{yaml}"
    );
    let root: ConfigMap = serde_json::from_value(docs[0].clone()).expect("a ConfigMap");
    assert_eq!(root.metadata.name.as_deref(), Some("kt-session-abc"));
    let service: Service = serde_json::from_value(docs[1].clone()).expect("a Service");
    assert_eq!(service.metadata.name.as_deref(), Some("kt-abc-g-trainer"));
    let secret: Secret = serde_json::from_value(docs[2].clone()).expect("a Secret");
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("kt-abc-trainer-0-worker")
    );
    assert!(yaml.contains("# PLACEHOLDER: every key is empty"), "{yaml}");
    for (rank, doc) in [&docs[3], &docs[5]].into_iter().enumerate() {
        let pod: Pod = serde_json::from_value(doc.clone()).expect("a Pod");
        assert_eq!(pod.metadata.name, Some(format!("kt-abc-trainer-{rank}")));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ml"));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("team").map(String::as_str),
            Some("rl"),
            "the patch"
        );
        let owners = pod.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].uid, "0a1b");
        let spec = pod.spec.expect("a spec");
        let container = &spec.containers[0];
        assert_eq!(
            container.command.as_deref(),
            Some(&["/app/bin/train".to_string(), "--serve".to_string()][..])
        );
        let limits = container.resources.as_ref().and_then(|r| r.limits.clone());
        assert_eq!(
            limits.map(|l| l["nvidia.com/gpu"].0.clone()),
            Some("1".to_string())
        );
        assert_eq!(spec.tolerations.map(|t| t.len()), Some(1));
        assert!(spec.affinity.is_some(), "placement spread");
    }

    // Without --session-uid, no owner references (a made-up uid would let the garbage
    // collector delete the objects right after they are applied).
    let cli = Cli::try_parse_from([
        "kt",
        "manifest",
        "--type",
        "demo::Counter",
        "--image",
        "x:1",
        "--command",
        "/app/demo",
    ])
    .expect("valid");
    let mut out = Vec::new();
    cli::run(&cli, &mut out).await.expect("manifest");
    let yaml = String::from_utf8(out).expect("UTF-8");
    assert!(!yaml.contains("ownerReferences:"), "{yaml}");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).expect("YAML");
    let pod: Pod = serde_json::from_value(docs[2].clone()).expect("a Pod");
    assert_eq!(pod.metadata.name.as_deref(), Some("kt-manual-counter"));
    // Without --port, the port the placement's workers listen on (and its driver dials).
    let ports = pod.spec.and_then(|s| s.containers.first()?.ports.clone());
    assert_eq!(
        ports.and_then(|p| Some(p.first()?.container_port)),
        Some(i32::from(kt_k8s::placement::DEFAULT_PORT)),
        "{yaml}"
    );

    let cli =
        Cli::try_parse_from(["kt", "manifest", "--type", "T", "--image", "x:1"]).expect("valid");
    let err = cli::run(&cli, &mut Vec::new())
        .await
        .expect_err("no command");
    assert!(err.to_string().contains("--command"), "{err}");
    let cli = Cli::try_parse_from([
        "kt",
        "manifest",
        "--type",
        "T",
        "--image",
        "x:1",
        "--env",
        "NOVALUE",
        "--command",
        "/x",
    ])
    .expect("valid");
    let err = cli::run(&cli, &mut Vec::new()).await.expect_err("bad env");
    assert!(err.to_string().contains("KEY=VALUE"), "{err}");
}

#[tokio::test]
async fn the_kt_binary_reads_the_kubeconfig_flag() {
    let h = start().await;
    let owner = h.session("s1").await;
    let pod = h.actor(&plan("s1", "counter", owner, RUNS)).await;
    h.wait_status(&pod, "Running").await;

    let run = |args: Vec<String>| async move {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kt"));
        command.args(args).kill_on_drop(true);
        tokio::time::timeout(WAIT, command.output())
            .await
            .expect("kt finishes")
            .expect("kt runs")
    };
    let kubeconfig = h.kubeconfig.display().to_string();
    let output = run(vec!["--kubeconfig".into(), kubeconfig.clone(), "ps".into()]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cells = rows(&stdout);
    assert_eq!(cells[0][0], "NAME");
    assert_eq!(row(&cells, "counter")[5], "Running");

    let missing = dir_path(&h).join("nope");
    let output = run(vec![
        "--kubeconfig".into(),
        missing.display().to_string(),
        "ps".into(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.starts_with("kt: cannot use kubeconfig ") && stderr.contains("nope"),
        "{stderr}"
    );
}

fn dir_path(h: &Harness) -> PathBuf {
    h.kubeconfig.parent().map(PathBuf::from).unwrap_or_default()
}

#[tokio::test]
async fn errors_name_the_kubeconfig_context_and_namespace() {
    let h = start().await;
    let path = h.kubeconfig.display().to_string();

    let err = h
        .kt(&["--context", "nope", "ps"])
        .await
        .expect_err("no such context");
    let message = err.to_string();
    assert!(
        matches!(err, CliError::Config { .. })
            && message.contains(&format!("kubeconfig {path}, context 'nope'"))
            && message.contains("--context NAME"),
        "{message}"
    );

    let err = h
        .kt(&["ps", "--session", "a,b"])
        .await
        .expect_err("not a session id");
    assert!(
        err.to_string().contains("session id 'a,b' is not valid"),
        "{err}"
    );

    let other = h
        .kt(&["-n", "other", "ps"])
        .await
        .expect("ps in another namespace");
    assert_eq!(other.trim(), "No kt actors in namespace 'other'.");

    // The API server goes away: the error says where kt was looking and what to check.
    h.emulator.shutdown().await;
    let err = h.target.clone();
    let err = cli::ps(&err, &cli::PsArgs::default(), &mut Vec::new())
        .await
        .expect_err("the server is gone");
    let message = err.to_string();
    assert!(
        message.starts_with("listing kt's actor pods in namespace 'default' (kubeconfig ")
            && message.contains(&path)
            && message.contains("kubectl cluster-info"),
        "{message}"
    );
}
