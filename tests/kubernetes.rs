//! The Kubernetes placement end to end, through the real `kube` client and a kubeconfig,
//! against the API-server emulator (which runs each pod's command — this test binary, in
//! worker mode — as a local process with an IP of its own, in the emulated node's network
//! namespace unless `KT_EMULATOR_NETWORK=loopback`).

mod support;

use std::sync::Arc;

use kt::prelude::*;
use support::{Accumulator, Cluster, Counter, Relay, cluster, probe};

fn on_k8s(cluster: &Cluster) -> Arc<dyn kt::Placement> {
    Arc::new(cluster.k8s.clone())
}

fn pod_of(cluster: &Cluster, actor: &str) -> String {
    kt_k8s::manifest::pod_name(cluster.k8s.session(), actor)
}

#[kt::test]
async fn an_actor_in_a_pod_answers_calls_and_is_killed_with_its_pod() {
    let c = cluster().await;
    let acc = Accumulator::spawn(40)
        .name("k8s-acc")
        .on(on_k8s(c))
        .await
        .unwrap();
    assert_eq!(acc.add(2).await.unwrap(), 42);
    assert_eq!(acc.total().await.unwrap(), 42);
    acc.kill();
    assert!(matches!(
        acc.total().await,
        Err(Error::ActorDied {
            cause: DeathCause::Killed,
            ..
        })
    ));
}

/// The driver's node listens where pods can reach it, so a handle to an actor living in
/// the driver works from a pod: in the node-namespace emulator the pod's loopback is not
/// the driver's, so a driver bound to 127.0.0.1 would fail this.
#[kt::test]
async fn an_actor_in_a_pod_calls_an_actor_living_in_the_driver() {
    let c = cluster().await;
    let in_driver = Accumulator::spawn(10)
        .on(Arc::new(kt::InProcess))
        .await
        .unwrap();
    let relay = Relay::spawn().on(on_k8s(c)).await.unwrap();
    let (total, reached_at) = relay.add_through(in_driver.clone(), 5).await.unwrap();
    assert_eq!(total, 15);
    assert_eq!(in_driver.total().await.unwrap(), 15);
    let reached: std::net::SocketAddr = reached_at.parse().expect("a node address");
    assert_eq!(reached.ip(), c.emulator.host_address(), "{reached_at}");
}

/// `kt ARGS...` as an operator runs it, through the emulator's kubeconfig (the `kt`
/// command's library entry point, which its binary calls).
async fn kt_command(cluster: &Cluster, args: &[&str]) -> String {
    let global = kt_k8s::cli::GlobalArgs {
        kubeconfig: Some(cluster.kubeconfig.clone()),
        ..Default::default()
    };
    let target = kt_k8s::cli::connect(&global).await.unwrap();
    let mut out = Vec::new();
    match args {
        ["kill", name] => {
            let args = kt_k8s::cli::KillArgs {
                name: name.to_string(),
                session: None,
            };
            kt_k8s::cli::kill(&target, &args, &mut out).await.unwrap();
        }
        ["logs", name] => {
            let args = kt_k8s::cli::LogsArgs {
                name: name.to_string(),
                ..Default::default()
            };
            kt_k8s::cli::logs(&target, &args, &mut out).await.unwrap();
        }
        ["down", "--session", session] => {
            let args = kt_k8s::cli::DownArgs {
                session: Some(session.to_string()),
                all: false,
            };
            kt_k8s::cli::down(&target, &args, &mut out).await.unwrap();
        }
        other => panic!("not a kt command these tests run: {other:?}"),
    }
    String::from_utf8(out).unwrap()
}

#[kt::test]
async fn a_pod_deleted_by_someone_else_is_pod_deleted() {
    let c = cluster().await;
    let acc = Accumulator::spawn(1)
        .name("k8s-deleted")
        .on(on_k8s(c))
        .await
        .unwrap();
    assert_eq!(acc.add(1).await.unwrap(), 2);
    // Someone else (kubectl, a controller) deletes the pod, gracefully as kubectl does.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(c.kube_client().await, c.k8s.namespace());
    pods.delete(&pod_of(c, "k8s-deleted"), &Default::default())
        .await
        .unwrap();
    let cause = acc.raw().erase().stopped().await;
    assert_eq!(cause, DeathCause::PodDeleted);
    assert!(matches!(
        acc.total().await,
        Err(Error::ActorDied {
            cause: DeathCause::PodDeleted,
            ..
        })
    ));
}

