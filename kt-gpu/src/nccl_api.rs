//! NCCL's C functions, resolved by kt-gpu from a library it opened by absolute path.
//!
//! cudarc's `nccl::sys` resolves each function on first call and panics when it is
//! missing, and it can only find a library named `libnccl.so`. kt-gpu instead opens the
//! file [`crate::libraries`] finds (usually `libnccl.so.2`) and resolves every function it
//! will ever call when it loads the library, so a missing one is a typed error up front.
//! Results are read as plain `c_int` (never as cudarc's Rust enum, for which an unknown
//! code from a newer NCCL would be undefined behaviour).

use std::ffi::{CStr, OsStr, c_char, c_int, c_uint, c_void};
use std::path::PathBuf;
use std::sync::OnceLock;

use cudarc::nccl::sys::ncclUniqueId;
use kt_core::Error;

use crate::dl::Library;
use crate::libraries::{GpuLibrary, find_library};
use crate::nccl::{MIN_NCCL_VERSION, NcclVersion};

/// `ncclComm_t`.
pub(crate) type RawCommHandle = *mut c_void;
/// `cudaStream_t`, the same object as the driver's `CUstream`.
pub(crate) type RawStream = *mut c_void;

/// `ncclSuccess`.
pub(crate) const NCCL_SUCCESS: c_int = 0;
/// `ncclInProgress`: a non-blocking call has not finished yet.
pub(crate) const NCCL_IN_PROGRESS: c_int = 7;

/// `ncclConfig_t` as NCCL 2.14 defined it: the oldest layout with `blocking`. Newer NCCLs
/// read `size` and `version`, copy what the caller gave and default the rest.
#[repr(C)]
pub(crate) struct ConfigV21400 {
    size: usize,
    magic: c_uint,
    version: c_uint,
    blocking: c_int,
    /// The struct's tail padding, which NCCL >= 2.17 reads as `cgaClusterSize` (and then
    /// resets, the version being 2.14): `NCCL_CONFIG_UNDEF_INT` all the same.
    padding: c_int,
}

impl ConfigV21400 {
    /// `NCCL_CONFIG_INITIALIZER` with `blocking = 0`.
    pub(crate) fn non_blocking() -> ConfigV21400 {
        ConfigV21400 {
            size: size_of::<ConfigV21400>(),
            magic: 0xcafe_beef,
            version: 21400,
            blocking: 0,
            padding: c_int::MIN,
        }
    }
}

type GetVersion = unsafe extern "C" fn(*mut c_int) -> c_int;
type GetErrorString = unsafe extern "C" fn(c_int) -> *const c_char;
type GetLastError = unsafe extern "C" fn(RawCommHandle) -> *const c_char;
type GetUniqueId = unsafe extern "C" fn(*mut ncclUniqueId) -> c_int;
type InitRankConfig = unsafe extern "C" fn(
    *mut RawCommHandle,
    c_int,
    ncclUniqueId,
    c_int,
    *mut ConfigV21400,
) -> c_int;
type GetAsyncError = unsafe extern "C" fn(RawCommHandle, *mut c_int) -> c_int;
type CommCall = unsafe extern "C" fn(RawCommHandle) -> c_int;
/// `ncclAllReduce(send, recv, count, datatype, op, comm, stream)`; `ncclBroadcast` has the
/// same shape with `root` in place of `op`.
pub(crate) type Collective = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    usize,
    c_int,
    c_int,
    RawCommHandle,
    RawStream,
) -> c_int;

/// The communicator functions (NCCL >= 2.14).
pub(crate) struct CommFunctions {
    pub(crate) init_rank_config: InitRankConfig,
    pub(crate) get_async_error: GetAsyncError,
    pub(crate) abort: CommCall,
    pub(crate) finalize: CommCall,
    pub(crate) destroy: CommCall,
    pub(crate) all_reduce: Collective,
    pub(crate) broadcast: Collective,
}

/// A loaded NCCL with every function kt-gpu calls.
pub(crate) struct NcclApi {
    pub(crate) path: PathBuf,
    pub(crate) version: NcclVersion,
    get_error_string: GetErrorString,
    get_last_error: GetLastError,
    pub(crate) get_unique_id: GetUniqueId,
    comm: Result<CommFunctions, &'static str>,
}

/// The process's NCCL, loaded on first use ([`NcclApi::load`]); the outcome is kept.
pub(crate) fn nccl() -> Result<&'static NcclApi, Error> {
    static NCCL: OnceLock<Result<NcclApi, Error>> = OnceLock::new();
    NCCL.get_or_init(NcclApi::load)
        .as_ref()
        .map_err(Clone::clone)
}

impl NcclApi {
    /// Finds NCCL ([`find_library`]: `KT_NCCL_LIBRARY`, `LD_LIBRARY_PATH`, the ldconfig
    /// cache, well-known and wheel directories) and opens it by path; failing that, lets
    /// the loader search by name (it also knows `RUNPATH`), and else reports the search.
    fn load() -> Result<NcclApi, Error> {
        match find_library(GpuLibrary::Nccl) {
            Ok(path) => NcclApi::open(Library::open(path.as_os_str()), path),
            Err(not_found) => GpuLibrary::Nccl
                .file_names()
                .iter()
                .find_map(|name| Library::open(OsStr::new(name)).ok())
                .map(|library| {
                    let path = library.file_of(c"ncclGetVersion").unwrap_or_default();
                    NcclApi::open(Ok(library), path)
                })
                .unwrap_or(Err(not_found)),
        }
    }

