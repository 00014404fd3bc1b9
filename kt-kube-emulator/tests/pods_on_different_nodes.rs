//! With `PodNetwork::NodeNamespace` and several nodes, each node is a host of its own: a
//! pod reaches a pod of another node at its pod IP (TCP and UDP, routed through this
//! machine, no address translation, past strict reverse-path filtering on the nodes'
//! links), never at its loopback; nodes do not share
//! `/dev/shm`; the emulator's host address answers pods of every node; and every node's
//! link, address and forwarding setting go with the emulator.
//!
//! Needs root: skipped, saying why, without it, unless `KT_EMULATOR_NETWORK=namespace`
//! makes that a failure (CI). Servers and clients are `/usr/bin/perl` (perl-base).

mod common;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use common::{Harness, is_ready, phase, shell_pod, wait_pod};
use kt_kube_emulator::EmulatorConfig;
use kube::api::LogParams;
use serde_json::{Value, json};

const FIRST: &str = "kt-emulator-node";
const SECOND: &str = "kt-emulator-node-2";
const PORT: &str = "7000";

/// A pod on `node` running `/usr/bin/perl -e script` in each of `containers` (name,
/// script), with `PORT` and `env` in its environment.
fn perl_pod(name: &str, node: &str, containers: &[(&str, &str)], env: Value) -> Value {
    let mut pod = shell_pod(name, "", "Never");
    pod["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": node});
    let mut all_env = json!([{"name": "PORT", "value": PORT}]);
    if let (Some(all), Some(more)) = (all_env.as_array_mut(), env.as_array()) {
        all.extend(more.iter().cloned());
    }
    pod["spec"]["containers"] = containers
        .iter()
        .map(|(container, script)| {
            json!({
                "name": container, "image": "perl",
                "command": ["/usr/bin/perl", "-MIO::Socket::INET", "-MIO::Select", "-e", script],
                "env": all_env,
            })
        })
        .collect();
    pod
}

/// Echoes each line on TCP as `tcp LINE from PEER`, on every address of its node.
const TCP_SERVER: &str = r#"
    $SIG{PIPE} = "IGNORE";
    my $s = IO::Socket::INET->new(LocalAddr => "0.0.0.0", LocalPort => $ENV{PORT},
        Listen => 16, ReuseAddr => 1, Proto => "tcp") or die "listen: $!";
    while (my $c = $s->accept) {
        my $line = <$c>;
        if (defined $line) { chomp $line; print $c "tcp $line from " . $c->peerhost . "\n"; }
        close $c;
    }
"#;

/// Echoes each datagram as `udp MESSAGE from PEER`, on every address of its node.
const UDP_SERVER: &str = r#"
    my $s = IO::Socket::INET->new(LocalAddr => "0.0.0.0", LocalPort => $ENV{PORT},
        Proto => "udp") or die "bind: $!";
    while (1) {
        my $peer = $s->recv(my $m, 1024);
        next unless defined $peer;
        my ($port, $addr) = Socket::sockaddr_in($peer);
        $s->send("udp $m from " . Socket::inet_ntoa($addr), 0, $peer);
    }
"#;

/// Ready once the UDP server answers on the node's loopback (an exec probe runs in the
/// pod's node).
const UDP_READY: &str = r#"
    my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $ENV{PORT},
        Proto => "udp") or exit 1;
    $c->send("probe");
    IO::Select->new($c)->can_read(0.5) or exit 1;
    defined $c->recv(my $m, 1024) or exit 1;
    exit($m =~ /^udp probe/ ? 0 : 1);
"#;

