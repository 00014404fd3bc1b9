//! Helpers shared by the benchmarks.

/// Runs `body` as a task of `rt`, not on the thread that waits for it: callers are
/// runtime tasks, as under `#[kt::main]`, so a ping-pong with an actor stays on one
/// worker thread instead of paying a cross-thread wake-up per call.
pub fn run_as_task<F>(rt: &tokio::runtime::Runtime, body: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(rt.spawn(body)).expect("benchmark task")
}

/// A multi-thread runtime that also hosts the transport's tasks (as `#[kt::main]`'s does).
#[allow(dead_code)] // not every benchmark places actors in other processes
pub fn runtime() -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    kt::__private::use_runtime(rt.handle().clone());
    rt
}
