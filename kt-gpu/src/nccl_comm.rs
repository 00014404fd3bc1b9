//! One NCCL communicator handle and its lifecycle: non-blocking init, polling against a
//! deadline, abort, finalize and destroy — never a blocking NCCL call that waits on peers,
//! never a panic.
//!
//! The communicator is created with `blocking = 0`, so every NCCL call returns at once
//! (`ncclInProgress` while work continues in NCCL's threads) and [`RawComm::wait`]
//! polls `ncclCommGetAsyncError` with tokio sleeps until it reports success, an error
//! (a member died: `ncclRemoteError`), or the deadline passes. On an error, at the
//! deadline, and when the waiting future is dropped, the communicator is aborted
//! (`ncclCommAbort`), which stops its kernels and frees it without waiting for peers.
//! Dropping a live communicator aborts it too: only [`RawComm::close`] finalizes.
//!
//! Nothing here touches CUDA itself, so the tests drive it against a stub NCCL.

use std::ffi::c_int;
use std::time::{Duration, Instant};

use kt_core::Error;

use crate::nccl::UniqueId;
use crate::nccl_api::{
    CommFunctions, ConfigV21400, NCCL_IN_PROGRESS, NCCL_SUCCESS, NcclApi, RawCommHandle,
};

/// A live (or aborted) NCCL communicator.
pub(crate) struct RawComm {
    api: &'static NcclApi,
    functions: &'static CommFunctions,
    handle: RawCommHandle,
    live: bool,
}

// SAFETY: an ncclComm_t may be used from any host thread, one call at a time; every call
// here takes `&mut self` or happens in `poll`, which `&self` callers cannot overlap with
// a `&mut` one.
unsafe impl Send for RawComm {}
// SAFETY: through `&RawComm` only `ncclCommGetAsyncError` is called, which NCCL documents
// as callable from any thread while others use the communicator (it is how a watchdog
// thread polls one); `handle` and `is_live` only read.
unsafe impl Sync for RawComm {}

impl RawComm {
    /// Joins the group named by `id` as `rank` of `world_size`, waiting at most `timeout`
    /// for every member to join. The caller has made the member's CUDA device current.
    pub(crate) async fn init(
        api: &'static NcclApi,
        id: &UniqueId,
        rank: usize,
        world_size: usize,
        timeout: Duration,
    ) -> Result<RawComm, Error> {
        let functions = api.comm_functions()?;
        let (Ok(rank_c), Ok(world_c)) = (c_int::try_from(rank), c_int::try_from(world_size)) else {
            return Err(Error::invalid_options(
                "rank and world size must fit in a C int",
            ));
        };
        if rank >= world_size {
            return Err(Error::invalid_options(format!(
                "rank {rank} is not below the world size {world_size}"
            )));
        }
        tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let mut handle: RawCommHandle = std::ptr::null_mut();
        let mut config = ConfigV21400::non_blocking();
        // SAFETY: NCCL's signature; `handle` and `config` outlive the call (NCCL copies
        // the config before returning).
        let status = unsafe {
            (functions.init_rank_config)(&mut handle, world_c, id.raw(), rank_c, &mut config)
        };
        let mut comm = RawComm {
            api,
            functions,
            handle,
            live: !handle.is_null(),
        };
        const OPERATION: &str = "ncclCommInitRankConfig";
        if status != NCCL_SUCCESS && status != NCCL_IN_PROGRESS {
            return Err(api.error(OPERATION, status, handle));
        }
        if handle.is_null() {
            return Err(Error::GpuFailed {
                operation: OPERATION.to_string(),
                message: "NCCL returned success but no communicator".to_string(),
            });
        }
        comm.wait(OPERATION, timeout, || Ok(true)).await?;
        Ok(comm)
    }

    /// The `ncclComm_t`, for enqueueing collectives.
    pub(crate) fn handle(&self) -> Result<RawCommHandle, Error> {
        if self.live {
            Ok(self.handle)
        } else {
            Err(Error::GpuFailed {
                operation: "NCCL communicator".to_string(),
                message: "it was aborted (after an error, a timeout or an abandoned wait), or \
                          closed; create the group again with a new UniqueId"
                    .to_string(),
            })
        }
    }

    /// Checks the result of a call that enqueues work: success and `ncclInProgress` are
    /// fine (wait for them); anything else aborts and is returned.
    pub(crate) fn check(&mut self, operation: &str, status: c_int) -> Result<(), Error> {
        if status == NCCL_SUCCESS || status == NCCL_IN_PROGRESS {
            return Ok(());
        }
        let error = self.api.error(operation, status, self.handle);
        self.abort();
        Err(error)
    }

    /// `Ok(true)` when NCCL has no call in progress, `Ok(false)` while one is, and the
    /// error when the communicator failed.
    fn poll(&self, operation: &str) -> Result<bool, Error> {
        let handle = self.handle()?;
        let mut state: c_int = NCCL_IN_PROGRESS;
        // SAFETY: a live handle; NCCL writes one int.
        let status = unsafe { (self.functions.get_async_error)(handle, &mut state) };
        if status != NCCL_SUCCESS {
            return Err(self.api.error("ncclCommGetAsyncError", status, handle));
        }
        match state {
            NCCL_SUCCESS => Ok(true),
            NCCL_IN_PROGRESS => Ok(false),
            code => Err(self.api.error(operation, code, handle)),
        }
    }