#[kt::test]
async fn kt_kill_and_kt_down_reach_the_driver_as_pod_deleted() {
    let c = cluster().await;
    let killed = Accumulator::spawn(0)
        .name("k8s-kt-killed")
        .on(on_k8s(c))
        .await
        .unwrap();
    // A session of its own: `kt down` ends it without touching the other tests' actors.
    let session = support::kubernetes_from(
        &c.kubeconfig,
        kt::Reach::detect(),
        c.emulator.host_address().into(),
    )
    .await;
    let downed = Accumulator::spawn(0)
        .name("k8s-kt-downed")
        .on(Arc::new(session.clone()))
        .await
        .unwrap();
    assert_eq!(killed.add(1).await.unwrap(), 1);
    assert_eq!(downed.add(1).await.unwrap(), 1);

    let said = kt_command(c, &["kill", "k8s-kt-killed"]).await;
    assert!(said.contains(&pod_of(c, "k8s-kt-killed")), "{said}");
    assert_eq!(killed.raw().erase().stopped().await, DeathCause::PodDeleted);
    assert!(matches!(
        killed.total().await,
        Err(Error::ActorDied {
            cause: DeathCause::PodDeleted,
            ..
        })
    ));

    let said = kt_command(c, &["down", "--session", session.session().as_str()]).await;
    assert!(said.contains("kt-session-"), "{said}");
    assert_eq!(downed.raw().erase().stopped().await, DeathCause::PodDeleted);
    assert!(matches!(
        downed.total().await,
        Err(Error::ActorDied {
            cause: DeathCause::PodDeleted,
            ..
        })
    ));
}

#[kt::test]
async fn kill_retries_the_deletes_the_api_server_fails() {
    let c = cluster().await;
    let acc = Accumulator::spawn(0)
        .name("k8s-kill-retried")
        .on(on_k8s(c))
        .await
        .unwrap();
    let (ns, pod) = (c.k8s.namespace(), pod_of(c, "k8s-kill-retried"));
    let secret = kt_k8s::manifest::worker_secret_of_pod(&pod);
    c.emulator.fail_deletes("pods", ns, &pod, 3);
    c.emulator.fail_deletes("secrets", ns, &secret, 3);
    acc.kill();
    c.k8s.deletions_settled().await;
    // Deleted all the same: the fourth tries went through.
    let client = c.kube_client().await;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), ns);
    let left = pods.get_opt(&pod).await.unwrap();
    assert!(
        left.as_ref()
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
        "{left:?}"
    );
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, ns);
    assert!(secrets.get_opt(&secret).await.unwrap().is_none());
}

#[kt::test]
async fn a_kill_whose_pod_cannot_be_deleted_leaves_the_actor_found_by_name() {
    let c = cluster().await;
    let acc = Accumulator::spawn(5)
        .name("k8s-kill-refused")
        .detached()
        .on(on_k8s(c))
        .await
        .unwrap();
    let (ns, pod) = (c.k8s.namespace(), pod_of(c, "k8s-kill-refused"));
    c.emulator.fail_deletes("pods", ns, &pod, u32::MAX);
    acc.kill();
    c.k8s.deletions_settled().await;
    // The retries gave up: the pod still runs, and a lookup by name says so.
    let found: ActorRef<Accumulator> = kt::get_actor("k8s-kill-refused").await.unwrap();
    assert_eq!(found.total().await.unwrap(), 5);
    c.emulator.allow_deletes("pods", ns, &pod);
    found.kill();
    c.k8s.deletions_settled().await;
    assert!(matches!(
        kt::get_actor::<Accumulator>("k8s-kill-refused").await,
        Err(Error::ActorNotFound { .. })
    ));
}

/// `kt ps --session S`'s rows, by actor name: (status, lifetime).
async fn ps_of(cluster: &Cluster, session: &str) -> std::collections::BTreeMap<String, String> {
    let global = kt_k8s::cli::GlobalArgs {
        kubeconfig: Some(cluster.kubeconfig.clone()),
        ..Default::default()
    };
    let target = kt_k8s::cli::connect(&global).await.unwrap();
    let args = kt_k8s::cli::PsArgs {
        session: Some(session.to_string()),
        ..Default::default()
    };
    let rows = kt_k8s::cli::ps_rows(&target, &args).await.unwrap();
    rows.into_iter().map(|row| (row.name, row.status)).collect()
}

