//! The semantic suite: the rules of `kt::semantics`, tested against the in-process, the
//! loopback and the local-process backends (`tests/semantics_kubernetes.rs` runs the
//! same suite against Kubernetes). The tests live in `tests/suite`, written once as
//! `async fn(backend)`; `for_each_backend!` runs each against each backend.

mod support;
#[macro_use]
mod suite;

macro_rules! for_each_backend {
    ($($test:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test]
                async fn $test() {
                    tokio::time::timeout(std::time::Duration::from_secs(30), crate::suite::$test("in_process")).await.expect("test hung");
                }
            )*
        }
        mod loopback {
            $(
                #[tokio::test]
                async fn $test() {
                    tokio::time::timeout(std::time::Duration::from_secs(30), crate::suite::$test("loopback")).await.expect("test hung");
                }
            )*
        }
        // Workers are this test binary, started by the harness on one `#[kt::test]`.
        mod local_process {
            $(
                #[kt::test]
                async fn $test() {
                    tokio::time::timeout(std::time::Duration::from_secs(30), crate::suite::$test("local_process")).await.expect("test hung");
                }
            )*
        }
    };
}

every_rule!(for_each_backend);

macro_rules! on_local_processes {
    ($($test:ident),* $(,)?) => {
        mod process_restarts_on_local_processes {
            $(
                #[kt::test]
                async fn $test() {
                    tokio::time::timeout(std::time::Duration::from_secs(30), crate::suite::$test("local_process")).await.expect("test hung");
                }
            )*
        }
    };
}

every_process_rule!(on_local_processes);
