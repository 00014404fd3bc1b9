//! [`Collectives`]: what a training step needs from a group — all-reduce and broadcast —
//! whatever carries the bytes.
//!
//! The buffer type is the implementation's: [`Communicator`] (NCCL) works on device memory,
//! `Buffer = CudaSlice<f32>`; a CPU implementation over kt actor calls works on host
//! memory, `Buffer = [f32]`. Code generic over `C: Collectives` (or holding a
//! `Box<dyn Collectives<Buffer = [f32]>>`: the trait is object-safe, its methods return
//! boxed futures) runs on either.

use std::future::Future;
use std::pin::Pin;

use cudarc::driver::CudaSlice;
use kt_core::Error;

use crate::Communicator;

/// The future a collective returns: `Ok(())` once the buffer holds the result.
pub type CollectiveFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// Collective operations among the members (ranks `0..world_size`) of one group. Every
/// member calls the same operations in the same order; each call completes when this
/// member's buffer holds the result, or fails (a member died, a timeout) with a kt error.
pub trait Collectives: Send {
    /// The buffer the operations work on, in place: `[f32]` on the host,
    /// `CudaSlice<f32>` on a GPU.
    type Buffer: ?Sized;

    /// This member's rank, `0..world_size()`.
    fn rank(&self) -> usize;

    /// How many members the group has.
    fn world_size(&self) -> usize;

    /// Replaces `buffer` with the element-wise sum of every member's `buffer` (all of the
    /// same length).
    fn all_reduce_sum<'a>(&'a mut self, buffer: &'a mut Self::Buffer) -> CollectiveFuture<'a>;

    /// Replaces every member's `buffer` with member `root`'s.
    fn broadcast<'a>(
        &'a mut self,
        buffer: &'a mut Self::Buffer,
        root: usize,
    ) -> CollectiveFuture<'a>;
}

/// NCCL on device buffers. **Needs a GPU** (exercised by `tests/gpu.rs`).
impl Collectives for Communicator {
    type Buffer = CudaSlice<f32>;

    fn rank(&self) -> usize {
        Communicator::rank(self)
    }

    fn world_size(&self) -> usize {
        Communicator::world_size(self)
    }

    fn all_reduce_sum<'a>(&'a mut self, buffer: &'a mut CudaSlice<f32>) -> CollectiveFuture<'a> {
        Box::pin(Communicator::all_reduce_sum(self, buffer))
    }

    fn broadcast<'a>(
        &'a mut self,
        buffer: &'a mut CudaSlice<f32>,
        root: usize,
    ) -> CollectiveFuture<'a> {
        Box::pin(Communicator::broadcast(self, buffer, root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-member group on the host: the shape of the CPU implementation to come.
    struct Alone;

    impl Collectives for Alone {
        type Buffer = [f32];
        fn rank(&self) -> usize {
            0
        }
        fn world_size(&self) -> usize {
            1
        }
        fn all_reduce_sum<'a>(&'a mut self, _buffer: &'a mut [f32]) -> CollectiveFuture<'a> {
            Box::pin(async { Ok(()) })
        }
        fn broadcast<'a>(&'a mut self, _: &'a mut [f32], root: usize) -> CollectiveFuture<'a> {
            Box::pin(async move {
                if root == 0 {
                    Ok(())
                } else {
                    Err(Error::invalid_options(format!("no rank {root}")))
                }
            })
        }
    }

    /// Generic code over any group.
    async fn average<C: Collectives<Buffer = [f32]> + ?Sized>(
        group: &mut C,
        values: &mut [f32],
    ) -> Result<(), Error> {
        group.all_reduce_sum(values).await?;
        let n = group.world_size() as f32;
        values.iter_mut().for_each(|v| *v /= n);
        Ok(())
    }

    #[tokio::test]
    async fn the_trait_works_generically_and_as_an_object() {
        let mut values = [2.0, 4.0];
        average(&mut Alone, &mut values).await.unwrap();
        assert_eq!(values, [2.0, 4.0]);
        let mut group: Box<dyn Collectives<Buffer = [f32]>> = Box::new(Alone);
        average(group.as_mut(), &mut values).await.unwrap();
        assert!(group.broadcast(&mut values, 1).await.is_err());
        assert_eq!((group.rank(), group.world_size()), (0, 1));
    }
}
