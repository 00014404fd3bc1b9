//! kt-gpu against stub CUDA drivers and NCCLs, on machines without a GPU.
//!
//! The setup compiles `tests/stubs/*.c` with `gcc -shared -fPIC` into a temporary
//! directory. The loader reads `LD_LIBRARY_PATH` once per process, so each case runs this
//! test binary again as a child (`--exact child_case`, the case named by
//! `KT_GPU_STUB_CASE`) with `LD_LIBRARY_PATH` pointing at one stub directory, and checks
//! what the child printed and that it exited normally (never a panic or an abort).
//! Without gcc every case prints `skipped: ...`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kt_gpu::libraries::{GpuLibrary, LibrarySearch};

const CASE_ENV: &str = "KT_GPU_STUB_CASE";

/// The stub libraries, each in its own directory.
struct Stubs {
    _root: tempfile::TempDir,
    /// No library at all.
    empty: PathBuf,
    /// `libcuda.so.1` (+ `libcuda.so`): no device unless `KT_STUB_CUDA_DEVICES` says so.
    cuda: PathBuf,
    /// A driver lacking `cuDeviceGet` and the other per-device functions.
    cuda_incomplete: PathBuf,
    /// NCCL 2.30.4 as `libnccl.so.2` only, as in a runtime-only image.
    nccl: PathBuf,
    /// NCCL 2.13.6, too old.
    nccl_old: PathBuf,
    /// The children's TMPDIR.
    tmp: PathBuf,
}

fn stubs() -> Option<&'static Stubs> {
    static STUBS: OnceLock<Result<Stubs, String>> = OnceLock::new();
    match STUBS.get_or_init(build) {
        Ok(stubs) => Some(stubs),
        Err(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

fn build() -> Result<Stubs, String> {
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = |name: &str| {
        let dir = root.path().join(name);
        std::fs::create_dir(&dir)
            .map(|()| dir)
            .map_err(|e| e.to_string())
    };
    let stubs = Stubs {
        empty: dir("empty")?,
        cuda: dir("cuda")?,
        cuda_incomplete: dir("cuda-incomplete")?,
        nccl: dir("nccl")?,
        nccl_old: dir("nccl-old")?,
        tmp: dir("tmp")?,
        _root: root,
    };
    gcc("cuda_stub.c", &stubs.cuda.join("libcuda.so.1"), &[])?;
    gcc(
        "cuda_stub.c",
        &stubs.cuda_incomplete.join("libcuda.so.1"),
        &["-DSTUB_NO_DEVICE_QUERIES"],
    )?;
    for dir in [&stubs.cuda, &stubs.cuda_incomplete] {
        std::os::unix::fs::symlink("libcuda.so.1", dir.join("libcuda.so"))
            .map_err(|e| e.to_string())?;
    }
    gcc("nccl_stub.c", &stubs.nccl.join("libnccl.so.2"), &[])?;
    gcc(
        "nccl_stub.c",
        &stubs.nccl_old.join("libnccl.so.2"),
        &["-DSTUB_VERSION=21306"],
    )?;
    Ok(stubs)
}

fn gcc(source: &str, output: &Path, defines: &[&str]) -> Result<(), String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/stubs")
        .join(source);
    let status = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(output)
        .arg(&source)
        .args(defines)
        .status()
        .map_err(|e| {
            format!("gcc is not available ({e}), so the stub libraries cannot be built")
        })?;
    if status.success() {
        Ok(())
    } else {
        panic!("gcc failed on {}: {status}", source.display())
    }
}

/// Runs `case` in a child process with `LD_LIBRARY_PATH=dir`; returns its output, after
/// checking that it exited normally.
fn child(case: &str, dir: &Path, env: &[(&str, &str)]) -> String {
    let stubs = stubs().expect("stubs were built");
    let exe = std::env::current_exe().unwrap();
    let output = Command::new(exe)
        .args(["--exact", "child_case", "--nocapture", "--test-threads=1"])
        .env(CASE_ENV, case)
        .env("LD_LIBRARY_PATH", dir)
        .env("TMPDIR", &stubs.tmp)
        .env_remove("KT_NCCL_LIBRARY")
        .env_remove("CUDA_VISIBLE_DEVICES")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "case {case} failed ({}):\n{text}",
        output.status
    );
    // The harness may print `test child_case ... ` in front of the first line.
    let outcome: Vec<&str> = text
        .lines()
        .filter_map(|l| l.find("OUTCOME").map(|at| &l[at..]))
        .collect();
    assert!(
        !outcome.is_empty(),
        "case {case} printed no OUTCOME:\n{text}"
    );
    println!(
        "{case} with LD_LIBRARY_PATH={}:\n  {}",
        dir.display(),
        outcome.join("\n  ")
    );
    text
}

