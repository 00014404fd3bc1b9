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