    /// Resolves the functions of the NCCL at `path` and checks its version.
    pub(crate) fn open(library: Result<Library, String>, path: PathBuf) -> Result<NcclApi, Error> {
        let unavailable = |why: String| Error::GpuUnavailable {
            reason: format!("NCCL at {} {why}", path.display()),
        };
        let library = library.map_err(|why| {
            unavailable(format!(
                "cannot be loaded ({why}): reinstall NCCL, or set KT_NCCL_LIBRARY to a working \
                 libnccl.so.2"
            ))
        })?;
        let missing =
            |name: &str| unavailable(format!("has no {name}: it is not NCCL, or is far too old"));
        // SAFETY (all `function` calls): the types are NCCL's C signatures (nccl.h).
        let get_version: GetVersion = unsafe { library.function(c"ncclGetVersion") }
            .ok_or_else(|| missing("ncclGetVersion"))?;
        let mut code: c_int = 0;
        // SAFETY: ncclGetVersion writes one int.
        let status = unsafe { get_version(&mut code) };
        if status != NCCL_SUCCESS {
            return Err(unavailable(format!(
                "fails ncclGetVersion ({}): reinstall NCCL",
                result_name(status)
            )));
        }
        let version = NcclVersion::from_code(code);
        if version < MIN_NCCL_VERSION {
            return Err(unavailable(format!(
                "is version {version}, older than {MIN_NCCL_VERSION}, the oldest kt-gpu supports \
                 (non-blocking communicators): install a newer NCCL, or set KT_NCCL_LIBRARY"
            )));
        }
        let get_error_string = unsafe { library.function(c"ncclGetErrorString") }
            .ok_or_else(|| missing("ncclGetErrorString"))?;
        let get_last_error = unsafe { library.function(c"ncclGetLastError") }
            .ok_or_else(|| missing("ncclGetLastError"))?;
        let get_unique_id = unsafe { library.function(c"ncclGetUniqueId") }
            .ok_or_else(|| missing("ncclGetUniqueId"))?;
        let comm = (|| {
            Ok(CommFunctions {
                init_rank_config: unsafe { library.function(c"ncclCommInitRankConfig") }
                    .ok_or("ncclCommInitRankConfig")?,
                get_async_error: unsafe { library.function(c"ncclCommGetAsyncError") }
                    .ok_or("ncclCommGetAsyncError")?,
                abort: unsafe { library.function(c"ncclCommAbort") }.ok_or("ncclCommAbort")?,
                finalize: unsafe { library.function(c"ncclCommFinalize") }
                    .ok_or("ncclCommFinalize")?,
                destroy: unsafe { library.function(c"ncclCommDestroy") }
                    .ok_or("ncclCommDestroy")?,
                all_reduce: unsafe { library.function(c"ncclAllReduce") }.ok_or("ncclAllReduce")?,
                broadcast: unsafe { library.function(c"ncclBroadcast") }.ok_or("ncclBroadcast")?,
            })
        })();
        // The library stays loaded: `Library` is never closed.
        Ok(NcclApi {
            path,
            version,
            get_error_string,
            get_last_error,
            get_unique_id,
            comm,
        })
    }

    /// The communicator functions, or which one this library lacks.
    pub(crate) fn comm_functions(&self) -> Result<&CommFunctions, Error> {
        self.comm.as_ref().map_err(|name| Error::GpuUnavailable {
            reason: format!(
                "NCCL {} at {} has no {name}, which communicators need: install NCCL >= {}",
                self.version,
                self.path.display(),
                MIN_NCCL_VERSION
            ),
        })
    }

    /// `GpuFailed` for a failed NCCL call: the result's name, NCCL's text for it, and the
    /// last error NCCL logged (for `comm`, or globally when it is null).
    pub(crate) fn error(&self, operation: &str, code: c_int, comm: RawCommHandle) -> Error {
        // SAFETY: both return static (or thread-local) NUL-terminated strings, or null.
        let (text, last) = unsafe {
            (
                c_text((self.get_error_string)(code)),
                c_text((self.get_last_error)(comm)),
            )
        };
        let mut message = format!("{} ({code})", result_name(code));
        for part in [text, last].into_iter().flatten() {
            message.push_str(": ");
            message.push_str(&part);
        }
        if code == 6 {
            message.push_str(
                ". A member of the group failed or exited: abort this communicator and create \
                 the group again",
            );
        }
        Error::GpuFailed {
            operation: operation.to_string(),
            message,
        }
    }
}

/// The name of an `ncclResult_t`.
pub(crate) fn result_name(code: c_int) -> &'static str {
    match code {
        0 => "ncclSuccess",
        1 => "ncclUnhandledCudaError",
        2 => "ncclSystemError",
        3 => "ncclInternalError",
        4 => "ncclInvalidArgument",
        5 => "ncclInvalidUsage",
        6 => "ncclRemoteError",
        7 => "ncclInProgress",
        8 => "ncclTimeout",
        _ => "an unknown ncclResult_t",
    }
}

/// A C string NCCL returned, unless null or empty.
///
/// # Safety
/// `text` is null or points to a NUL-terminated string.
unsafe fn c_text(text: *const c_char) -> Option<String> {
    if text.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    let text = unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .trim()
        .to_string();
    (!text.is_empty()).then_some(text)
}