fn assert_has(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "expected {part:?} in:\n{text}");
    }
}

/// The cases, run only in a child process.
#[test]
fn child_case() {
    let Ok(case) = std::env::var(CASE_ENV) else {
        println!("child_case: the other tests run this in child processes");
        return;
    };
    match case.as_str() {
        "devices" => {
            println!("OUTCOME count: {:?}", kt_gpu::device_count());
            println!("OUTCOME devices: {:?}", kt_gpu::devices());
        }
        "nccl" => {
            // SAFETY: is_culib_present only tries to open the library.
            let cudarc_sees = unsafe { kt_gpu::cudarc::nccl::sys::is_culib_present() };
            println!(
                "OUTCOME version: {:?}",
                kt_gpu::nccl_version().map(|v| v.to_string())
            );
            println!("OUTCOME path: {:?}", kt_gpu::nccl_library_path());
            println!("OUTCOME cudarc finds libnccl.so by name: {cudarc_sees}");
        }
        "unique-id" => match kt_gpu::UniqueId::new() {
            Ok(id) => {
                let expected: Vec<u8> = (0..128u32).map(|i| (i as u8) ^ 0x5a).collect();
                assert_eq!(id.as_bytes().as_slice(), expected.as_slice());
                let bytes = rmp_serde::to_vec(&id).unwrap();
                assert_eq!(
                    rmp_serde::from_slice::<kt_gpu::UniqueId>(&bytes).unwrap(),
                    id
                );
                println!(
                    "OUTCOME unique id: {id:?}, {} bytes as msgpack",
                    bytes.len()
                );
            }
            Err(error) => println!("OUTCOME unique id: {error:?}"),
        },
        "link-dir" => println!(
            "OUTCOME link dir: {:?}",
            kt_gpu::libraries::nccl_library_dir()
        ),
        other => panic!("unknown case {other}"),
    }
}

#[test]
fn no_driver_is_gpu_unavailable() {
    let Some(stubs) = stubs() else { return };
    if let Some(driver) = LibrarySearch::from_env().find(GpuLibrary::CudaDriver) {
        println!(
            "skipped: this machine has a CUDA driver ({}), so none cannot be simulated",
            driver.display()
        );
        return;
    }
    let text = child("devices", &stubs.empty, &[]);
    assert_has(
        &text,
        &[
            "GpuUnavailable { reason: \"no CUDA driver (libcuda.so.1) was found in LD_LIBRARY_PATH",
            "install the NVIDIA driver, or run on a node with GPUs",
        ],
    );
}

#[test]
fn a_driver_without_devices_is_gpu_unavailable() {
    let Some(stubs) = stubs() else { return };
    let text = child("devices", &stubs.cuda, &[]);
    assert_has(
        &text,
        &[
            "count: Err(GpuUnavailable",
            "devices: Err(GpuUnavailable",
            "reports no device (CUDA_ERROR_NO_DEVICE)",
            "CUDA_VISIBLE_DEVICES is not set",
        ],
    );
    let text = child("devices", &stubs.cuda, &[("CUDA_VISIBLE_DEVICES", "")]);
    assert_has(&text, &["CUDA_VISIBLE_DEVICES is set to ''"]);
}

