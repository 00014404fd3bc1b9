//! `dlopen` by absolute path, for the libraries kt-gpu calls directly.
//!
//! cudarc opens libraries by bare name only, so it cannot load a `libnccl.so.2` that the
//! loader's search does not reach; kt-gpu opens NCCL itself with this. A library opened
//! here stays loaded for the life of the process (NCCL starts threads: unloading it
//! under them would crash).

use std::ffi::{CStr, CString, OsStr, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::ptr::NonNull;

/// A loaded shared library; never unloaded.
#[derive(Debug)]
pub(crate) struct Library {
    handle: NonNull<c_void>,
}

// SAFETY: a dlopen handle may be used from any thread; dlsym is thread-safe.
unsafe impl Send for Library {}
// SAFETY: as above; the handle is never closed, so sharing it is sound.
unsafe impl Sync for Library {}

impl Library {
    /// Opens `file` (a path, or a bare name for the loader to search) with every symbol
    /// resolved now, so a library with missing dependencies fails here; the error is
    /// `dlerror`'s text.
    pub(crate) fn open(file: &OsStr) -> Result<Library, String> {
        let name = CString::new(file.as_bytes()).map_err(|_| "the path contains a NUL byte")?;
        // SAFETY: `name` is a valid C string; loading runs the library's initializers,
        // which is what opening a library means.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        NonNull::new(handle)
            .map(|handle| Library { handle })
            .ok_or_else(last_error)
    }

    /// The address of `name`, as a function pointer of type `F`, if the library has it.
    ///
    /// # Safety
    /// `F` must be the `extern "C"` function type of the symbol.
    pub(crate) unsafe fn function<F: Copy>(&self, name: &CStr) -> Option<F> {
        if size_of::<F>() != size_of::<*mut c_void>() {
            return None;
        }
        // SAFETY: the handle is live (never closed) and `name` is a C string.
        let address = unsafe { libc::dlsym(self.handle.as_ptr(), name.as_ptr()) };
        // SAFETY: sizes are equal, and the caller vouches for the type.
        (!address.is_null())
            .then(|| unsafe { std::mem::transmute_copy::<*mut c_void, F>(&address) })
    }

    /// The file the loader mapped for this library, found through one of its symbols.
    pub(crate) fn file_of(&self, symbol: &CStr) -> Option<PathBuf> {
        // SAFETY: as in `function`.
        let address = unsafe { libc::dlsym(self.handle.as_ptr(), symbol.as_ptr()) };
        if address.is_null() {
            return None;
        }
        // SAFETY: an all-zero Dl_info is valid; dladdr fills it for a mapped address.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: `address` lies in a mapped object and `info` is writable.
        if unsafe { libc::dladdr(address, &mut info) } == 0 || info.dli_fname.is_null() {
            return None;
        }
        // SAFETY: dladdr returned a NUL-terminated name owned by the loader.
        let name = unsafe { CStr::from_ptr(info.dli_fname) };
        Some(PathBuf::from(OsStr::from_bytes(name.to_bytes())))
    }
}

/// `dlerror`'s text for the last failure on this thread.
fn last_error() -> String {
    // SAFETY: dlerror returns null or a thread-local NUL-terminated string.
    let text = unsafe { libc::dlerror() };
    if text.is_null() {
        "dlopen failed".to_string()
    } else {
        // SAFETY: non-null, NUL-terminated, valid until the next dl* call on this thread.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libc_opens_and_a_missing_library_says_why() {
        let libc = Library::open(OsStr::new("libc.so.6")).unwrap();
        type Getpid = unsafe extern "C" fn() -> libc::pid_t;
        // SAFETY: getpid's C type.
        let getpid: Getpid = unsafe { libc.function(c"getpid") }.unwrap();
        // SAFETY: getpid has no preconditions.
        assert_eq!(unsafe { getpid() } as u32, std::process::id());
        // SAFETY: the type is never called.
        assert!(unsafe { libc.function::<Getpid>(c"no_such_function_kt") }.is_none());
        assert!(libc.file_of(c"getpid").unwrap().is_absolute());
        let error = Library::open(OsStr::new("/nonexistent/libkt.so")).unwrap_err();
        assert!(error.contains("/nonexistent/libkt.so"), "{error}");
    }
}
