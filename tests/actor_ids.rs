//! Actor ids are unique across a cluster, not only within one machine: two processes
//! with the same process id — as every pod's worker is process 1 — still give their
//! actors different ids (handles and name entries carry ids between processes).

mod support;

use std::process::Command;
use std::sync::Arc;

use support::EnvReader;

/// Set in the child: print one actor's id and exit.
const CHILD: &str = "KT_TEST_PRINT_ACTOR_ID";

#[kt::test]
#[ignore = "the child of actor_ids_differ_between_processes_that_share_a_process_id"]
async fn child_prints_the_id_of_its_first_actor() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let actor = EnvReader::spawn()
        .on(Arc::new(kt::InProcess))
        .await
        .unwrap();
    assert_eq!(actor.pid().await.unwrap(), 1, "the child is process 1");
    println!("ACTOR_ID={}", actor.id());
}

/// Runs this binary's child test as process 1 of a new PID namespace; `None` where
/// namespaces cannot be made (not root).
fn id_from_pid_one() -> Option<u64> {
    let output = Command::new("unshare")
        .args(["--pid", "--fork", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "child_prints_the_id_of_its_first_actor",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "unshare failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("ACTOR_ID="))?;
    Some(line.trim().parse().unwrap())
}

#[test]
fn actor_ids_differ_between_processes_that_share_a_process_id() {
    let Some(first) = id_from_pid_one() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must make PID namespaces"
        );
        return eprintln!("skipped: PID namespaces need root (unshare --pid)");
    };
    let second = id_from_pid_one().expect("the second child ran like the first");
    assert_ne!(
        first, second,
        "two actors in two processes that are both process 1 got the same id"
    );
}