#[test]
fn stub_devices_are_enumerated() {
    let Some(stubs) = stubs() else { return };
    let text = child("devices", &stubs.cuda, &[("KT_STUB_CUDA_DEVICES", "2")]);
    assert_has(
        &text,
        &[
            "count: Ok(2)",
            "DeviceInfo { index: 1, name: \"Stub GPU 1\", total_memory_bytes: 85899345921, \
             compute_capability: (9, 0) }",
        ],
    );
}

#[test]
fn a_driver_missing_functions_is_gpu_failed_not_a_panic() {
    let Some(stubs) = stubs() else { return };
    let text = child(
        "devices",
        &stubs.cuda_incomplete,
        &[("KT_STUB_CUDA_DEVICES", "1")],
    );
    assert_has(
        &text,
        &[
            "count: Ok(1)",
            "devices: Err(GpuFailed { operation: \"cuDeviceGet\"",
            "cudarc panicked: Missing symbol cuDeviceGet",
        ],
    );
}

#[test]
fn nccl_found_only_as_so_2_loads_and_its_link_dir_serves_cudarc_too() {
    let Some(stubs) = stubs() else { return };
    let found =
        LibrarySearch::new(Some(stubs.nccl.as_os_str()), None, vec![]).find(GpuLibrary::Nccl);
    assert_eq!(found, Some(stubs.nccl.join("libnccl.so.2")));
    // kt-gpu opens it by path; cudarc, asking the loader for libnccl.so, cannot.
    let text = child("nccl", &stubs.nccl, &[]);
    assert_has(
        &text,
        &[
            "version: Ok(\"2.30.4\")",
            &format!("path: Ok({:?})", stubs.nccl.join("libnccl.so.2")),
            "cudarc finds libnccl.so by name: false",
        ],
    );
    // The private link directory, made by the public function in a child...
    let text = child("link-dir", &stubs.nccl, &[]);
    let (_, line) = text.split_once("OUTCOME link dir: Ok(\"").expect(&text);
    let dir = PathBuf::from(line.split_once("\")").expect(&text).0);
    assert!(dir.starts_with(&stubs.tmp), "{}", dir.display());
    for name in ["libnccl.so", "libnccl.so.2"] {
        assert_eq!(
            std::fs::read_link(dir.join(name)).unwrap(),
            stubs.nccl.join("libnccl.so.2")
        );
    }
    // ...serves a process started with it on LD_LIBRARY_PATH, cudarc included.
    let text = child("nccl", &dir, &[]);
    assert_has(
        &text,
        &[
            "version: Ok(\"2.30.4\")",
            "cudarc finds libnccl.so by name: true",
        ],
    );
}

#[test]
fn a_unique_id_comes_from_the_stub() {
    let Some(stubs) = stubs() else { return };
    let text = child("unique-id", &stubs.nccl, &[]);
    assert_has(&text, &["unique id: UniqueId(5a5b58595e5f5c5d..)"]);
}

#[test]
fn an_old_nccl_is_refused() {
    let Some(stubs) = stubs() else { return };
    let text = child("nccl", &stubs.nccl_old, &[]);
    assert_has(
        &text,
        &[
            "version: Err(GpuUnavailable",
            "is version 2.13.6, older than 2.14.0",
        ],
    );
}

#[test]
fn no_nccl_is_gpu_unavailable() {
    let Some(stubs) = stubs() else { return };
    if let Some(nccl) = LibrarySearch::from_env().find(GpuLibrary::Nccl) {
        println!(
            "skipped: this machine has NCCL ({}), so none cannot be simulated",
            nccl.display()
        );
        return;
    }
    let text = child("nccl", &stubs.empty, &[]);
    assert_has(
        &text,
        &[
            "version: Err(GpuUnavailable { reason: \"NCCL (libnccl.so.2) was not found in",
            "or set KT_NCCL_LIBRARY to the path of libnccl.so.2",
        ],
    );
}
