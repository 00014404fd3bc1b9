//! Finding the CUDA driver and NCCL libraries the way the dynamic loader would.
//!
//! [`LibrarySearch`] looks, in order, in the directories of `LD_LIBRARY_PATH`, in the
//! loader's cache (`ldconfig -p`), in well-known directories (`/usr/lib/x86_64-linux-gnu`,
//! `/usr/local/nvidia/lib64`, `/usr/local/cuda/lib64`, `/usr/local/nccl/lib`, ...) and in
//! the `nvidia/nccl/lib` directories of Python wheels under `site-packages`. Only files
//! built for this machine's architecture count (a 32-bit `libcuda.so.1` is skipped).
//!
//! NCCL's real file name is `libnccl.so.2`, but cudarc only ever asks the loader for
//! `libnccl.so` (and `.so.1`, `.so.12`, ...): a runtime-only image has just the former.
//! kt-gpu's own NCCL calls open the library by absolute path, so *this* process needs
//! nothing. For processes kt starts, [`nccl_library_dir`] prepares a private directory
//! where NCCL is loadable under both names; prepend it to the worker's `LD_LIBRARY_PATH`
//! with [`library_path_with`]. (The loader reads `LD_LIBRARY_PATH` once, at process
//! start: setting it in a running process changes nothing for that process.)

use std::ffi::OsStr;
use std::path::PathBuf;

use kt_core::Error;

mod link_dir;
mod places;

pub use link_dir::{library_path_with, link_nccl_into, nccl_library_dir};
pub(crate) use places::is_loadable;
use places::{ldconfig_output, parse_ldconfig, python_wheel_dirs, well_known_dirs};

/// Names an NCCL library explicitly; it wins over every search.
pub const NCCL_LIBRARY_ENV: &str = "KT_NCCL_LIBRARY";

/// A GPU library kt-gpu loads at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GpuLibrary {
    /// The CUDA driver, `libcuda.so.1`, installed with the NVIDIA driver.
    CudaDriver,
    /// NCCL, `libnccl.so.2`.
    Nccl,
}

impl GpuLibrary {
    /// The file names the library goes by, the real one first.
    pub fn file_names(self) -> &'static [&'static str] {
        match self {
            GpuLibrary::CudaDriver => &["libcuda.so.1", "libcuda.so"],
            GpuLibrary::Nccl => &["libnccl.so.2", "libnccl.so"],
        }
    }

    /// What to do when the library is missing.
    fn advice(self) -> String {
        match self {
            GpuLibrary::CudaDriver => {
                "install the NVIDIA driver, or run on a node with GPUs".to_string()
            }
            GpuLibrary::Nccl => format!(
                "install NCCL (`apt install libnccl2`, or `pip install nvidia-nccl-cu12` or \
                 `nvidia-nccl-cu13`), or set {NCCL_LIBRARY_ENV} to the path of libnccl.so.2"
            ),
        }
    }
}

/// Where to look for GPU libraries, in the loader's order.
#[derive(Debug, Clone, Default)]
pub struct LibrarySearch {
    ld_library_path: Vec<PathBuf>,
    ldconfig: Vec<(String, PathBuf)>,
    dirs: Vec<PathBuf>,
}

impl LibrarySearch {
    /// The search this process would do: its `LD_LIBRARY_PATH`, the output of
    /// `ldconfig -p`, the well-known directories and Python wheels' NCCL directories.
    pub fn from_env() -> LibrarySearch {
        let mut dirs = well_known_dirs();
        dirs.extend(python_wheel_dirs());
        LibrarySearch::new(
            std::env::var_os("LD_LIBRARY_PATH").as_deref(),
            ldconfig_output().as_deref(),
            dirs,
        )
    }

    /// A search over the given sources: an `LD_LIBRARY_PATH` value, the text `ldconfig -p`
    /// prints, and further directories, searched in that order.
    pub fn new(
        ld_library_path: Option<&OsStr>,
        ldconfig_output: Option<&str>,
        dirs: Vec<PathBuf>,
    ) -> LibrarySearch {
        let ld_library_path = ld_library_path
            .map(|value| {
                std::env::split_paths(value)
                    .filter(|dir| !dir.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        LibrarySearch {
            ld_library_path,
            ldconfig: ldconfig_output.map(parse_ldconfig).unwrap_or_default(),
            dirs,
        }
    }

    /// The first file that provides `library`, preferring its real name in each place.
    pub fn find(&self, library: GpuLibrary) -> Option<PathBuf> {
        let names = library.file_names();
        let in_dirs = |dirs: &[PathBuf]| {
            dirs.iter().find_map(|dir| {
                names
                    .iter()
                    .map(|name| dir.join(name))
                    .find(|path| is_loadable(path))
            })
        };
        in_dirs(&self.ld_library_path)
            .or_else(|| {
                names.iter().find_map(|name| {
                    self.ldconfig
                        .iter()
                        .find(|(entry, path)| entry == name && is_loadable(path))
                        .map(|(_, path)| path.clone())
                })
            })
            .or_else(|| in_dirs(&self.dirs))
            .map(|path| std::path::absolute(&path).unwrap_or(path))
    }

    /// Where this search looks, for error messages.
    pub fn describe(&self) -> String {
        let shown: Vec<String> = self
            .dirs
            .iter()
            .take(4)
            .map(|dir| dir.display().to_string())
            .collect();
        format!(
            "LD_LIBRARY_PATH ({} directories), the ldconfig cache ({} entries) and {} other \
             directories ({}{})",
            self.ld_library_path.len(),
            self.ldconfig.len(),
            self.dirs.len(),
            shown.join(", "),
            if self.dirs.len() > shown.len() {
                ", ..."
            } else {
                ""
            },
        )
    }
}

/// Finds `library` for this process: [`NCCL_LIBRARY_ENV`] first for NCCL, then
/// [`LibrarySearch::from_env`]. The error says what was searched and what to install.
pub fn find_library(library: GpuLibrary) -> Result<PathBuf, Error> {
    if library == GpuLibrary::Nccl
        && let Some(path) = std::env::var_os(NCCL_LIBRARY_ENV)
    {
        let path = PathBuf::from(path);
        return if is_loadable(&path) {
            Ok(path)
        } else {
            Err(Error::GpuUnavailable {
                reason: format!(
                    "{NCCL_LIBRARY_ENV}={} is not a {}-bit shared library for this machine: \
                     point it at libnccl.so.2, or unset it to search",
                    path.display(),
                    usize::BITS
                ),
            })
        };
    }
    let search = LibrarySearch::from_env();
    search.find(library).ok_or_else(|| Error::GpuUnavailable {
        reason: format!(
            "{} ({}) was {} in {}: {}",
            match library {
                GpuLibrary::CudaDriver => "no CUDA driver",
                GpuLibrary::Nccl => "NCCL",
            },
            library.file_names()[0],
            match library {
                GpuLibrary::CudaDriver => "found",
                GpuLibrary::Nccl => "not found",
            },
            search.describe(),
            library.advice()
        ),
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
