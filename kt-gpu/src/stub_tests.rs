//! The NCCL loader and the communicator lifecycle, driven against a stub NCCL that gcc
//! builds from `tests/stubs/nccl_stub.c` (each test its own copy, so its own counters).
//! No GPU needed: [`RawComm`] never touches CUDA.

use std::ffi::{OsStr, c_int};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kt_core::Error;

use crate::dl::Library;
use crate::nccl::UniqueId;
use crate::nccl_api::NcclApi;
use crate::nccl_comm::RawComm;

/// A stub NCCL built with `defines`, loaded from its own directory; `None` (after printing
/// why) when gcc is missing.
fn stub(defines: &[&str]) -> Option<(tempfile::TempDir, PathBuf)> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stubs/nccl_stub.c");
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("libnccl.so.2");
    let status = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .args(defines)
        .status();
    match status {
        Ok(status) if status.success() => Some((dir, library)),
        Ok(status) => panic!("gcc failed on {}: {status}", source.display()),
        Err(error) => {
            println!("skipped: gcc is not available ({error}); the stub NCCL cannot be built");
            None
        }
    }
}

fn open(library: &Path) -> Result<&'static NcclApi, Error> {
    let api = NcclApi::open(Library::open(library.as_os_str()), library.to_path_buf())?;
    Ok(Box::leak(Box::new(api)))
}

fn counter(library: &Path, name: &std::ffi::CStr) -> c_int {
    let library = Library::open(library.as_os_str()).unwrap();
    // SAFETY: the stub's `int f(void)` counters.
    let f: unsafe extern "C" fn() -> c_int = unsafe { library.function(name) }.unwrap();
    // SAFETY: no arguments, no preconditions.
    unsafe { f() }
}

fn id() -> UniqueId {
    let bytes: Vec<u8> = (0..UniqueId::LEN).map(|i| (i as u8) ^ 0x5a).collect();
    UniqueId::from_bytes(&bytes).unwrap()
}

fn gpu_failed(result: Result<RawComm, Error>) -> (String, String) {
    match result {
        Err(Error::GpuFailed { operation, message }) => (operation, message),
        Err(other) => panic!("expected GpuFailed, got {other:?}"),
        Ok(_) => panic!("expected GpuFailed, got a communicator"),
    }
}

#[tokio::test]
async fn a_communicator_joins_closes_and_aborts_when_dropped() {
    let Some((_dir, library)) = stub(&["-DSTUB_COMM"]) else {
        return;
    };
    let api = open(&library).unwrap();
    assert_eq!(api.version.to_string(), "2.30.4");
    let comm = RawComm::init(api, &id(), 0, 1, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(comm.is_live());
    comm.close(Duration::from_secs(5)).await.unwrap();
    assert_eq!(counter(&library, c"stub_destroys"), 1);
    assert_eq!(counter(&library, c"stub_aborts"), 0);

    let mut comm = RawComm::init(api, &id(), 0, 1, Duration::from_secs(5))
        .await
        .unwrap();
    drop(
        RawComm::init(api, &id(), 0, 1, Duration::from_secs(5))
            .await
            .unwrap(),
    );
    assert_eq!(
        counter(&library, c"stub_aborts"),
        1,
        "dropping a live communicator aborts it"
    );
    comm.abort();
    comm.abort();
    assert_eq!(counter(&library, c"stub_aborts"), 2, "abort is idempotent");
    match comm.handle() {
        Err(Error::GpuFailed { message, .. }) => assert!(message.contains("aborted")),
        other => panic!("expected GpuFailed, got {other:?}"),
    }
    drop(comm);
    assert_eq!(counter(&library, c"stub_aborts"), 2);
}

#[tokio::test]
async fn a_member_that_never_joins_is_a_timeout_and_an_abort_not_a_hang() {
    let Some((_dir, library)) = stub(&["-DSTUB_COMM"]) else {
        return;
    };
    let api = open(&library).unwrap();
    let started = Instant::now();
    let result = RawComm::init(api, &id(), 0, 2, Duration::from_millis(150)).await;
    let elapsed = started.elapsed();
    let (operation, message) = gpu_failed(result);
    assert_eq!(operation, "ncclCommInitRankConfig");
    assert!(
        message.contains("did not complete within 150 ms"),
        "{message}"
    );
    assert!(elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(3));
    assert_eq!(counter(&library, c"stub_aborts"), 1);

    // A caller that gives up first (its own timeout) drops the wait: that aborts too.
    let id = id();
    let init = RawComm::init(api, &id, 0, 2, Duration::from_secs(60));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), init)
            .await
            .is_err()
    );
    assert_eq!(counter(&library, c"stub_aborts"), 2);
}

#[tokio::test]
async fn a_member_that_died_is_a_remote_error_and_an_abort() {
    let Some((_dir, library)) = stub(&["-DSTUB_COMM"]) else {
        return;
    };
    let api = open(&library).unwrap();
    let (operation, message) =
        gpu_failed(RawComm::init(api, &id(), 1, 3, Duration::from_secs(5)).await);
    assert_eq!(operation, "ncclCommInitRankConfig");
    assert!(
        message.starts_with("ncclRemoteError (6): remote process exited"),
        "{message}"
    );
    assert!(message.contains("stub: last error") && message.contains("create the group again"));
    assert_eq!(counter(&library, c"stub_aborts"), 1);
}

#[tokio::test]
async fn bad_arguments_fail_before_nccl_and_nccl_rejections_are_reported() {
    let Some((_dir, library)) = stub(&["-DSTUB_COMM"]) else {
        return;
    };
    let api = open(&library).unwrap();
    let result = RawComm::init(api, &id(), 2, 2, Duration::from_secs(1)).await;
    assert!(matches!(result, Err(Error::InvalidOptions { .. })));
    let wrong_id = UniqueId::from_bytes(&[0; UniqueId::LEN]).unwrap();
    let (_, message) =
        gpu_failed(RawComm::init(api, &wrong_id, 0, 1, Duration::from_secs(1)).await);
    assert!(message.starts_with("ncclInvalidArgument (4)"), "{message}");
    assert_eq!(
        counter(&library, c"stub_aborts"),
        0,
        "no communicator was made"
    );
}

#[test]
fn an_nccl_without_communicators_or_too_old_is_unavailable_not_a_panic() {
    let Some((_dir, library)) = stub(&[]) else {
        return;
    };
    let api = open(&library).unwrap();
    match api.comm_functions() {
        Err(Error::GpuUnavailable { reason }) => {
            assert!(reason.contains("has no ncclCommInitRankConfig"), "{reason}")
        }
        _ => panic!("expected GpuUnavailable"),
    }
    let Some((_dir, old)) = stub(&["-DSTUB_VERSION=21306"]) else {
        return;
    };
    match open(&old) {
        Err(Error::GpuUnavailable { reason }) => {
            assert!(
                reason.contains("is version 2.13.6, older than 2.14.0"),
                "{reason}"
            )
        }
        _ => panic!("expected GpuUnavailable"),
    }
    match open(Path::new("/nonexistent/libnccl.so.2")) {
        Err(Error::GpuUnavailable { reason }) => assert!(reason.contains("cannot be loaded")),
        _ => panic!("expected GpuUnavailable"),
    }
    let libc = NcclApi::open(Library::open(OsStr::new("libc.so.6")), "libc.so.6".into());
    match libc.map(|_| ()) {
        Err(Error::GpuUnavailable { reason }) => assert!(reason.contains("has no ncclGetVersion")),
        _ => panic!("expected GpuUnavailable"),
    }
}
