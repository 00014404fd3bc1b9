//! The semantic suite against the Kubernetes placement: every rule of `kt::semantics`,
//! unchanged, with each actor in a pod of the API-server emulator (reached through the
//! real `kube` client and a kubeconfig). The tests are those of `tests/semantics.rs`.

mod support;
#[macro_use]
mod suite;

macro_rules! on_kubernetes {
    ($($test:ident),* $(,)?) => {
        mod kubernetes {
            $(
                #[kt::test]
                async fn $test() {
                    crate::support::cluster().await;
                    tokio::time::timeout(std::time::Duration::from_secs(60), crate::suite::$test("kubernetes")).await.expect("test hung");
                }
            )*
        }
    };
}

every_rule!(on_kubernetes);

macro_rules! on_pods {
    ($($test:ident),* $(,)?) => {
        mod process_restarts_on_pods {
            $(
                #[kt::test]
                async fn $test() {
                    crate::support::cluster().await;
                    tokio::time::timeout(std::time::Duration::from_secs(60), crate::suite::$test("kubernetes")).await.expect("test hung");
                }
            )*
        }
    };
}

every_process_rule!(on_pods);
