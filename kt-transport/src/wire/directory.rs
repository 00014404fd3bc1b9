//! The machine-wide state directory of one user's kt processes: what lets a second
//! driver on the same machine find, trust and call the named actors of the first.
//!
//! # Where it lives
//! `$KT_STATE_DIR` if set, else `$XDG_RUNTIME_DIR/kt` (a per-user tmpfs on systemd
//! machines, cleared at logout), else `/tmp/kt-<uid>`.
//!
//! # How it is protected
//! The directory is created with mode `0700`, and kt refuses to use one that belongs to
//! another user or that group or others can enter ([`Error::StateDirectory`]): another
//! user could otherwise plant names or read the CA key. Files inside are created `0600`.
//! Anyone who can read it can act as this user's kt processes — the same trust boundary
//! as the user account itself, as for an ssh-agent socket.
//!
//! # What it holds
//! - `ca/` — the machine CA (`cert.pem`, `key.pem`). Every driver of this user on this
//!   machine issues its own and its workers' certificates from it, so drivers trust each
//!   other's workers (rule X2 still holds: no other certificate gets in).
//! - `names/` — one file per named local-process actor: the worker's pid and the
//!   actor's address. Claimed atomically (a hard link fails if the name exists), so a
//!   name is unique across processes (rule N1); an entry whose process is gone is stale
//!   and is removed by whoever finds it.
//! - `logs/` — where a detached actor's worker writes its output once its driver is gone
//!   (`<name>.log`, appended).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kt_core::Error;
use kt_core::handle_wire::HandleAddress;
use serde::{Deserialize, Serialize};

use super::tls::ClusterCa;

/// The environment variable that moves the state directory.
pub const STATE_DIR_ENV: &str = "KT_STATE_DIR";

/// This user's state directory, created and checked on first use.
pub fn state_dir() -> Result<&'static Path, Error> {
    static DIR: OnceLock<Result<PathBuf, Error>> = OnceLock::new();
    DIR.get_or_init(|| {
        let path = default_location();
        prepare(&path)?;
        for sub in ["names", "logs"] {
            prepare(&path.join(sub))?;
        }
        Ok(path)
    })
    .as_deref()
    .map_err(Clone::clone)
}

fn default_location() -> PathBuf {
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV) {
        return PathBuf::from(dir);
    }
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
        return Path::new(&runtime).join("kt");
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("kt-{uid}"))
}

fn unusable(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::StateDirectory {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Creates `path` (mode 0700) if needed and checks that only this user can use it.
fn prepare(path: &Path) -> Result<(), Error> {
    match DirBuilder::new().recursive(true).mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) => return Err(unusable(path, format!("cannot create it: {e}"))),
    }
    // symlink_metadata: a symlink planted by someone else is refused, not followed.
    let meta = std::fs::symlink_metadata(path).map_err(|e| unusable(path, e))?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if !meta.is_dir() {
        return Err(unusable(path, "it is not a directory"));
    }
    if meta.uid() != uid {
        return Err(unusable(
            path,
            format!("it belongs to uid {}, not to you (uid {uid})", meta.uid()),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(unusable(
            path,
            format!(
                "its mode is {:o}: group and others can use it",
                meta.permissions().mode() & 0o777
            ),
        ));
    }
    Ok(())
}

/// Writes `contents` to a new private file (mode 0600) next to `near`, and returns its path.
fn write_private_temp(near: &Path, contents: &[u8]) -> std::io::Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file_name = near.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let temp = near.with_file_name(format!(".{file_name}.{}.{n}.tmp", std::process::id()));
    write_private(&temp, contents)?;
    Ok(temp)
}

/// Writes `contents` to a new file only this user can read (mode 0600); fails if the
/// file exists.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// The common name of the machine CA's certificate.
const MACHINE_CA: &str = "kt machine CA";

/// This user's machine CA (`ca/`), created by the first driver that needs it. Two
/// drivers starting at once agree on one: each builds its CA in a private temporary
/// directory and renames it into place, and the loser loads the winner's.
pub fn machine_ca() -> Result<ClusterCa, Error> {
    let dir = state_dir()?;
    let ca_dir = dir.join("ca");
    for _ in 0..2 {
        if ca_dir.exists() {
            prepare(&ca_dir)?;
            let cert = std::fs::read(ca_dir.join("cert.der")).map_err(|e| unusable(&ca_dir, e))?;
            let key = std::fs::read_to_string(ca_dir.join("key.pem"))
                .map_err(|e| unusable(&ca_dir, e))?;
            return Ok(ClusterCa::from_files(MACHINE_CA, cert, &key)?);
        }
        let ca = ClusterCa::generate_named(MACHINE_CA)?;
        let (cert, key) = ca.to_files();
        let temp = dir.join(format!(".ca.{}.tmp", std::process::id()));
        let written = (|| {
            DirBuilder::new().mode(0o700).create(&temp)?;
            for (file, contents) in [("cert.der", &cert[..]), ("key.pem", key.as_bytes())] {
                write_private(&temp.join(file), contents)?;
            }
            std::fs::rename(&temp, &ca_dir)
        })();
        match written {
            Ok(()) => return Ok(ca),
            // Another driver got there first (or the rename failed): load what is there.
            Err(_) => {
                let _ = std::fs::remove_dir_all(&temp);
            }
        }
    }
    Err(unusable(&ca_dir, "could not create or load the machine CA"))
}

/// True while process `pid` exists.
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// One named actor's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NameEntry {
    /// The process that holds the name: the claiming driver until the worker is up,
    /// then the worker.
    pub pid: u32,
    /// Where the actor is reached, once its worker is up.
    pub address: Option<HandleAddress>,
}