#[kt::test]
async fn a_crashed_actors_pod_stays_for_inspection_until_the_session_ends() {
    let c = cluster().await;
    // A session of its own, which the test ends.
    let session = support::kubernetes_from(
        &c.kubeconfig,
        kt::Reach::detect(),
        c.emulator.host_address().into(),
    )
    .await;
    let id = session.session().as_str().to_string();
    let owned = Accumulator::spawn(0)
        .name("k8s-kept")
        .on(Arc::new(session.clone()))
        .await
        .unwrap();
    let detached = Accumulator::spawn(0)
        .name("k8s-kept-detached")
        .detached()
        .on(Arc::new(session.clone()))
        .await
        .unwrap();
    owned
        .say("last words before the OOM kill".into())
        .await
        .unwrap();
    let pod = |actor: &str| kt_k8s::manifest::pod_name(session.session(), actor);
    let ns = session.namespace().to_string();
    c.emulator.oom_kill(&ns, &pod("k8s-kept")).unwrap();
    c.emulator.oom_kill(&ns, &pod("k8s-kept-detached")).unwrap();
    assert_eq!(owned.raw().erase().stopped().await, DeathCause::OomKilled);
    assert_eq!(
        detached.raw().erase().stopped().await,
        DeathCause::OomKilled
    );
    session.deletions_settled().await;

    // Both pods are still there, as `kt ps` shows them, with their output.
    let rows = ps_of(c, &id).await;
    assert_eq!(
        rows.get("k8s-kept").map(String::as_str),
        Some("OOMKilled"),
        "{rows:?}"
    );
    assert_eq!(
        rows.get("k8s-kept-detached").map(String::as_str),
        Some("OOMKilled"),
        "{rows:?}"
    );
    let logs = kt_command(c, &["logs", "k8s-kept"]).await;
    assert!(logs.contains("last words before the OOM kill"), "{logs}");
    // Their worker Secrets (TLS identities) went at once; the detached actor's pod now
    // belongs to the session, which the owned one did all along.
    let client = c.kube_client().await;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), &ns);
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, &ns);
    for actor in ["k8s-kept", "k8s-kept-detached"] {
        let secret = kt_k8s::manifest::worker_secret_of_pod(&pod(actor));
        assert!(
            secrets.get_opt(&secret).await.unwrap().is_none(),
            "{secret}"
        );
        let kept = pods.get(&pod(actor)).await.unwrap();
        let owners = kept.metadata.owner_references.unwrap_or_default();
        assert_eq!(
            owners.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
            [kt_k8s::manifest::session_root_name(session.session())],
            "{actor}"
        );
    }
    // A dead actor's name is free: a new actor takes it (and its pod's name) in the same
    // session.
    let again = Accumulator::spawn(7)
        .name("k8s-kept")
        .on(Arc::new(session.clone()))
        .await
        .unwrap();
    assert_eq!(again.total().await.unwrap(), 7);

    // Ending the session removes them.
    session.shutdown().await.unwrap();
    for actor in ["k8s-kept", "k8s-kept-detached"] {
        let name = pod(actor);
        let gone = kube::runtime::wait::await_condition(
            pods.clone(),
            &name,
            |p: Option<&k8s_openapi::api::core::v1::Pod>| p.is_none(),
        );
        let waited = tokio::time::timeout(std::time::Duration::from_secs(30), gone).await;
        assert!(matches!(waited, Ok(Ok(_))), "{actor}'s pod is still there");
    }
    assert!(ps_of(c, &id).await.is_empty());
}

/// The address of the pod an actor runs in, as this driver dials it.
fn node_of<A: kt::Actor>(actor: &ActorRef<A>) -> std::net::SocketAddr {
    kt::handle_wire::address_of(&actor.raw().erase())
        .unwrap()
        .node
        .parse()
        .unwrap()
}

#[kt::test]
async fn outside_the_cluster_calls_go_through_a_port_forward() {
    let c = cluster().await;
    // This test process is not in a pod: the default reach is the port-forward.
    let acc = Accumulator::spawn(1)
        .name("k8s-forwarded")
        .on(on_k8s(c))
        .await
        .unwrap();
    assert_eq!(acc.add(1).await.unwrap(), 2);
    let forwarded = kt_transport::Node::global().unwrap().forwarded_peers();
    assert!(forwarded.contains(&node_of(&acc)), "{forwarded:?}");
}

