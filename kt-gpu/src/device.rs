//! CUDA devices: how many, which, and a context on one — with typed errors, never a panic.
//!
//! Every entry point first asks cudarc whether the driver library can be loaded at all
//! (`is_culib_present`, which only tries to open it: cudarc itself would panic), then
//! initializes the driver, mapping `CUDA_ERROR_NO_DEVICE` to [`Error::GpuUnavailable`]
//! and any other failure to [`Error::GpuFailed`]; each cudarc call also runs under
//! [`guarded`] in case the loaded driver lacks a function.

use std::sync::Arc;

use cudarc::driver::result::{self, DriverError};
use cudarc::driver::sys::{CUdevice_attribute, CUresult};
use cudarc::driver::{CudaContext, sys};
use kt_core::Error;
use serde::{Deserialize, Serialize};

use crate::dl::Library;
use crate::guard::guarded;
use crate::libraries::{GpuLibrary, find_library};

/// One CUDA device as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The device's ordinal in this process (after `CUDA_VISIBLE_DEVICES`).
    pub index: usize,
    /// The marketing name (`NVIDIA H200`).
    pub name: String,
    /// Total device memory in bytes.
    pub total_memory_bytes: u64,
    /// The compute capability, `(9, 0)` for Hopper.
    pub compute_capability: (u32, u32),
}

/// How many CUDA devices this process can use.
///
/// Never `Ok(0)`: no driver, or a driver that sees no device, is
/// [`Error::GpuUnavailable`] with what to do about it.
pub fn device_count() -> Result<usize, Error> {
    init_driver()?;
    let count = guarded("cuDeviceGetCount", || {
        result::device::get_count().map_err(|e| driver_error("cuDeviceGetCount", e))
    })?;
    match usize::try_from(count) {
        Ok(count) if count > 0 => Ok(count),
        _ => Err(no_device()),
    }
}

/// Every CUDA device this process can use, in ordinal order.
///
/// ```
/// match kt_gpu::devices() {
///     Ok(devices) => {
///         for d in devices {
///             println!("GPU {}: {} ({} GiB)", d.index, d.name, d.total_memory_bytes >> 30);
///         }
///     }
///     // No driver or no device: the reason says what to install or set.
///     Err(kt_core::Error::GpuUnavailable { reason }) => println!("no GPU: {reason}"),
///     Err(other) => panic!("the driver failed: {other}"),
/// }
/// ```
pub fn devices() -> Result<Vec<DeviceInfo>, Error> {
    let count = device_count()?;
    (0..count).map(device_info).collect()
}

/// A CUDA context on device `ordinal` (its primary context), bound to this thread:
/// what cudarc's streams and buffers hang off. Like [`devices`], it returns typed errors
/// where `CudaContext::new` would panic.
pub fn context(ordinal: usize) -> Result<Arc<CudaContext>, Error> {
    init_driver()?;
    guarded("cuDevicePrimaryCtxRetain", || {
        CudaContext::new(ordinal).map_err(|e| driver_error("cuDevicePrimaryCtxRetain", e))
    })
}

/// Loads and initializes the driver (`cuInit`), or says why it cannot be.
pub(crate) fn init_driver() -> Result<(), Error> {
    // SAFETY: is_culib_present only tries to open the library and closes it again.
    let present = guarded("dlopen(libcuda)", || Ok(unsafe { sys::is_culib_present() }))?;
    if !present {
        return Err(no_driver());
    }
    guarded("cuInit", || match result::init() {
        Ok(()) => Ok(()),
        Err(DriverError(CUresult::CUDA_ERROR_NO_DEVICE)) => Err(no_device()),
        Err(e) => Err(driver_error("cuInit", e)),
    })
}

fn device_info(index: usize) -> Result<DeviceInfo, Error> {
    guarded("cuDeviceGet", || {
        let ordinal = i32::try_from(index).unwrap_or(i32::MAX);
        let device = result::device::get(ordinal).map_err(|e| driver_error("cuDeviceGet", e))?;
        let name =
            result::device::get_name(device).map_err(|e| driver_error("cuDeviceGetName", e))?;
        // SAFETY: `device` came from cuDeviceGet.
        let total = unsafe { result::device::total_mem(device) }
            .map_err(|e| driver_error("cuDeviceTotalMem", e))?;
        let attribute = |attribute| {
            // SAFETY: as above.
            unsafe { result::device::get_attribute(device, attribute) }
                .map(|value| u32::try_from(value).unwrap_or(0))
                .map_err(|e| driver_error("cuDeviceGetAttribute", e))
        };
        let major = attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        Ok(DeviceInfo {
            index,
            name,
            total_memory_bytes: total as u64,
            compute_capability: (major, minor),
        })
    })
}

/// `GpuFailed` with the driver's error name and text (`CUDA_ERROR_...: ...`).
pub(crate) fn driver_error(operation: &str, error: DriverError) -> Error {
    let name = format!("{:?}", error.0);
    // cuGetErrorString may itself be missing from a broken driver: guard it.
    let text = guarded("cuGetErrorString", || {
        Ok(error
            .error_string()
            .map(|text| text.to_string_lossy().into_owned())
            .ok())
    })
    .ok()
    .flatten();
    Error::GpuFailed {
        operation: operation.to_string(),
        message: match text {
            Some(text) => format!("{name}: {text}"),
            None => name,
        },
    }
}

fn no_device() -> Error {
    let visible = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(value) => format!("CUDA_VISIBLE_DEVICES is set to '{value}': check it"),
        Err(_) => "CUDA_VISIBLE_DEVICES is not set".to_string(),
    };
    Error::GpuUnavailable {
        reason: format!(
            "the CUDA driver is installed but reports no device (CUDA_ERROR_NO_DEVICE); \
             {visible}. Run on a node with GPUs (a Kubernetes pod sees them only when it \
             requests nvidia.com/gpu, `Compute::gpus`)"
        ),
    }
}

/// Why cudarc could not open the driver: not found at all, found where the loader does
/// not look, or found but not loadable.
fn no_driver() -> Error {
    let found = match find_library(GpuLibrary::CudaDriver) {
        Ok(path) => path,
        Err(error) => return error,
    };
    let reason = match Library::open(found.as_os_str()) {
        Ok(_) => format!(
            "no CUDA driver could be loaded by name, though {} exists: the dynamic loader does \
             not look there. Start this process with LD_LIBRARY_PATH={} (kt-gpu cannot add it \
             later: the loader reads it at process start)",
            found.display(),
            found
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        Err(why) => format!(
            "no CUDA driver could be loaded: {} exists but cannot be loaded ({why}): \
             reinstall the NVIDIA driver",
            found.display()
        ),
    };
    Error::GpuUnavailable { reason }
}
