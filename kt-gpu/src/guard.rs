//! The last line of defence: a panic inside cudarc becomes a typed error.
//!
//! cudarc resolves every CUDA symbol the first time it is called and panics when the
//! loaded library lacks it (an old driver, a stub). kt-gpu checks for the library before
//! any call, but a missing *symbol* can only be caught: every cudarc call goes through
//! [`guarded`], which turns the panic into [`Error::GpuFailed`] instead of unwinding
//! into the caller. (This needs `panic = "unwind"`, Rust's default; the panic message is
//! still printed by the panic hook.)

use std::panic::{AssertUnwindSafe, catch_unwind};

use kt_core::Error;

/// Runs `f`, turning a panic into [`Error::GpuFailed`] for `operation`.
pub(crate) fn guarded<T>(
    operation: &str,
    f: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(Error::GpuFailed {
            operation: operation.to_string(),
            message: format!(
                "cudarc panicked: {} (the loaded library lacks a function kt-gpu needs: \
                 update the NVIDIA driver or NCCL)",
                panic_message(payload.as_ref())
            ),
        }),
    }
}

/// The text of a panic payload, when it is a string.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_gpu_failed() {
        let result: Result<(), Error> = guarded("cuInit", || panic!("Missing symbol cuInit"));
        match result {
            Err(Error::GpuFailed { operation, message }) => {
                assert_eq!(operation, "cuInit");
                assert!(message.contains("Missing symbol cuInit"), "{message}");
            }
            other => panic!("expected GpuFailed, got {other:?}"),
        }
        assert_eq!(guarded("x", || Ok(3)), Ok(3));
    }
}