#[kt::test]
async fn on_the_pod_network_calls_go_straight_to_the_pod() {
    let c = cluster().await;
    let direct = support::kubernetes_from(
        &c.kubeconfig,
        kt_k8s::Reach::Direct,
        c.emulator.host_address().into(),
    )
    .await;
    let acc = Accumulator::spawn(1)
        .name("k8s-direct")
        .on(Arc::new(direct))
        .await
        .unwrap();
    assert_eq!(acc.add(1).await.unwrap(), 2);
    let forwarded = kt_transport::Node::global().unwrap().forwarded_peers();
    assert!(!forwarded.contains(&node_of(&acc)), "{forwarded:?}");
}

#[kt::test]
async fn placement_groups_become_pod_affinity() {
    let c = cluster().await;
    let group = Accumulator::spawn_group(2, 0)
        .name("k8s-spread")
        .placement_group("replicas", kt::PlacementStrategy::Spread)
        .on(on_k8s(c))
        .await
        .unwrap();
    assert_eq!(group.all().add(1).await.unwrap(), vec![1, 1]);
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&c.kubeconfig).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client, c.k8s.namespace());
    let mut nodes = std::collections::BTreeSet::new();
    for rank in 0..2 {
        let pod = pods
            .get(&pod_of(c, &format!("k8s-spread-{rank}")))
            .await
            .unwrap();
        nodes.insert(node_name(&pod));
        let affinity = pod.spec.and_then(|s| s.affinity).expect("an affinity");
        let apart = affinity
            .pod_anti_affinity
            .expect("anti-affinity for Spread");
        assert!(
            apart
                .preferred_during_scheduling_ignored_during_execution
                .is_some()
        );
    }
    // The emulator has two nodes and honours preferred anti-affinity while it can.
    assert_eq!(nodes.len(), support::NODES, "{nodes:?}");
}

/// The node a pod was scheduled to.
fn node_name(pod: &k8s_openapi::api::core::v1::Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .expect("a scheduled pod")
}

/// Actors of a `StrictSpread` group land on different emulated nodes, and one calls the
/// other with a handle it was passed, straight at the other's pod IP: an address one pod
/// exports is reachable from another host. In the node-namespace emulator each node is a
/// network namespace of its own, so this call crosses between hosts through the routes
/// between them, as on a cluster; it does not go through this driver. The pod on the
/// second node also reaches an actor living in the driver.
#[kt::test]
async fn actors_spread_strictly_land_on_different_nodes_and_call_each_other() {
    let c = cluster().await;
    let group = "k8s-strict-spread";
    let target = Accumulator::spawn(10)
        .name("k8s-apart-target")
        .placement_group(group, kt::PlacementStrategy::StrictSpread)
        .on(on_k8s(c))
        .await
        .unwrap();
    let caller = Relay::spawn()
        .name("k8s-apart-caller")
        .placement_group(group, kt::PlacementStrategy::StrictSpread)
        .on(on_k8s(c))
        .await
        .unwrap();
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(c.kube_client().await, c.k8s.namespace());
    let target_pod = pods.get(&pod_of(c, "k8s-apart-target")).await.unwrap();
    let caller_pod = pods.get(&pod_of(c, "k8s-apart-caller")).await.unwrap();
    assert_ne!(node_name(&target_pod), node_name(&caller_pod));

    let (total, reached_at) = caller.add_through(target.clone(), 5).await.unwrap();
    assert_eq!(total, 15);
    assert_eq!(target.total().await.unwrap(), 15);
    let reached: std::net::SocketAddr = reached_at.parse().expect("a node address");
    let target_ip = target_pod.status.and_then(|s| s.pod_ip);
    assert_eq!(Some(reached.ip().to_string()), target_ip, "{reached_at}");

    // The caller went second, so to the second node: the driver, bound at the first
    // node's host address, answers it too.
    assert_ne!(node_name(&caller_pod), c.emulator.node_name());
    let in_driver = Accumulator::spawn(1)
        .on(Arc::new(kt::InProcess))
        .await
        .unwrap();
    // A clone: the driver's own handle keeps its actor alive while the pod holds one.
    let (total, reached_at) = caller.add_through(in_driver.clone(), 1).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(in_driver.total().await.unwrap(), 2);
    let reached: std::net::SocketAddr = reached_at.parse().expect("a node address");
    assert_eq!(reached.ip(), c.emulator.host_address(), "{reached_at}");
}

