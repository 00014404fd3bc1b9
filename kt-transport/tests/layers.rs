//! The crate's folders are layers — wire → node → worker → local — and a module may use
//! only its own layer and the layers before it. This test reads the sources and fails on
//! any `crate::<layer>` path (in code or docs) that reaches up, so an import circle
//! between the folders cannot come back unnoticed.

use std::path::{Path, PathBuf};

/// The layers, lowest first.
const LAYERS: [&str; 4] = ["wire", "node", "worker", "local"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layers a source file names through `crate::<layer>`.
fn named_layers(source: &str) -> Vec<&'static str> {
    LAYERS
        .iter()
        .copied()
        .filter(|layer| {
            let needle = format!("crate::{layer}");
            source.match_indices(&needle).any(|(at, _)| {
                // `crate::node` but not `crate::nodes` or `somecrate::node`.
                let before = source[..at].chars().next_back();
                let after = source[at + needle.len()..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
        .collect()
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let Some(own) = LAYERS.iter().position(|layer| relative.starts_with(layer)) else {
            continue; // lib.rs: the crate root may name every layer
        };
        checked += 1;
        let source = std::fs::read_to_string(file).expect("read");
        for layer in named_layers(&source) {
            let rank = LAYERS.iter().position(|l| *l == layer).expect("a layer");
            if rank > own {
                violations.push(format!("{} uses crate::{layer}", relative.display()));
            }
        }
    }
    assert!(
        checked >= 15,
        "only {checked} layer files found under {src:?}"
    );
    assert!(
        violations.is_empty(),
        "modules reach up a layer (wire → node → worker → local):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_use() {
    assert_eq!(named_layers("use crate::node::Node;"), ["node"]);
    assert_eq!(named_layers("see [`crate::worker`]"), ["worker"]);
    assert!(named_layers("use kt_transport::node::Node; crate::nodes").is_empty());
}