    /// Waits until NCCL has no call in progress and `also_done` (the GPU side, for a
    /// collective) holds, for at most `timeout`. On an error, at the deadline, or when the
    /// returned future is dropped unfinished, the communicator is aborted.
    pub(crate) async fn wait(
        &mut self,
        operation: &str,
        timeout: Duration,
        mut also_done: impl FnMut() -> Result<bool, Error>,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut guard = AbortUnlessFinished {
            comm: self,
            finished: false,
        };
        let outcome =
            poll_until(deadline, || Ok(guard.comm.poll(operation)? && also_done()?)).await;
        guard.finished = true;
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => {
                guard.comm.abort();
                Err(Error::GpuFailed {
                    operation: operation.to_string(),
                    message: format!(
                        "did not complete within {} ms, so the communicator was aborted: a \
                         member never joined or stopped responding (check that every member \
                         runs and can reach the others), or raise the timeout",
                        timeout.as_millis()
                    ),
                })
            }
            Err(error) => {
                guard.comm.abort();
                Err(error)
            }
        }
    }

    /// `ncclCommAbort`: stops the communicator's work and frees it, without waiting for
    /// peers. Idempotent; later calls fail with a clear error.
    pub(crate) fn abort(&mut self) {
        if std::mem::replace(&mut self.live, false) {
            // SAFETY: a live handle, aborted once. Its result changes nothing: the handle is
            // gone either way.
            let _ = unsafe { (self.functions.abort)(self.handle) };
        }
    }

    /// Whether the communicator is still usable.
    pub(crate) fn is_live(&self) -> bool {
        self.live
    }

    /// Finalizes (flushes every member's pending work, at most `timeout`) and destroys the
    /// communicator; on failure it is aborted instead.
    pub(crate) async fn close(mut self, timeout: Duration) -> Result<(), Error> {
        let handle = self.handle()?;
        // SAFETY: a live handle.
        let status = unsafe { (self.functions.finalize)(handle) };
        self.check("ncclCommFinalize", status)?;
        self.wait("ncclCommFinalize", timeout, || Ok(true)).await?;
        self.live = false;
        // SAFETY: finalized, so destroy does not wait on peers; the handle is not used again.
        let status = unsafe { (self.functions.destroy)(handle) };
        if status != NCCL_SUCCESS {
            return Err(self
                .api
                .error("ncclCommDestroy", status, std::ptr::null_mut()));
        }
        Ok(())
    }
}

impl Drop for RawComm {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Aborts the communicator if a wait is dropped before it finished (the caller's future
/// was cancelled while NCCL or the GPU still worked on the caller's buffers).
struct AbortUnlessFinished<'a> {
    comm: &'a mut RawComm,
    finished: bool,
}

impl Drop for AbortUnlessFinished<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.comm.abort();
        }
    }
}

/// Polls `done` until it returns `Ok(true)` (then `Ok(true)`), an error, or `deadline`
/// passes (then `Ok(false)`): a few yields first, for collectives that finish in
/// microseconds, then tokio sleeps from 1 ms growing to 8 ms.
pub(crate) async fn poll_until(
    deadline: Instant,
    mut done: impl FnMut() -> Result<bool, Error>,
) -> Result<bool, Error> {
    let mut polls = 0u32;
    let mut pause = Duration::from_millis(1);
    loop {
        if done()? {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        polls += 1;
        if polls <= 32 {
            tokio::task::yield_now().await;
            continue;
        }
        // tokio::time::sleep panics outside a runtime, or in one without timers.
        let sleep = std::panic::catch_unwind(|| tokio::time::sleep(pause.min(deadline - now)))
            .map_err(|_| Error::NoRuntime)?;
        sleep.await;
        pause = (pause * 2).min(Duration::from_millis(8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn polling_stops_at_done_or_the_deadline_or_an_error() {
        let mut calls = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        let done = poll_until(deadline, || {
            calls += 1;
            Ok(calls == 40)
        });
        assert_eq!(done.await, Ok(true));
        let started = Instant::now();
        let deadline = started + Duration::from_millis(60);
        assert_eq!(poll_until(deadline, || Ok(false)).await, Ok(false));
        assert!(started.elapsed() >= Duration::from_millis(60));
        assert!(started.elapsed() < Duration::from_secs(2));
        let failing = poll_until(deadline, || Err(Error::NoRuntime));
        assert_eq!(failing.await, Err(Error::NoRuntime));
    }

    #[test]
    fn polling_without_timers_is_an_error_not_a_panic() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        let outcome = runtime.block_on(poll_until(deadline, || Ok(false)));
        assert_eq!(outcome, Err(Error::NoRuntime));
    }
}
