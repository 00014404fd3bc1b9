//! [`Communicator`]: one member of an NCCL group, with all-reduce and broadcast on device
//! buffers, every wait bounded by a timeout. **Needs a GPU**: everything here runs only on
//! a machine with a CUDA device and NCCL (kt-gpu's `tests/gpu.rs`); without one, the
//! constructor returns [`Error::GpuUnavailable`].

use std::ffi::{c_int, c_void};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::{CudaStream, DevicePtrMut, DeviceRepr, SyncOnDrop};
use cudarc::nccl::sys::{ncclDataType_t, ncclRedOp_t};
use kt_core::Error;

use crate::device::{driver_error, init_driver};
use crate::guard::guarded;
use crate::nccl::UniqueId;
use crate::nccl_api::{Collective, CommFunctions, RawCommHandle, RawStream, nccl};
use crate::nccl_comm::RawComm;

/// An element type NCCL can reduce and broadcast.
///
/// Implemented for `f32`, `f64`, `i32`, `u32`, `i64`, `u64`, `i8` and `u8`. (`bf16` needs a
/// Rust type for it, cudarc's `f16` feature with `half::bf16`; it is one more impl with
/// `ncclBfloat16`.)
pub trait NcclElement: DeviceRepr + sealed::Sealed {
    /// NCCL's `ncclDataType_t` for the type.
    const DATA_TYPE: ncclDataType_t;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! nccl_element {
    ($($t:ty => $dtype:ident),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl NcclElement for $t {
            const DATA_TYPE: ncclDataType_t = ncclDataType_t::$dtype;
        }
    )*};
}

nccl_element!(
    f32 => ncclFloat32, f64 => ncclFloat64, i32 => ncclInt32, u32 => ncclUint32,
    i64 => ncclInt64, u64 => ncclUint64, i8 => ncclInt8, u8 => ncclUint8,
);

/// One member (rank) of an NCCL group, on one CUDA stream. It never hangs: creation and
/// every collective wait at most [`Communicator::timeout`], and a failure, a timeout or
/// a cancelled wait aborts it (`ncclCommAbort`), after which every call fails with
/// [`Error::GpuFailed`]. Dropping it aborts it; [`Communicator::close`] finalizes it
/// instead, flushing the group's work. Neither panics.
///
/// A group's members run in different processes (NCCL does not support two ranks on
/// one device): rank 0 makes a [`UniqueId`] and sends it to the others.
pub struct Communicator {
    raw: RawComm,
    stream: Arc<CudaStream>,
    rank: usize,
    world_size: usize,
    timeout: Duration,
}

impl Communicator {
    /// Joins the group `id` as `rank` of `world_size`, with NCCL's work on `stream` (and
    /// its device). Waits at most `timeout` for every member to join; at the deadline the
    /// half-made communicator is aborted and this returns [`Error::GpuFailed`].
    /// Needs a Tokio runtime with timers (kt's).
    pub async fn new(
        stream: Arc<CudaStream>,
        id: &UniqueId,
        rank: usize,
        world_size: usize,
        timeout: Duration,
    ) -> Result<Communicator, Error> {
        init_driver()?;
        let api = nccl()?;
        bind(&stream)?;
        let raw = RawComm::init(api, id, rank, world_size, timeout).await?;
        Ok(Communicator {
            raw,
            stream,
            rank,
            world_size,
            timeout,
        })
    }

    /// This member's rank, `0..world_size`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// How many members the group has.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// How long one collective (or closing) may take before the communicator is aborted.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes [`Communicator::timeout`].
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The stream NCCL's work runs on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Whether an error, a timeout, a cancelled wait or [`Communicator::abort`] ended it.
    pub fn is_aborted(&self) -> bool {
        !self.raw.is_live()
    }

    /// Sums `buffer` element-wise across the group, in place, and waits until the GPU
    /// has finished. `buffer` may live on another stream of the same device.
    pub async fn all_reduce_sum<T: NcclElement, B: DevicePtrMut<T>>(
        &mut self,
        buffer: &mut B,
    ) -> Result<(), Error> {
        let functions = self.raw_functions()?;
        let sum = ncclRedOp_t::ncclSum as c_int;
        self.run::<T, B>("ncclAllReduce", functions.all_reduce, buffer, sum)
            .await
    }

