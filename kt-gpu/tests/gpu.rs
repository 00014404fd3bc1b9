//! kt-gpu on a real GPU: devices, one-rank NCCL communicators, all-reduce and broadcast,
//! and the never-hang path against real NCCL. Each test prints `skipped: <reason>` and
//! returns where there is no device (or no NCCL). `gpu-check.sh` runs these on a GPU
//! machine; run them one at a time (`--test-threads=1`) to keep their output apart.

use std::time::{Duration, Instant};

use kt_core::Error;
use kt_gpu::cudarc::driver::CudaSlice;
use kt_gpu::{Collectives, Communicator, UniqueId};

const JOIN: Duration = Duration::from_secs(60);

/// `Some(())` with a device, else prints why not.
fn device() -> Option<()> {
    match kt_gpu::devices() {
        Ok(_) => Some(()),
        Err(error) => {
            println!("skipped: {error}");
            None
        }
    }
}

/// `Some(())` with a device and NCCL, else prints why not.
fn device_and_nccl() -> Option<()> {
    device()?;
    match kt_gpu::nccl_version() {
        Ok(version) => {
            println!("NCCL {version} from {:?}", kt_gpu::nccl_library_path());
            Some(())
        }
        Err(error) => {
            println!("skipped: {error}");
            None
        }
    }
}

/// A one-rank communicator on device 0.
async fn alone() -> Communicator {
    let stream = kt_gpu::context(0).unwrap().new_stream().unwrap();
    let id = UniqueId::new().unwrap();
    Communicator::new(stream, &id, 0, 1, JOIN).await.unwrap()
}

#[test]
fn devices_are_enumerated() {
    let Some(()) = device() else { return };
    let devices = kt_gpu::devices().unwrap();
    assert_eq!(devices.len(), kt_gpu::device_count().unwrap());
    for (i, device) in devices.iter().enumerate() {
        println!("{device:?}");
        assert_eq!(device.index, i);
        assert!(!device.name.is_empty());
        assert!(device.total_memory_bytes > 1 << 30);
        assert!(device.compute_capability >= (5, 0));
    }
    assert!(
        kt_gpu::context(devices.len()).is_err(),
        "no device past the last"
    );
}

#[tokio::test]
async fn a_one_rank_communicator_is_made_within_its_deadline_and_closed() {
    let Some(()) = device_and_nccl() else { return };
    let started = Instant::now();
    let comm = alone().await;
    println!("joined in {:?}", started.elapsed());
    assert_eq!((comm.rank(), comm.world_size()), (0, 1));
    assert!(!comm.is_aborted());
    comm.close().await.unwrap();
}

#[tokio::test]
async fn one_rank_all_reduce_and_broadcast() {
    let Some(()) = device_and_nccl() else { return };
    let mut comm = alone().await;
    let stream = comm.stream().clone();
    let values: Vec<f32> = (0..1_000_000).map(|i| i as f32 * 0.5).collect();
    let mut buffer = stream.clone_htod(&values).unwrap();
    let started = Instant::now();
    comm.all_reduce_sum(&mut buffer).await.unwrap();
    println!("all-reduce of 4 MB in {:?}", started.elapsed());
    assert_eq!(
        stream.clone_dtoh(&buffer).unwrap(),
        values,
        "one member's sum is itself"
    );
    comm.broadcast(&mut buffer, 0).await.unwrap();
    assert_eq!(stream.clone_dtoh(&buffer).unwrap(), values);
    let mut bytes = stream.clone_htod(&[1u8, 2, 3]).unwrap();
    comm.broadcast(&mut bytes, 0).await.unwrap();
    assert_eq!(stream.clone_dtoh(&bytes).unwrap(), [1, 2, 3]);
    assert!(matches!(
        comm.broadcast(&mut buffer, 1).await,
        Err(Error::InvalidOptions { .. })
    ));

    // Through the trait, as an object.
    let mut group: Box<dyn Collectives<Buffer = CudaSlice<f32>>> = Box::new(comm);
    group.all_reduce_sum(&mut buffer).await.unwrap();
    group.broadcast(&mut buffer, 0).await.unwrap();
    assert_eq!(stream.clone_dtoh(&buffer).unwrap(), values);

    // After an abort every call fails, and nothing hangs or panics.
    let mut comm = alone().await;
    comm.abort();
    assert!(comm.is_aborted());
    match comm.all_reduce_sum(&mut buffer).await {
        Err(Error::GpuFailed { message, .. }) => assert!(message.contains("aborted"), "{message}"),
        other => panic!("expected GpuFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_member_that_never_joins_is_a_timeout_not_a_hang() {
    let Some(()) = device_and_nccl() else { return };
    let stream = kt_gpu::context(0).unwrap().new_stream().unwrap();
    let id = UniqueId::new().unwrap();
    let started = Instant::now();
    // Rank 0 of 2; rank 1 never comes.
    let result = Communicator::new(stream, &id, 0, 2, Duration::from_secs(3)).await;
    let elapsed = started.elapsed();
    println!("gave up after {elapsed:?}: {:?}", result.as_ref().err());
    match result {
        Err(Error::GpuFailed { operation, message }) => {
            assert_eq!(operation, "ncclCommInitRankConfig");
            assert!(
                message.contains("did not complete within 3000 ms"),
                "{message}"
            );
        }
        Err(other) => panic!("expected GpuFailed, got {other:?}"),
        Ok(_) => panic!("a two-member group formed with one member"),
    }
    assert!(
        elapsed < Duration::from_secs(20),
        "the abort itself took {elapsed:?}"
    );
}
