//! `kt store ls`, the real binary, against a driver: this test process puts values into
//! its store (its directory records itself in the state directory), then runs `kt store
//! ls` as another process, which asks the directory over QUIC with the machine CA.
//!
//! One test in this binary: it points `KT_STATE_DIR` at a directory of its own before
//! anything else runs.

use std::process::Command;

fn kt(state_dir: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kt"))
        .args(args)
        .env("KT_STATE_DIR", state_dir)
        .output()
        .expect("run kt");
    assert!(
        output.status.success(),
        "kt {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn kt_store_ls_lists_the_keys_of_the_drivers_on_this_machine() {
    let temp = tempfile::tempdir().expect("a temp dir");
    // kt makes the state directory itself, private (a temporary directory is 0755).
    let state = temp.path().join("state");
    // SAFETY: the only test of this binary, before it starts any thread of its own or
    // any runtime: nothing reads the environment concurrently.
    unsafe { std::env::set_var("KT_STATE_DIR", &state) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        kt_store::put("cli/weights", vec![7u8; 1536])
            .meta("step", 7)
            .await
            .expect("put");
        kt_store::put("cli/weights", vec![8u8; 2048])
            .meta("step", 8)
            .await
            .expect("put");
        kt_store::put("other/key", vec![1u8; 10])
            .await
            .expect("put");
    });
    // A record of a driver that is gone is cleaned up, not asked.
    std::fs::write(state.join("store").join("999999999"), b"stale").expect("stale record");

    // The command runs while this process serves its directory (on the runtime's threads).
    let table = kt(&state, &["store", "ls", "cli/"]);
    let pid = std::process::id().to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let cells = |line: &str| {
        line.split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cells(lines[0]),
        [
            "DRIVER", "KEY", "VERSION", "SIZE", "HOLDERS", "IN", "FLIGHT", "AGE", "META"
        ]
    );
    assert_eq!(
        cells(lines[1])[..6],
        [pid.as_str(), "cli/weights", "1", "1.5KiB", "1", "-"]
    );
    assert_eq!(cells(lines[1])[7], "step=7");
    assert_eq!(
        cells(lines[2])[..6],
        [pid.as_str(), "cli/weights", "2", "2.0KiB", "1", "-"]
    );
    assert!(!table.contains("other/key"), "{table}");
    assert!(
        !state.join("store").join("999999999").exists(),
        "stale record kept"
    );

    let json = kt(&state, &["store", "ls", "-o", "json"]);
    let stores: serde_json::Value = serde_json::from_str(&json).expect("json");
    let keys = &stores[0]["keys"]["Ok"];
    assert_eq!(keys.as_array().map(Vec::len), Some(2), "{json}");
    drop(runtime);
}