    /// Copies `buffer` from member `root` to every member, in place, and waits until the
    /// GPU has finished.
    pub async fn broadcast<T: NcclElement, B: DevicePtrMut<T>>(
        &mut self,
        buffer: &mut B,
        root: usize,
    ) -> Result<(), Error> {
        if root >= self.world_size {
            return Err(Error::invalid_options(format!(
                "broadcast root {root} is not a rank of this group of {}",
                self.world_size
            )));
        }
        let functions = self.raw_functions()?;
        let root = c_int::try_from(root).unwrap_or(c_int::MAX);
        self.run::<T, B>("ncclBroadcast", functions.broadcast, buffer, root)
            .await
    }

    /// Aborts the communicator now (`ncclCommAbort`): for when another member died and
    /// the group must be rebuilt. Pending collectives on it stop; later calls fail.
    pub fn abort(&mut self) {
        self.raw.abort();
    }

    /// Finalizes (every member's pending work completes, within [`Communicator::timeout`])
    /// and destroys the communicator; on failure or at the deadline it is aborted.
    pub async fn close(self) -> Result<(), Error> {
        bind(&self.stream)?;
        self.raw.close(self.timeout).await
    }

    fn raw_functions(&self) -> Result<&'static CommFunctions, Error> {
        self.raw.handle()?;
        nccl()?.comm_functions()
    }

    /// Enqueues one in-place collective and waits for it: first until NCCL has enqueued
    /// it (a non-blocking communicator may return `ncclInProgress`), then until an event
    /// recorded after it on the stream completes — all within one deadline.
    async fn run<T: NcclElement, B: DevicePtrMut<T>>(
        &mut self,
        operation: &'static str,
        collective: Collective,
        buffer: &mut B,
        op_or_root: c_int,
    ) -> Result<(), Error> {
        tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let deadline = Instant::now() + self.timeout;
        bind(&self.stream)?;
        let handle = self.raw.handle()?;
        let (status, written) = enqueue(collective, handle, &self.stream, buffer, op_or_root);
        self.raw.check(operation, status)?;
        self.raw
            .wait(operation, remaining(deadline), || Ok(true))
            .await?;
        drop(written);
        let event = guarded("cuEventRecord", || {
            self.stream
                .record_event(None)
                .map_err(|e| driver_error("cuEventRecord", e))
        })?;
        let stream = &self.stream;
        self.raw
            .wait(operation, remaining(deadline), || {
                guarded("cuEventQuery", || {
                    bind(stream)?;
                    event
                        .try_is_complete()
                        .map_err(|e| driver_error("cuEventQuery", e))
                })
            })
            .await
    }
}

/// Calls `collective` in place on `buffer`, returning NCCL's status and cudarc's guard
/// that records the write on the stream (drop it once NCCL has enqueued the work).
fn enqueue<'a, T: NcclElement, B: DevicePtrMut<T>>(
    collective: Collective,
    handle: RawCommHandle,
    stream: &'a CudaStream,
    buffer: &'a mut B,
    op_or_root: c_int,
) -> (c_int, SyncOnDrop<'a>) {
    let count = buffer.len();
    let (pointer, written) = buffer.device_ptr_mut(stream);
    let pointer = pointer as usize as *mut c_void;
    // SAFETY: `pointer` addresses `count` elements of `T` on the communicator's device,
    // borrowed mutably until the collective completes (or the communicator is aborted,
    // which stops it); in place, as NCCL allows.
    let status = unsafe {
        collective(
            pointer,
            pointer,
            count,
            T::DATA_TYPE as c_int,
            op_or_root,
            handle,
            stream.cu_stream() as RawStream,
        )
    };
    (status, written)
}

/// Makes the stream's context current on this thread (async code may move threads).
fn bind(stream: &CudaStream) -> Result<(), Error> {
    guarded("cuCtxSetCurrent", || {
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| driver_error("cuCtxSetCurrent", e))
    })
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
