//! # kt: Kubernetes-native actors for Rust
//!
//! Annotate a struct and its impl block with `#[kt::actor]` and you get a typed handle
//! whose method calls run on that actor wherever it lives: in this process (unit
//! tests), in a local child process (the default: [`LocalProcess`]), or in a Kubernetes
//! pod. The semantics are the same everywhere and are written down, rule by rule, in
//! [`semantics`].
//!
//! A local-process actor runs in a child process of your own binary, started in worker
//! mode: `#[kt::main]` (or [`serve_if_worker`] first thing in `main`) serves the actor
//! instead of running the program, and in test binaries `#[kt::test]` does the same.
//!
//! ```
//! use kt::prelude::*;
//!
//! #[kt::actor]
//! pub struct Counter {
//!     value: u64,
//! }
//!
//! #[kt::actor]
//! impl Counter {
//!     pub fn new(start: u64) -> Self {
//!         Counter { value: start }
//!     }
//!
//!     pub fn increment(&mut self) -> u64 {
//!         self.value += 1;
//!         self.value
//!     }
//!
//!     /// A method's own error travels back to the caller as a value.
//!     pub fn checked_add(&mut self, n: u64) -> Result<u64, String> {
//!         self.value = self.value.checked_add(n).ok_or_else(|| format!("{} + {n} overflows", self.value))?;
//!         Ok(self.value)
//!     }
//! }
//!
//! #[kt::main]
//! async fn main() -> kt::Result<()> {
//!     let counter = Counter::spawn(0).await?; // a child process of this program
//!     let a = counter.increment(); // sent now; `a` is the future of the reply
//!     let b = counter.increment();
//!     assert_eq!((a.await?, b.await?), (1, 2)); // calls run in the order they were made
//!     assert_eq!(counter.checked_add(u64::MAX).await?, Err("2 + 18446744073709551615 overflows".to_string()));
//!     Ok(())
//! }
//! ```
//!
//! Where to go next: [`ActorRef`] (handles), [`Call`] (replies), [`Context`] (inside an
//! actor), [`Error`] (what can go wrong), [`ActorGroup`] (ranked groups),
//! [`Placement`] (where actors run), and the `actor` macro's docs for what it generates.

#![warn(missing_docs)]

/// `#[serde(with = "kt::raw")]` on a `Vec` of numbers in your own types: it travels as
/// its raw bytes (the macro does this by itself for argument and return types).
pub use kt_core::codec::raw;
pub use kt_core::*;
pub use kt_k8s::{Kubernetes, KubernetesBuilder, Reach};
pub use kt_macros::{actor, main, test};
pub use kt_transport::wire::blob::Blob;
pub use kt_transport::{LocalProcess, is_worker, serve_if_worker};

/// The data store: versioned values by key, held where they are put, mapped without a
/// copy on one host and streamed over QUIC across hosts. See [`store::put`],
/// [`store::get`] and [`store::wait_newer`].
pub use kt_store as store;

/// The JSON values [`Compute::pod_patch`] and [`Compute::pod_json_patch`] take, so that
/// `kt` alone is enough to write them: `kt::serde_json::json!({...})`.
pub use serde_json;

/// Support for generated code; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use kt_core::__private::*;
    pub use kt_transport::use_runtime;

    use std::future::Future;

    /// Runs the body of `#[kt::main]`: in worker mode serves instead (and never returns);
    /// otherwise runs the body on a multi-threaded tokio runtime.
    ///
    /// The body runs as a task of the runtime, not on the thread that waits for it: calls
    /// between main and in-process actors then stay on one worker thread (tokio runs a
    /// task woken by the running one next, on the same thread), instead of paying a
    /// cross-thread wake-up per call (about 0.5 µs against 25 µs per round trip on a
    /// 2-core VM).
    pub fn block_on_main<F>(body: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        kt_transport::serve_if_worker();
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("kt: could not start the tokio runtime: {error}");
                std::process::exit(1)
            }
        };
        kt_transport::use_runtime(runtime.handle().clone());
        run_as_task(&runtime, body)
    }

    /// Runs `body` as a task of `runtime` and waits for it; a panic in it resumes here.
    fn run_as_task<F>(runtime: &tokio::runtime::Runtime, body: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match runtime.block_on(runtime.spawn(body)) {
            Ok(output) => output,
            Err(join_error) => match join_error.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(join_error) => {
                    eprintln!("kt: main was cancelled: {join_error}");
                    std::process::exit(1)
                }
            },
        }
    }

    /// Runs the body of a `#[kt::test]` (`path` is its `module_path!()::name`). In worker
    /// mode serves instead; otherwise records how to start this test binary as a worker
    /// (run only this test: the harness's `--exact` filter) and runs the body.
    pub fn run_test<F>(path: &str, body: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        kt_transport::serve_if_worker();
        // The harness names tests without the crate's own name.
        let name = path.split_once("::").map_or(path, |(_, rest)| rest);
        kt_transport::set_worker_args(
            [
                name,
                "--exact",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ]
            .map(String::from)
            .to_vec(),
        );
        // One runtime for every test of the binary: actors, connections and worker
        // processes started by one test may outlive it (the transport's node does).
        static TEST_RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> =
            std::sync::OnceLock::new();
        let runtime =
            TEST_RUNTIME.get_or_init(|| {
                match tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => panic!("kt: could not start the test runtime: {error}"),
                }
            });
        kt_transport::use_runtime(runtime.handle().clone());
        run_as_task(runtime, body)
    }
}

/// Everything most programs need: `use kt::prelude::*;`.
pub mod prelude {
    pub use kt_core::{
        ActorGroup, ActorRef, Call, Compute, Context, DeathCause, Error, GroupCall, GroupMember,
        Lifetime, SpawnOptions, get_actor,
    };
    pub use kt_transport::wire::blob::Blob;
}