/// Says what the TCP and UDP servers answer at `$SERVER` and at this node's loopback.
const CLIENT: &str = r#"
    sub tcp {
        my $c = IO::Socket::INET->new(PeerAddr => $_[0], PeerPort => $ENV{PORT},
            Proto => "tcp", Timeout => 5) or return "refused";
        print $c "hello\n";
        my $l = <$c>;
        return "no answer" unless defined $l;
        chomp $l;
        return $l;
    }
    sub udp {
        my $c = IO::Socket::INET->new(PeerAddr => $_[0], PeerPort => $ENV{PORT},
            Proto => "udp") or return "no socket";
        # A datagram may be lost; an answer ends the tries.
        for (1 .. 3) {
            $c->send("hello");
            next unless IO::Select->new($c)->can_read(1);
            return "refused" unless defined $c->recv(my $m, 1024);
            return $m;
        }
        return "no answer";
    }
    print "pod tcp: ", tcp($ENV{SERVER}), "\n";
    print "pod udp: ", udp($ENV{SERVER}), "\n";
    print "loopback tcp: ", tcp("127.0.0.1"), "\n";
    print "loopback udp: ", udp("127.0.0.1"), "\n";
"#;

/// The logs of a pod that ran to completion, as `label: value` pairs.
async fn report_of(h: &Harness, name: &str) -> Vec<(String, String)> {
    let done = wait_pod(&h.pods(), name, "done", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    let logs = h
        .pods()
        .logs(name, &LogParams::default())
        .await
        .expect("logs");
    assert_eq!(phase(&done), "Succeeded", "{name}: {logs}");
    logs.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn value<'a>(report: &'a [(String, String)], key: &str) -> &'a str {
    report
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// `a.b.c` of `a.b.c.d`.
fn block(ip: &str) -> &str {
    ip.rsplit_once('.').map_or("", |(b, _)| b)
}

async fn pod_ip(h: &Harness, name: &str) -> String {
    let pod = wait_pod(&h.pods(), name, "bound", |p| {
        p.status.as_ref().is_some_and(|s| s.pod_ip.is_some())
    })
    .await;
    pod.status.and_then(|s| s.pod_ip).unwrap_or_default()
}

/// `ip -br addr`: one line per link, with its addresses.
fn addresses() -> String {
    let out = std::process::Command::new("ip")
        .args(["-br", "addr"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Each node's link on this machine (the one holding the node's host address), in node
/// order.
fn node_links(h: &Harness) -> Vec<String> {
    let now = addresses();
    h.emulator
        .node_names()
        .iter()
        .filter_map(|n| h.emulator.node_host_address(n))
        .map(|host| {
            let line = now
                .lines()
                .find(|l| l.contains(&format!(" {host}/")))
                .unwrap_or_else(|| panic!("no link has {host}: {now}"));
            line.split(['@', ' '])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Turns on strict reverse-path filtering on every node's link (a setting of the link,
/// gone with it): traffic between nodes must pass it, as it would on a host that
/// filters.
fn filter_reverse_paths_strictly(h: &Harness) {
    for link in node_links(h) {
        let path = format!("/proc/sys/net/ipv4/conf/{link}/rp_filter");
        std::fs::write(&path, "1").unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

#[tokio::test]
async fn a_pod_reaches_a_pod_of_another_node_at_its_pod_ip_but_not_at_loopback() {
    let Some(h) = common::start_in_node_namespaces(EmulatorConfig::default().nodes(2)).await else {
        return;
    };
    filter_reverse_paths_strictly(&h);
    let mut server = perl_pod(
        "server",
        SECOND,
        &[("tcp", TCP_SERVER), ("udp", UDP_SERVER)],
        json!([]),
    );
    server["spec"]["containers"][0]["readinessProbe"] = json!({"tcpSocket": {"port": 7000}});
    server["spec"]["containers"][1]["readinessProbe"] = json!({"exec": {"command": ["/usr/bin/perl", "-MIO::Socket::INET", "-MIO::Select", "-e", UDP_READY]}});
    h.create_pod(server).await;
    wait_pod(&h.pods(), "server", "Ready", is_ready).await;
    let server_ip = pod_ip(&h, "server").await;

    let client = |name: &str, node: &str| {
        perl_pod(
            name,
            node,
            &[("main", CLIENT)],
            json!([{"name": "SERVER", "value": server_ip}]),
        )
    };
    h.create_pod(client("from-first", FIRST)).await;
    h.create_pod(client("from-second", SECOND)).await;
    let first_ip = pod_ip(&h, "from-first").await;
    assert_ne!(block(&first_ip), block(&server_ip), "nodes share a block");

    // Across nodes: answered at the pod IP, from the client node's own address (routed,
    // not translated); the client's loopback is its node's, where nothing listens.
    let across = report_of(&h, "from-first").await;
    for (key, protocol) in [("pod tcp", "tcp"), ("pod udp", "udp")] {
        let answer = value(&across, key);
        let expected = format!("{protocol} hello from {}.", block(&first_ip));
        assert!(answer.starts_with(&expected), "{key}: {across:?}");
    }
    assert_eq!(value(&across, "loopback tcp"), "refused", "{across:?}");
    assert!(
        !value(&across, "loopback udp").starts_with("udp"),
        "{across:?}"
    );

    // On the server's own node the same servers answer at loopback too: the refusal
    // above is the nodes being apart, not the servers being picky.
    let same_node = report_of(&h, "from-second").await;
    assert_eq!(
        value(&same_node, "loopback tcp"),
        "tcp hello from 127.0.0.1",
        "{same_node:?}"
    );
    assert_eq!(
        value(&same_node, "loopback udp"),
        "udp hello from 127.0.0.1",
        "{same_node:?}"
    );
}

#[tokio::test]
async fn a_file_in_dev_shm_is_seen_on_its_node_only() {
    let Some(h) = common::start_in_node_namespaces(EmulatorConfig::default().nodes(2)).await else {
        return;
    };
    let name = format!("kt-emu-nodes-{}", std::process::id());
    let on = |pod: &str, node: &str, script: &str| {
        let mut p = shell_pod(pod, script, "Never");
        p["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": node});
        p["spec"]["containers"][0]["env"] = json!([{"name": "SHM", "value": name}]);
        p
    };
    h.create_pod(on("writer", FIRST, "echo written > /dev/shm/$SHM"))
        .await;
    report_of(&h, "writer").await;
    let read = "echo \"shm: $(cat /dev/shm/$SHM 2>/dev/null || echo missing)\"";
    h.create_pod(on("reader-first", FIRST, read)).await;
    h.create_pod(on("reader-second", SECOND, read)).await;
    assert_eq!(
        value(&report_of(&h, "reader-first").await, "shm"),
        "written"
    );
    assert_eq!(
        value(&report_of(&h, "reader-second").await, "shm"),
        "missing"
    );
    assert!(!std::path::Path::new("/dev/shm").join(&name).exists());
}

#[tokio::test]
async fn the_host_address_answers_pods_of_every_node() {
    let Some(h) = common::start_in_node_namespaces(EmulatorConfig::default().nodes(2)).await else {
        return;
    };
    filter_reverse_paths_strictly(&h);
    let host = h.emulator.host_address();
    assert_eq!(h.emulator.node_host_address(FIRST), Some(host));
    let listener = TcpListener::bind((host, 0))
        .await
        .expect("listen on the host address");
    let port = listener.local_addr().expect("port").port();
    for (pod, node) in [("caller-first", FIRST), ("caller-second", SECOND)] {
        let mut p = shell_pod(pod, "", "Never");
        // bash, for its /dev/tcp.
        p["spec"]["containers"][0]["command"] = json!([
            "/bin/bash",
            "-c",
            "exec 3<>/dev/tcp/$HOST/$HOST_PORT && echo $HOSTNAME >&3"
        ]);
        p["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": node});
        p["spec"]["containers"][0]["env"] = json!([
            {"name": "HOST", "value": host.to_string()},
            {"name": "HOST_PORT", "value": port.to_string()},
        ]);
        h.create_pod(p).await;
    }
    // Async, so that a pod that cannot connect fails the test instead of hanging it.
    let accept = async {
        let mut accepted = Vec::new();
        for _ in 0..2 {
            let (mut from_pod, peer) = listener.accept().await.expect("a pod connects");
            let mut name = String::new();
            from_pod
                .read_to_string(&mut name)
                .await
                .expect("the pod's name");
            accepted.push((name.trim().to_string(), peer.ip().to_string()));
        }
        accepted
    };
    let Ok(mut accepted) = tokio::time::timeout(common::WAIT, accept).await else {
        let now = h.pods().list(&Default::default()).await;
        panic!("the pods did not both connect; now: {now:#?}");
    };
    accepted.sort();
    for ((name, peer), node) in accepted.iter().zip([FIRST, SECOND]) {
        report_of(&h, name).await;
        let status = h.pods().get(name).await.expect("get").status;
        let status = status.expect("a status");
        let pod_ip = status.pod_ip.unwrap_or_default();
        assert_eq!(block(peer), block(&pod_ip), "{name} connects from its node");
        let node_host = h.emulator.node_host_address(node).map(|ip| ip.to_string());
        assert_eq!(status.host_ip, node_host, "{name}'s hostIP is its node's");
    }
    assert_ne!(
        h.emulator.node_host_address(FIRST),
        h.emulator.node_host_address(SECOND)
    );
}

#[tokio::test]
async fn every_nodes_link_and_forwarding_go_with_the_emulator() {
    let ip_forward = || std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").ok();
    let before = ip_forward();
    let Some(h) = common::start_in_node_namespaces(EmulatorConfig::default().nodes(3)).await else {
        return;
    };
    let hosts: Vec<String> = h
        .emulator
        .node_names()
        .iter()
        .filter_map(|n| h.emulator.node_host_address(n))
        .map(|ip| format!(" {ip}/"))
        .collect();
    let links = node_links(&h);
    assert_eq!((hosts.len(), links.len()), (3, 3));
    for link in &links {
        let forwarding = format!("/proc/sys/net/ipv4/conf/{link}/forwarding");
        let forwarding = std::fs::read_to_string(&forwarding).expect("the link's setting");
        assert_eq!(forwarding.trim(), "1", "{link} forwards");
    }
    assert_eq!(
        ip_forward(),
        before,
        "the machine-wide setting is untouched"
    );
    // By index, not by name or address: once this emulator freed its blocks, an emulator
    // of a test running beside this one may make links of the same names and addresses.
    let indexes: Vec<String> = links.iter().map(|link| link_index(link)).collect();
    assert!(hosts.iter().all(|host| addresses().contains(host.as_str())));
    h.emulator.shutdown().await;
    let left = link_indexes();
    for (link, index) in links.iter().zip(&indexes) {
        assert!(
            !left.contains(index),
            "{link} (index {index}) is still there"
        );
    }
    assert_eq!(ip_forward(), before);
}

#[tokio::test]
async fn faults_on_a_nodes_link_go_on_its_link_and_come_off() {
    let Some(h) = common::start_in_node_namespaces(EmulatorConfig::default().nodes(2)).await else {
        return;
    };
    let links = node_links(&h);
    let qdisc = |link: &str| {
        let out = std::process::Command::new("tc")
            .args(["qdisc", "show", "dev", link])
            .output()
            .expect("tc runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let faults = kt_kube_emulator::LinkFaults::new().rate_bits_per_second(50_000_000);
    h.emulator
        .set_link_faults(SECOND, &faults)
        .expect("faults on the second node's link");
    let shaped = qdisc(&links[1]);
    assert!(
        shaped.contains("tbf") && shaped.contains("rate 50Mbit"),
        "{shaped}"
    );
    assert!(
        !qdisc(&links[0]).contains("tbf"),
        "the first node's link is clean"
    );
    h.emulator
        .set_link_faults(SECOND, &kt_kube_emulator::LinkFaults::new())
        .expect("a clean link again");
    let clean = qdisc(&links[1]);
    assert!(!clean.contains("rate"), "{clean}");
    assert!(h.emulator.set_link_faults("no-such-node", &faults).is_err());
    h.emulator.shutdown().await;
}

/// The interface index of `link` on this machine.
fn link_index(link: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{link}/ifindex"))
        .expect("the link's index")
        .trim()
        .to_string()
}

/// The interface index of every link on this machine (indexes are not reused soon).
fn link_indexes() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .expect("the links")
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("ifindex")).ok())
        .map(|index| index.trim().to_string())
        .collect()
}
