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

/// The median of `samples` (sorted in place).
#[allow(dead_code)] // not every benchmark takes medians of durations
pub fn median(samples: &mut [std::time::Duration]) -> std::time::Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// `d` in milliseconds, for `figure:` lines.
#[allow(dead_code)]
pub fn ms(d: std::time::Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Reads every byte (eight at a time), so the pages are really touched.
#[allow(dead_code)]
pub fn read_every_byte(bytes: &[u8]) -> u64 {
    let (words, rest) = bytes.as_chunks::<8>();
    words
        .iter()
        .fold(0u64, |acc, w| acc.wrapping_add(u64::from_le_bytes(*w)))
        + rest.iter().map(|b| u64::from(*b)).sum::<u64>()
}
