use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::link_dir::{fnv1a, private_dir};
use super::*;

/// A fake shared library: an ELF header for this machine, or a 32-bit one.
fn fake_library(path: &Path, bits64: bool) {
    let mut header = vec![0u8; 64];
    header[..4].copy_from_slice(b"\x7fELF");
    header[4] = if bits64 { 2 } else { 1 };
    header[5] = 1;
    let machine: u16 = if !bits64 {
        3
    } else if cfg!(target_arch = "aarch64") {
        183
    } else {
        62
    };
    header[18..20].copy_from_slice(&machine.to_le_bytes());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, header).unwrap();
}

fn os(dirs: &[&Path]) -> OsString {
    std::env::join_paths(dirs).unwrap()
}

#[test]
fn ld_library_path_comes_first_and_the_real_name_wins_in_a_directory() {
    let root = tempfile::tempdir().unwrap();
    let (first, second) = (root.path().join("first"), root.path().join("second"));
    fake_library(&first.join("libnccl.so"), true);
    fake_library(&first.join("libnccl.so.2"), true);
    fake_library(&second.join("libnccl.so.2"), true);
    let search = LibrarySearch::new(Some(&os(&[&first, &second])), None, vec![]);
    assert_eq!(
        search.find(GpuLibrary::Nccl),
        Some(first.join("libnccl.so.2"))
    );
    assert_eq!(search.find(GpuLibrary::CudaDriver), None);
}

#[test]
fn the_ldconfig_cache_is_parsed_for_this_architecture_only() {
    let root = tempfile::tempdir().unwrap();
    let ours = root.path().join("lib64/libcuda.so.1");
    let theirs = root.path().join("lib32/libcuda.so.1");
    fake_library(&ours, true);
    fake_library(&theirs, false);
    let arch = if cfg!(target_arch = "aarch64") {
        "AArch64"
    } else {
        "x86-64"
    };
    let cache = format!(
        "2 libs found in cache `/etc/ld.so.cache'\n\
         \tlibcuda.so.1 (libc6) => {}\n\
         \tlibcuda.so.1 (libc6,{arch}) => {}\n",
        theirs.display(),
        ours.display()
    );
    let search = LibrarySearch::new(None, Some(&cache), vec![]);
    assert_eq!(search.find(GpuLibrary::CudaDriver), Some(ours));
    assert!(
        search.describe().contains("ldconfig cache (1 entries)"),
        "{}",
        search.describe()
    );
}

#[test]
fn other_directories_are_searched_last_and_foreign_files_are_skipped() {
    let root = tempfile::tempdir().unwrap();
    let (early, wheel) = (
        root.path().join("early"),
        root.path().join("nvidia/nccl/lib"),
    );
    fake_library(&early.join("libnccl.so.2"), false);
    std::fs::write(early.join("libnccl.so"), "INPUT(-lnccl)").unwrap();
    fake_library(&wheel.join("libnccl.so.2"), true);
    let search = LibrarySearch::new(Some(&os(&[&early])), Some(""), vec![wheel.clone()]);
    assert_eq!(
        search.find(GpuLibrary::Nccl),
        Some(wheel.join("libnccl.so.2"))
    );
    // A dangling symlink is no library either.
    let dangling = root.path().join("dangling");
    std::fs::create_dir_all(&dangling).unwrap();
    std::os::unix::fs::symlink(dangling.join("gone"), dangling.join("libnccl.so.2")).unwrap();
    let search = LibrarySearch::new(Some(&os(&[&dangling])), None, vec![]);
    assert_eq!(search.find(GpuLibrary::Nccl), None);
}

#[test]
fn empty_ld_library_path_entries_are_not_the_working_directory() {
    let search = LibrarySearch::new(Some(OsStr::new("::")), None, vec![]);
    assert!(search.ld_library_path.is_empty());
}

#[test]
fn the_link_directory_offers_both_names_and_is_idempotent() {
    let root = tempfile::tempdir().unwrap();
    let real = root.path().join("wheel/libnccl.so.2");
    fake_library(&real, true);
    let dir = root.path().join("links");
    std::fs::create_dir(&dir).unwrap();
    assert_eq!(link_nccl_into(&real, &dir).unwrap(), dir);
    assert_eq!(link_nccl_into(&real, &dir).unwrap(), dir);
    for name in ["libnccl.so", "libnccl.so.2"] {
        assert_eq!(std::fs::read_link(dir.join(name)).unwrap(), real);
    }
    // A later NCCL replaces the links.
    let newer = root.path().join("other/libnccl.so.2");
    fake_library(&newer, true);
    link_nccl_into(&newer, &dir).unwrap();
    assert_eq!(std::fs::read_link(dir.join("libnccl.so")).unwrap(), newer);
    let search = LibrarySearch::new(Some(dir.as_os_str()), None, vec![]);
    assert_eq!(
        search.find(GpuLibrary::Nccl),
        Some(dir.join("libnccl.so.2"))
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "no temporary links left"
    );
}

#[test]
fn a_private_directory_refuses_one_others_can_write_to() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("private");
    assert_eq!(private_dir(&dir).unwrap(), dir);
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    match private_dir(&dir) {
        Err(Error::GpuUnavailable { reason }) => assert!(reason.contains("only this user")),
        other => panic!("expected GpuUnavailable, got {other:?}"),
    }
}

#[test]
fn library_path_puts_the_directory_first() {
    let value = library_path_with(Path::new("/kt/links"));
    let first = std::env::split_paths(&value).next().unwrap();
    assert_eq!(first, Path::new("/kt/links"));
}

#[test]
fn the_hash_is_stable() {
    assert_eq!(fnv1a(OsStr::new("")), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(OsStr::new("a")), 0xaf63_dc4c_8601_ec8c);
}