#[kt::test]
async fn a_group_gets_ranks_and_broadcasts_in_rank_order() {
    let c = cluster().await;
    let group = Counter::spawn_group(3, 5, "k8s-group".into(), probe().await)
        .name("k8s-trainers")
        .on(on_k8s(c))
        .await
        .unwrap();
    let who = group.all().whoami().await.unwrap();
    for (rank, (name, member, _)) in who.iter().enumerate() {
        assert_eq!(
            name.as_deref(),
            Some(format!("k8s-trainers-{rank}").as_str())
        );
        assert_eq!(*member, Some(GroupMember { rank, size: 3 }));
    }
    assert_eq!(group.all().add(1).await.unwrap(), vec![6, 6, 6]);
    // Each member saw torchrun's environment.
    let ranks = group.all().env_var("RANK".into()).await.unwrap();
    assert_eq!(
        ranks,
        vec![Some("0".into()), Some("1".into()), Some("2".into())]
    );
}

#[kt::test]
async fn an_oom_killed_pod_fails_waiting_calls_with_oom_killed() {
    let c = cluster().await;
    let tag = "k8s/oom".to_string();
    let counter = Counter::spawn(0, tag.clone(), probe().await)
        .name("k8s-oom")
        .on(on_k8s(c))
        .await
        .unwrap();
    let waiting = counter.wait_for_gate(tag.clone());
    support::gauge_reaches(&tag, 1).await;
    let killed_at = std::time::Instant::now();
    c.emulator
        .oom_kill(c.k8s.namespace(), &pod_of(c, "k8s-oom"))
        .unwrap();
    match waiting.await {
        Err(Error::ActorDied {
            cause: DeathCause::OomKilled,
            ..
        }) => {}
        other => panic!("expected ActorDied(OomKilled), got {other:?}"),
    }
    // A figure for the notes (the target is 2 s from the status change), not a check.
    println!("OOM kill to ActorDied: {:?}", killed_at.elapsed());
}

#[kt::test]
async fn evicted_and_preempted_pods_are_actor_died_with_their_reason() {
    let c = cluster().await;
    let evicted = Accumulator::spawn(0)
        .name("k8s-evicted")
        .on(on_k8s(c))
        .await
        .unwrap();
    let preempted = Accumulator::spawn(0)
        .name("k8s-preempted")
        .on(on_k8s(c))
        .await
        .unwrap();
    c.emulator
        .evict(c.k8s.namespace(), &pod_of(c, "k8s-evicted"))
        .unwrap();
    c.emulator
        .preempt(c.k8s.namespace(), &pod_of(c, "k8s-preempted"))
        .unwrap();
    let cause = evicted.raw().erase().stopped().await;
    assert!(matches!(cause, DeathCause::Evicted { .. }), "{cause:?}");
    let cause = preempted.raw().erase().stopped().await;
    assert!(matches!(cause, DeathCause::Preempted { .. }), "{cause:?}");
    assert!(matches!(
        evicted.total().await,
        Err(Error::ActorDied {
            cause: DeathCause::Evicted { .. },
            ..
        })
    ));
}

#[kt::test]
async fn a_pod_that_fits_no_node_is_unschedulable_with_the_schedulers_message() {
    let c = cluster().await;
    let result = Accumulator::spawn(0)
        .name("k8s-gpu")
        .compute(Compute::new().gpus(1))
        .on(on_k8s(c))
        .await;
    match result {
        Err(Error::ActorDied {
            cause: DeathCause::Unschedulable { message },
            ..
        }) => assert!(message.contains("Insufficient nvidia.com/gpu"), "{message}"),
        other => panic!(
            "expected ActorDied(Unschedulable), got {:?}",
            other.map(|_| ())
        ),
    }
}

#[kt::test]
async fn an_image_that_cannot_be_pulled_is_image_pull_failed() {
    let c = cluster().await;
    c.emulator.fail_image_pull("registry.invalid/missing:1");
    let result = Accumulator::spawn(0)
        .name("k8s-bad-image")
        .compute(Compute::new().image("registry.invalid/missing:1"))
        .on(on_k8s(c))
        .await;
    match result {
        Err(Error::ActorDied {
            cause: DeathCause::ImagePullFailed { reason, .. },
            ..
        }) => assert!(reason.contains("ImagePull"), "{reason}"),
        other => panic!(
            "expected ActorDied(ImagePullFailed), got {:?}",
            other.map(|_| ())
        ),
    }
}