/// A file name for an actor name: kept readable where it is safe, hex otherwise.
fn file_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if plain {
        name.to_string()
    } else {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        format!("hex-{hex}")
    }
}

/// The directory of actor names (`names/`).
pub(crate) struct Names {
    dir: PathBuf,
}

impl Names {
    /// This user's name directory.
    pub(crate) fn open() -> Result<Names, Error> {
        Ok(Names {
            dir: state_dir()?.join("names"),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(file_name(name))
    }

    /// Claims `name` for a process about to host it, or fails with `NameTaken` when a
    /// live process holds it. A stale entry (its process is gone) is taken over.
    pub(crate) fn claim(&self, name: &str, entry: &NameEntry) -> Result<(), Error> {
        let path = self.path(name);
        let body = kt_core::codec::encode(entry, "a name entry")?;
        let temp = write_private_temp(&path, &body).map_err(|e| unusable(&self.dir, e))?;
        let claimed = (|| {
            for _ in 0..2 {
                match std::fs::hard_link(&temp, &path) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        match self.read(name) {
                            Some(held) if process_alive(held.pid) => break,
                            // Stale, or unreadable: take it over.
                            _ => {
                                let _ = std::fs::remove_file(&path);
                            }
                        }
                    }
                    Err(e) => return Err(unusable(&self.dir, e)),
                }
            }
            Err(Error::NameTaken {
                name: name.to_string(),
            })
        })();
        let _ = std::fs::remove_file(&temp);
        claimed
    }

    /// Replaces the entry of a claimed name (atomically: readers see old or new).
    pub(crate) fn publish(&self, name: &str, entry: &NameEntry) -> Result<(), Error> {
        let path = self.path(name);
        let body = kt_core::codec::encode(entry, "a name entry")?;
        let temp = write_private_temp(&path, &body).map_err(|e| unusable(&self.dir, e))?;
        std::fs::rename(&temp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            unusable(&self.dir, e)
        })
    }

    /// The entry of `name`, if there is a readable one.
    pub(crate) fn read(&self, name: &str) -> Option<NameEntry> {
        let body = std::fs::read(self.path(name)).ok()?;
        kt_core::codec::decode(&body, "a name entry").ok()
    }

    /// The live entry of `name`; a stale one is removed.
    pub(crate) fn lookup(&self, name: &str) -> Option<NameEntry> {
        let entry = self.read(name)?;
        if process_alive(entry.pid) {
            return Some(entry);
        }
        self.release(name, entry.pid);
        None
    }

    /// Removes the entry of `name` if process `pid` still holds it.
    pub(crate) fn release(&self, name: &str, pid: u32) {
        if self.read(name).is_some_and(|entry| entry.pid == pid) {
            let _ = std::fs::remove_file(self.path(name));
        }
    }
}

/// Where the worker of the detached actor `name` writes its output once its driver is
/// gone.
pub fn log_path(name: &str) -> Result<PathBuf, Error> {
    Ok(state_dir()?
        .join("logs")
        .join(format!("{}.log", file_name(name))))
}

/// Sends this process's stdout and stderr to `logs/<name>.log` from now on: a detached
/// worker does it when its driver (which was reading them) is gone. Falls back to
/// `/dev/null`, so that a write never fails on a closed pipe.
pub(crate) fn redirect_output_to_log(name: &str) {
    let log = log_path(name).ok().and_then(|path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .ok()
    });
    let Some(file) = log.or_else(|| File::options().write(true).open("/dev/null").ok()) else {
        return;
    };
    use std::os::fd::AsRawFd;
    for target in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: dup2 onto the standard descriptors with a file descriptor we own; the
        // standard streams keep working, now writing to the file.
        unsafe { libc::dup2(file.as_raw_fd(), target) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Names {
        let dir = dir.join("names");
        std::fs::create_dir_all(&dir).expect("names dir");
        Names { dir }
    }

    #[test]
    fn a_name_is_claimed_once_and_stale_claims_are_taken_over() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let names = names_in(tmp.path());
        let me = NameEntry {
            pid: std::process::id(),
            address: None,
        };
        names.claim("trainer/0", &me).expect("first claim");
        assert_eq!(
            names.claim("trainer/0", &me),
            Err(Error::NameTaken {
                name: "trainer/0".into()
            })
        );
        assert_eq!(names.lookup("trainer/0"), Some(me.clone()));
        // A process that no longer exists: its entry is stale.
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead = child.id();
        child.wait().expect("reap");
        names
            .publish(
                "trainer/0",
                &NameEntry {
                    pid: dead,
                    address: None,
                },
            )
            .expect("publish");
        names
            .claim("trainer/0", &me)
            .expect("stale entry taken over");
        names.release("trainer/0", dead);
        assert!(
            names.read("trainer/0").is_some(),
            "released only by its holder"
        );
        names.release("trainer/0", me.pid);
        assert_eq!(names.lookup("trainer/0"), None);
    }

    #[test]
    fn file_names_are_safe_for_any_actor_name() {
        assert_eq!(file_name("rollout-3"), "rollout-3");
        assert_eq!(file_name("../x"), "hex-2e2e2f78");
        assert_eq!(file_name(".hidden"), "hex-2e68696464656e");
        assert!(file_name(&"a".repeat(300)).starts_with("hex-"));
    }

    #[test]
    fn directories_others_can_enter_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = prepare(&open).expect_err("0755 is refused");
        assert!(err.to_string().contains("group and others"), "{err}");
        let private = tmp.path().join("private");
        prepare(&private).expect("created 0700");
        let mode = std::fs::metadata(&private)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
