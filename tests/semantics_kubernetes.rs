//! The semantic suite against the Kubernetes placement: every rule of `kt::semantics`,
//! unchanged, with each actor in a pod of the API-server emulator (reached through the
//! real `kube` client and a kubeconfig). The tests are those of `tests/semantics.rs`.

mod support;
#[macro_use]
mod suite;

use std::sync::Arc;

use kt_kube_emulator::{Emulator, EmulatorConfig};
use tokio::sync::OnceCell;

/// Starts the emulator and the driver's session once per binary, before any actor: the
/// node's CA is the cluster's.
async fn set_up() {
    static EMULATOR: OnceCell<(Emulator, tempfile::TempDir)> = OnceCell::const_new();
    EMULATOR
        .get_or_init(|| async {
            let emulator = Emulator::start(EmulatorConfig::default())
                .await
                .expect("the emulator starts");
            let dir = tempfile::tempdir().expect("a temp dir");
            let kubeconfig = dir.path().join("kubeconfig");
            emulator.write_kubeconfig(&kubeconfig).expect("kubeconfig");
            let k8s = kt::Kubernetes::builder()
                .kubeconfig(&kubeconfig)
                .image("kt-tests:local")
                .this_binary()
                .expect("this binary")
                .quiet()
                .connect()
                .await
                .expect("connects to the emulator");
            kt::placement::set_default_placement(Arc::new(k8s.clone()));
            let _ = support::KUBERNETES.set(k8s);
            (emulator, dir)
        })
        .await;
}

macro_rules! on_kubernetes {
    ($($test:ident),* $(,)?) => {
        mod kubernetes {
            $(
                #[kt::test]
                async fn $test() {
                    super::set_up().await;
                    tokio::time::timeout(std::time::Duration::from_secs(60), crate::suite::$test("kubernetes")).await.expect("test hung");
                }
            )*
        }
    };
}

every_rule!(on_kubernetes);
