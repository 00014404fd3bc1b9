//! The private directory that makes NCCL loadable as `libnccl.so` for processes kt starts.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kt_core::Error;

use super::{GpuLibrary, NCCL_LIBRARY_ENV, find_library};

/// Finds NCCL and returns a directory from which the loader finds it under both
/// `libnccl.so` and `libnccl.so.2`: a private directory (`$TMPDIR/kt-gpu-<uid>/nccl-<hash>`,
/// mode 0700) of symlinks to the file found. Prepend it to the `LD_LIBRARY_PATH` of the
/// processes you start ([`library_path_with`]).
pub fn nccl_library_dir() -> Result<PathBuf, Error> {
    let nccl = find_library(GpuLibrary::Nccl)?;
    let base = private_dir(&std::env::temp_dir().join(format!("kt-gpu-{}", current_uid())))?;
    let dir = private_dir(&base.join(format!("nccl-{:016x}", fnv1a(nccl.as_os_str()))))?;
    link_nccl_into(&nccl, &dir)
}

/// Makes `dir/libnccl.so` and `dir/libnccl.so.2` symlinks to `nccl` (replacing other links
/// of those names atomically) and returns `dir`.
pub fn link_nccl_into(nccl: &Path, dir: &Path) -> Result<PathBuf, Error> {
    let failed = |what: &str, path: &Path, error: std::io::Error| Error::GpuUnavailable {
        reason: format!(
            "could not {what} {}: {error}; set {NCCL_LIBRARY_ENV}, or make the directory \
             writable",
            path.display()
        ),
    };
    let target = std::path::absolute(nccl).map_err(|e| failed("resolve", nccl, e))?;
    for name in GpuLibrary::Nccl.file_names() {
        let link = dir.join(name);
        if std::fs::read_link(&link).is_ok_and(|current| current == target) {
            continue;
        }
        let temporary = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&temporary);
        std::os::unix::fs::symlink(&target, &temporary)
            .map_err(|e| failed("create the symlink", &temporary, e))?;
        std::fs::rename(&temporary, &link).map_err(|e| failed("create the symlink", &link, e))?;
    }
    Ok(dir.to_path_buf())
}

/// The value of `LD_LIBRARY_PATH` for a process kt starts: `dir`, then this process's own.
pub fn library_path_with(dir: &Path) -> OsString {
    let mut value = dir.as_os_str().to_os_string();
    if let Some(current) = std::env::var_os("LD_LIBRARY_PATH").filter(|v| !v.is_empty()) {
        value.push(":");
        value.push(current);
    }
    value
}

/// Creates `dir` (mode 0700) if needed and checks that only this user can write to it.
pub(super) fn private_dir(dir: &Path) -> Result<PathBuf, Error> {
    let unusable = |why: String| Error::GpuUnavailable {
        reason: format!(
            "the private library directory {} {why}: remove it, or set TMPDIR elsewhere",
            dir.display()
        ),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(unusable(format!("could not be created ({e})"))),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| unusable(e.to_string()))?;
    if !meta.is_dir() || meta.uid() != current_uid() || meta.permissions().mode() & 0o022 != 0 {
        return Err(unusable(
            "is not a directory only this user can write to".to_string(),
        ));
    }
    Ok(dir.to_path_buf())
}

fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// A stable 64-bit FNV-1a hash (std's hasher may change between Rust versions).
pub(super) fn fnv1a(bytes: &OsStr) -> u64 {
    bytes
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}