#[kt::test]
async fn a_command_that_cannot_start_keeps_kubernetes_reason_and_message() {
    let c = cluster().await;
    let result = Accumulator::spawn(0)
        .name("k8s-no-binary")
        .compute(Compute::new().command(["/usr/local/bin/kt-no-such-binary"]))
        .on(on_k8s(c))
        .await;
    let error = match result {
        Err(error) => error,
        Ok(_) => panic!("a pod without its binary spawned"),
    };
    match &error {
        Error::ActorDied {
            cause: DeathCause::ContainerStartFailed { reason, message },
            ..
        } => {
            assert_eq!(reason, "StartError");
            assert!(
                message.contains("\"/usr/local/bin/kt-no-such-binary\"")
                    && message.contains("No such file or directory"),
                "{message}"
            );
        }
        other => panic!("expected ActorDied(ContainerStartFailed), got {other:?}"),
    }
    // What to do: fix the image or the command; restarting would not help.
    let said = error.to_string();
    assert!(
        said.contains("check the pod's image and the command"),
        "{said}"
    );
    assert!(!said.contains("max_restarts"), "{said}");
}

/// A container the kubelet restarts (restartPolicy Always) is dead at its first exit,
/// with that exit's code, whether the driver sees it terminated, running again or in
/// CrashLoopBackOff: the worker it would attach to is gone either way.
#[kt::test]
async fn a_container_that_keeps_crashing_is_dead_with_its_first_exit_code() {
    let c = cluster().await;
    let result = Accumulator::spawn(0)
        .name("k8s-crashing")
        .compute(
            Compute::new()
                .command(["/bin/false"])
                .pod_patch(serde_json::json!({"spec": {"restartPolicy": "Always"}})),
        )
        .on(on_k8s(c))
        .await;
    match result {
        Err(Error::ActorDied {
            cause: DeathCause::Exited { code: 1 },
            ..
        }) => {}
        other => panic!(
            "expected ActorDied(Exited {{ code: 1 }}), got {:?}",
            other.map(|_| ())
        ),
    }
}

/// The environment variable that makes the next test the first driver of the detached test.
const DETACHED_ROLE: &str = "KT_TEST_K8S_DETACHED";

/// Not a test of its own: the first driver of
/// `a_detached_actor_outlives_its_driver_and_another_driver_finds_it`.
#[kt::test]
#[ignore = "run as a child process by a_detached_actor_outlives_its_driver_and_another_driver_finds_it"]
async fn detached_role_spawns_a_detached_actor_on_kubernetes() {
    let Some(kubeconfig) = std::env::var_os(DETACHED_ROLE) else {
        return;
    };
    let k8s =
        // Nothing in a pod calls back into this driver: loopback will do.
        support::kubernetes_from(
            std::path::Path::new(&kubeconfig),
            kt::Reach::detect(),
            std::net::Ipv4Addr::LOCALHOST.into(),
        )
        .await;
    let acc = Accumulator::spawn(40)
        .name("k8s-detached")
        .detached()
        .on(Arc::new(k8s))
        .await
        .unwrap();
    acc.add(2).await.unwrap();
    println!("SPAWNED");
}

#[kt::test]
async fn a_detached_actor_outlives_its_driver_and_another_driver_finds_it() {
    let c = cluster().await;
    let exe = std::env::current_exe().unwrap();
    let first = tokio::process::Command::new(exe)
        .args([
            "detached_role_spawns_a_detached_actor_on_kubernetes",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(DETACHED_ROLE, &c.kubeconfig)
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("SPAWNED"),
        "{first:?}"
    );
    // The first driver has exited; this one finds the actor by name.
    let found: ActorRef<Accumulator> = kt::get_actor("k8s-detached").await.unwrap();
    assert_eq!(found.total().await.unwrap(), 42);
    assert!(matches!(
        Accumulator::spawn(0)
            .name("k8s-detached")
            .on(on_k8s(c))
            .await,
        Err(Error::NameTaken { .. })
    ));
    found.kill();
    assert!(matches!(
        found.total().await,
        Err(Error::ActorDied {
            cause: DeathCause::Killed,
            ..
        })
    ));
    // Killing it deleted its pod: the name is free.
    let mut tries = 0;
    while kt::get_actor::<Accumulator>("k8s-detached").await.is_ok() {
        tries += 1;
        assert!(tries < 1000, "the pod of a killed actor is still found");
        tokio::task::yield_now().await;
    }
}
