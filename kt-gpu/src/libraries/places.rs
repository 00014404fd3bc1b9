//! Where the loader, drivers, toolkits and Python wheels put GPU libraries.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Parses `ldconfig -p`: `\tlibnccl.so.2 (libc6,x86-64) => /usr/lib/.../libnccl.so.2`,
/// keeping the entries for this machine's architecture.
pub(super) fn parse_ldconfig(output: &str) -> Vec<(String, PathBuf)> {
    let arch = if cfg!(target_arch = "x86_64") {
        Some("x86-64")
    } else if cfg!(target_arch = "aarch64") {
        Some("AArch64")
    } else {
        None
    };
    output
        .lines()
        .filter_map(|line| {
            let (left, path) = line.split_once(" => ")?;
            let left = left.trim();
            let (name, flags) = left.split_once(' ').unwrap_or((left, ""));
            let fits = arch.is_none_or(|arch| flags.contains(arch));
            fits.then(|| (name.to_string(), PathBuf::from(path.trim())))
        })
        .collect()
}

/// The loader's cache as `ldconfig -p` prints it (`/sbin` is often not on `PATH`).
pub(super) fn ldconfig_output() -> Option<String> {
    ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"]
        .iter()
        .find_map(|program| {
            let output = std::process::Command::new(program)
                .arg("-p")
                .output()
                .ok()?;
            output
                .status
                .success()
                .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
        })
}

/// Where drivers, CUDA toolkits and NCCL packages put their libraries.
pub(super) fn well_known_dirs() -> Vec<PathBuf> {
    let triple = if cfg!(target_arch = "aarch64") {
        "aarch64-linux-gnu"
    } else {
        "x86_64-linux-gnu"
    };
    let target = if cfg!(target_arch = "aarch64") {
        "sbsa-linux"
    } else {
        "x86_64-linux"
    };
    [
        format!("/usr/lib/{triple}"),
        format!("/lib/{triple}"),
        "/usr/lib64".to_string(),
        "/usr/local/nvidia/lib64".to_string(),
        "/usr/local/nvidia/lib".to_string(),
        "/usr/lib/wsl/lib".to_string(),
        "/usr/local/cuda/lib64".to_string(),
        format!("/usr/local/cuda/targets/{target}/lib"),
        "/usr/local/nccl/lib".to_string(),
        "/opt/nccl/lib".to_string(),
        "/usr/lib".to_string(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// NCCL's directories inside Python wheels (`nvidia-nccl-cu12`, `-cu13`) and conda.
pub(super) fn python_wheel_dirs() -> Vec<PathBuf> {
    let mut prefixes: Vec<PathBuf> = ["VIRTUAL_ENV", "CONDA_PREFIX"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .collect();
    let conda_libs: Vec<PathBuf> = prefixes.iter().map(|p| p.join("lib")).collect();
    if let Some(home) = std::env::var_os("HOME") {
        prefixes.push(Path::new(&home).join(".local"));
    }
    prefixes.extend(["/usr/local", "/usr", "/opt/conda"].map(PathBuf::from));
    let mut dirs = Vec::new();
    for prefix in prefixes {
        let Ok(entries) = std::fs::read_dir(prefix.join("lib")) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with("python3") {
                continue;
            }
            for packages in ["site-packages", "dist-packages"] {
                for lib in ["nvidia/nccl/lib", "nvidia/cu13/lib", "nvidia/cu12/lib"] {
                    let dir = entry.path().join(packages).join(lib);
                    if dir.is_dir() {
                        dirs.push(dir);
                    }
                }
            }
        }
    }
    dirs.extend(conda_libs);
    dirs
}

/// Whether `path` is a shared library the loader could map into this process: an ELF
/// file of this pointer width and, on x86-64 and AArch64, this machine type.
pub(crate) fn is_loadable(path: &Path) -> bool {
    let mut header = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut file| file.read_exact(&mut header));
    if read.is_err() || &header[..4] != b"\x7fELF" {
        return false;
    }
    let class = if cfg!(target_pointer_width = "64") {
        2
    } else {
        1
    };
    let machine = u16::from_le_bytes([header[18], header[19]]);
    let machine_fits = if cfg!(target_arch = "x86_64") {
        machine == 62
    } else if cfg!(target_arch = "aarch64") {
        machine == 183
    } else {
        true
    };
    header[4] == class && machine_fits
}
