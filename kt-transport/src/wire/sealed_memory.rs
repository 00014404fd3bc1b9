//! [`SealedMemory`]: an immutable byte buffer in a sealed memfd, for same-host sharing.
//!
//! A value that processes on one machine share is written once into a memfd, sealed,
//! and handed to readers as a file descriptor (see [`super::fd_passing`]); each reader
//! maps the same pages read-only, so a value of any size costs one copy in total, not
//! one per reader.
//!
//! Why a memfd and not a file in `/dev/shm`: Kubernetes gives a pod a 64 MiB `/dev/shm`
//! unless its spec mounts a memory-backed `emptyDir` there, and a file there outlives
//! a crashed writer. A memfd has no name in any filesystem, is charged to the memory
//! cgroup of the process that fills it (the limit the pod already has), and is freed
//! when the last descriptor and mapping are gone.
//!
//! Why seals, and why the reader checks them itself: without `F_SEAL_WRITE` the sender
//! could keep writing after the reader validated the bytes, and without
//! `F_SEAL_SHRINK` it could truncate the file so that a reader's access faults with
//! `SIGBUS`. Seals cannot be removed once set, so a reader that sees them through
//! `F_GET_SEALS` knows the bytes are fixed for good, whatever the sender claims.
//! `F_SEAL_FUTURE_WRITE` is not enough: it leaves the sender's existing writable
//! mappings in place.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use bytes::Bytes;
use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;
use rustix::mm::{Advice, MapFlags, ProtFlags};

use super::TransportError;

/// The seals a reader insists on: no writes, no growing, no shrinking.
const REQUIRED_SEALS: SealFlags = SealFlags::WRITE
    .union(SealFlags::GROW)
    .union(SealFlags::SHRINK);

/// An immutable, sealed memfd mapped read-only into this process.
///
/// Cheap to share behind an [`Arc`]; [`SealedMemory::into_bytes`] turns it into a
/// [`Bytes`] without copying. The descriptor stays open so it can be passed on.
#[derive(Debug)]
pub struct SealedMemory {
    fd: OwnedFd,
    /// `None` for a zero-length value: `mmap` refuses a length of zero.
    map: Option<Mapping>,
}

impl SealedMemory {
    /// Creates a sealed memfd of `len` bytes whose contents `fill` writes.
    ///
    /// `fill` gets the whole buffer, zeroed. When it returns, the writable mapping is
    /// removed (the kernel refuses `F_SEAL_WRITE` while one exists), the memfd is sealed
    /// against writing, growing, shrinking and further sealing, and mapped read-only.
    pub fn create_with(len: usize, fill: impl FnOnce(&mut [u8])) -> Result<Self, TransportError> {
        let fd = memfd()?;
        rustix::fs::ftruncate(&fd, len as u64).map_err(failed(format!(
            "could not size a memfd to {len} bytes (is memory, or the pod's limit, exhausted?)"
        )))?;
        match Mapping::new(&fd, len, ProtFlags::READ | ProtFlags::WRITE)? {
            // The mapping is dropped, hence unmapped, before the seals go on.
            Some(mut writable) => fill(writable.as_mut_slice()),
            None => fill(&mut []),
        }
        Self::seal(fd, len)
    }

    /// A memfd of `len` zeroed bytes, mapped writable, to be filled (over time, from a
    /// stream, say) and then sealed with [`WritableMemory::seal`].
    pub fn writable(len: usize) -> Result<WritableMemory, TransportError> {
        let fd = memfd()?;
        rustix::fs::ftruncate(&fd, len as u64).map_err(failed(format!(
            "could not size a memfd to {len} bytes (is memory, or the pod's limit, exhausted?)"
        )))?;
        // Populated now: allocating the pages in one go costs less than faulting them
        // in one by one while a stream fills them (about 25 against 50 ms per 100 MB).
        let map = Mapping::new_with(
            &fd,
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::POPULATE,
        )?;
        Ok(WritableMemory { fd, map, len })
    }

    /// Creates a sealed memfd holding a copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, TransportError> {
        // write(2) copies straight into the memfd's pages: about 1.5 times as fast as
        // faulting them in through a writable mapping (60 against 95 ms for 100 MiB).
        let fd = memfd()?;
        let mut written = 0;
        while written < bytes.len() {
            match rustix::io::pwrite(&fd, &bytes[written..], written as u64) {
                Ok(0) => return Err(failed("could not fill a memfd")(Errno::NOSPC)),
                Ok(n) => written += n,
                Err(Errno::INTR) => {}
                Err(errno) => return Err(failed("could not fill a memfd")(errno)),
            }
        }
        Self::seal(fd, bytes.len())
    }

    /// Seals a memfd of `len` bytes that no one else has and maps it read-only.
    fn seal(fd: OwnedFd, len: usize) -> Result<Self, TransportError> {
        rustix::fs::fcntl_add_seals(&fd, REQUIRED_SEALS | SealFlags::SEAL).map_err(failed(
            "could not seal a new memfd (EBUSY: a writable mapping of it still exists)",
        ))?;
        let map = Mapping::new(&fd, len, ProtFlags::READ)?;
        Ok(Self { fd, map })
    }

    /// Maps a memfd received from another process, after checking its seals and size.
    ///
    /// Refuses a descriptor that is not sealed against writing, growing and shrinking,
    /// and one whose size differs from `expected_len` when that is given.
    pub fn from_received(fd: OwnedFd, expected_len: Option<u64>) -> Result<Self, TransportError> {
        let seals = rustix::fs::fcntl_get_seals(&fd).map_err(failed(
            "the received descriptor is not a memfd, the sender must pass a sealed one; \
             refusing to map it (F_GET_SEALS failed)",
        ))?;
        let missing = REQUIRED_SEALS.difference(seals);
        if !missing.is_empty() {
            return Err(TransportError::Io(format!(
                "the received memfd is not sealed against {} (seals: {}): the sender must seal it; refusing to map it",
                SealNames(missing),
                SealNames(seals)
            )));
        }
        let stat = rustix::fs::fstat(&fd).map_err(failed("could not stat a received memfd"))?;
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if let Some(expected) = expected_len
            && expected != size
        {
            return Err(TransportError::Io(format!(
                "the received memfd holds {size} bytes but {expected} were announced: the sender sent the wrong descriptor; refusing to map it"
            )));
        }
        let len = usize::try_from(size).map_err(|_| {
            TransportError::Io(format!("a memfd of {size} bytes does not fit in memory"))
        })?;
        let map = Mapping::new(&fd, len, ProtFlags::READ)?;
        Ok(Self { fd, map })
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |map| map.len)
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, read straight from the shared pages.
    pub fn as_slice(&self) -> &[u8] {
        self.map.as_ref().map_or(&[], Mapping::as_slice)
    }

    /// The memfd, to pass to another process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A [`Bytes`] over the mapping, without copying; the mapping lives as long as
    /// any clone of it or of the [`Arc`].
    pub fn into_bytes(self: Arc<Self>) -> Bytes {
        Bytes::from_owner(SharedMemory(self))
    }

    /// Asks the kernel to map every page now, for a reader that will read every byte:
    /// one call instead of a page fault per page or few pages.
    ///
    /// Best effort: a failure only means the pages are faulted in on first access.
    pub fn populate(&self) {
        let Some(map) = &self.map else { return };
        // SAFETY: the range is exactly our own live mapping; neither advice changes
        // its contents or validity, they only fault pages in early.
        let populate = unsafe {
            rustix::mm::madvise(map.ptr.as_ptr().cast(), map.len, Advice::LinuxPopulateRead)
        };
        // EINVAL: a kernel before 5.14, without MADV_POPULATE_READ.
        if populate == Err(Errno::INVAL) {
            // SAFETY: as above.
            let _ =
                unsafe { rustix::mm::madvise(map.ptr.as_ptr().cast(), map.len, Advice::WillNeed) };
        }
    }
}

impl AsRef<[u8]> for SealedMemory {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// The owner [`Bytes::from_owner`] needs: `Arc<SealedMemory>` is not `AsRef<[u8]>`.
struct SharedMemory(Arc<SealedMemory>);

impl AsRef<[u8]> for SharedMemory {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// A shared mapping of a whole memfd, unmapped on drop.
/// A memfd this process alone has, mapped writable: fill it, then [`seal`](Self::seal)
/// it into a [`SealedMemory`] that other processes may map.
#[derive(Debug)]
pub struct WritableMemory {
    fd: OwnedFd,
    /// `None` for a zero-length buffer.
    map: Option<Mapping>,
    len: usize,
}

impl WritableMemory {
    /// The whole buffer, to write into.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match &mut self.map {
            Some(map) => map.as_mut_slice(),
            None => &mut [],
        }
    }

    /// A read-only view of the same pages, for readers of the parts already written
    /// while the rest is being filled (a relay serving the chunks it verified). It maps
    /// the memfd through a read-only descriptor of its own (`/proc/self/fd`, reopened), so
    /// it never counts as a writable mapping and [`seal`](Self::seal) still succeeds while
    /// the view lives; it stays valid after the seal.
    pub fn reader(&self) -> Result<ReadView, TransportError> {
        let path = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        let fd = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(
            failed(format!("could not reopen a memfd read-only ({path})")),
        )?;
        let map = Mapping::new(&fd, self.len, ProtFlags::READ)?;
        Ok(ReadView { _fd: fd, map })
    }

    /// Unmaps the writable view, seals the memfd and maps it read-only.
    pub fn seal(self) -> Result<SealedMemory, TransportError> {
        let WritableMemory { fd, map, len } = self;
        // The kernel refuses F_SEAL_WRITE while a writable mapping exists.
        drop(map);
        SealedMemory::seal(fd, len)
    }
}

/// A read-only mapping of a [`WritableMemory`]'s pages (see [`WritableMemory::reader`]).
///
/// Which of its bytes may be read is its owner's business: the ones the writer has
/// finished (a relay reads only verified chunks; the others may still change).
#[derive(Debug)]
pub struct ReadView {
    _fd: OwnedFd,
    /// `None` for a zero-length buffer.
    map: Option<Mapping>,
}

impl ReadView {
    /// Bytes `range` of the pages, without a copy; the mapping lives as long as any
    /// clone of the result or of the [`Arc`]. The caller reads only bytes the writer
    /// has finished with.
    pub fn slice(self: &Arc<Self>, range: std::ops::Range<usize>) -> Bytes {
        Bytes::from_owner(ViewOwner(self.clone())).slice(range)
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |map| map.len)
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The owner [`Bytes::from_owner`] needs for a [`ReadView`].
struct ViewOwner(Arc<ReadView>);

impl AsRef<[u8]> for ViewOwner {
    fn as_ref(&self) -> &[u8] {
        // The pages are another mapping of memory a writer may still change elsewhere:
        // for Rust they are memory outside this program (like another process's), and
        // `ReadView::slice` hands out only the finished bytes.
        self.0.map.as_ref().map_or(&[], Mapping::as_slice)
    }
}

#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value alone; nothing in it is tied
// to the thread that made it. Shared access only reads (`as_slice`), and the one
// writable use (`as_mut_slice`) needs `&mut`.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: `&Mapping` only hands out shared reads.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` shared with `prot`; `None` when `len` is zero.
    fn new(fd: &OwnedFd, len: usize, prot: ProtFlags) -> Result<Option<Self>, TransportError> {
        Self::new_with(fd, len, prot, MapFlags::empty())
    }

    /// As [`Mapping::new`], with extra mmap flags.
    fn new_with(
        fd: &OwnedFd,
        len: usize,
        prot: ProtFlags,
        extra: MapFlags,
    ) -> Result<Option<Self>, TransportError> {
        if len == 0 {
            return Ok(None);
        }
        // SAFETY: a fresh mapping at an address the kernel picks cannot alias any Rust
        // object; the length is the file's size, so every mapped byte is backed (and,
        // the file being sealed against shrinking or ours alone, stays backed).
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                MapFlags::SHARED | extra,
                fd,
                0,
            )
        }
        .map_err(failed(format!("could not map a memfd of {len} bytes")))?;
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| TransportError::Io("mmap returned a null mapping".into()))?;
        Ok(Some(Self { ptr, len }))
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` is our live mapping, fully backed (see `new`), and no
        // `&mut` to it exists while `&self` is borrowed.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_slice`; only called on a writable mapping of a memfd no
        // other process has yet, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is our own mapping, and no slice of it outlives `self`.
        // munmap of a valid mapping cannot fail; if it did, a later seal would say so.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A new memfd that allows sealing and is closed on exec.
fn memfd() -> Result<OwnedFd, TransportError> {
    let flags = MemfdFlags::ALLOW_SEALING | MemfdFlags::CLOEXEC;
    // NOEXEC_SEAL (Linux 6.3+) keeps the memfd from ever being executed, and a host
    // with `vm.memfd_noexec = 2` refuses memfds without it; older kernels say EINVAL.
    match rustix::fs::memfd_create("kt-store", flags | MemfdFlags::NOEXEC_SEAL) {
        Err(Errno::INVAL) => rustix::fs::memfd_create("kt-store", flags),
        result => result,
    }
    .map_err(failed("could not create a memfd"))
}

/// The error for a failed system call: `what` went wrong, then the errno.
fn failed(what: impl fmt::Display) -> impl FnOnce(Errno) -> TransportError {
    move |errno| TransportError::Io(format!("{what}: {errno}"))
}

/// Seal flags written as `WRITE|GROW`, most important first, or `none`.
struct SealNames(SealFlags);

impl fmt::Display for SealNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(SealFlags, &str); 6] = [
            (SealFlags::WRITE, "WRITE"),
            (SealFlags::GROW, "GROW"),
            (SealFlags::SHRINK, "SHRINK"),
            (SealFlags::SEAL, "SEAL"),
            (SealFlags::FUTURE_WRITE, "FUTURE_WRITE"),
            (SealFlags::EXEC, "EXEC"),
        ];
        let mut names = NAMES
            .iter()
            .filter(|(flag, _)| self.0.contains(*flag))
            .map(|(_, name)| *name);
        let Some(first) = names.next() else {
            // Either no seals, or only ones newer than this list.
            return f.write_str(if self.0.is_empty() { "none" } else { "other" });
        };
        f.write_str(first)?;
        names.try_for_each(|name| write!(f, "|{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_memfd_filled_then_sealed_holds_what_was_written() {
        let mut writable = SealedMemory::writable(5).unwrap();
        writable.as_mut_slice().copy_from_slice(b"hello");
        let sealed = writable.seal().unwrap();
        assert_eq!(sealed.as_slice(), b"hello");
        assert!(rustix::io::pwrite(sealed.fd(), b"x", 0).is_err());
        let received = SealedMemory::from_received(copy(&sealed), Some(5)).unwrap();
        assert_eq!(received.as_slice(), b"hello");
        assert!(
            SealedMemory::writable(0)
                .unwrap()
                .seal()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_read_view_sees_what_is_written_and_survives_the_seal() {
        let mut writable = SealedMemory::writable(3 << 20).unwrap();
        let view = Arc::new(writable.reader().unwrap());
        writable.as_mut_slice()[..5].copy_from_slice(b"hello");
        let part = view.slice(0..5);
        assert_eq!(&part[..], b"hello");
        writable.as_mut_slice()[1 << 20] = 7;
        assert_eq!(view.slice(1 << 20..(1 << 20) + 1)[0], 7);
        // The view is read-only: it does not keep the memfd from being sealed.
        let sealed = writable.seal().unwrap();
        assert_eq!(&sealed.as_slice()[..5], b"hello");
        assert_eq!(&part[..], b"hello");
        assert_eq!(view.len(), 3 << 20);
    }

    fn unsealed(bytes: &[u8]) -> OwnedFd {
        let fd = rustix::fs::memfd_create("test", MemfdFlags::ALLOW_SEALING).unwrap();
        rustix::io::write(&fd, bytes).unwrap();
        fd
    }

    fn copy(memory: &SealedMemory) -> OwnedFd {
        memory.fd().try_clone_to_owned().unwrap()
    }

    fn refusal(fd: OwnedFd, expected_len: Option<u64>) -> String {
        SealedMemory::from_received(fd, expected_len)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn holds_what_was_filled_and_refuses_writes() {
        let pattern = |i: usize| (i % 251) as u8;
        let fill = |buf: &mut [u8]| {
            buf.iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = pattern(i))
        };
        let memory = SealedMemory::create_with(10_000, fill).unwrap();
        assert_eq!(memory.len(), 10_000);
        assert!(
            memory
                .as_slice()
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern(i))
        );
        assert_eq!(rustix::io::pwrite(memory.fd(), b"x", 0), Err(Errno::PERM));
        assert_eq!(rustix::fs::ftruncate(memory.fd(), 1), Err(Errno::PERM));
        assert_eq!(rustix::fs::ftruncate(memory.fd(), 20_000), Err(Errno::PERM));
        let seals = rustix::fs::fcntl_get_seals(memory.fd()).unwrap();
        assert!(
            seals.contains(REQUIRED_SEALS | SealFlags::SEAL),
            "{seals:?}"
        );
        memory.populate();
    }

    #[test]
    fn zero_length_works() {
        let memory = SealedMemory::from_slice(&[]).unwrap();
        assert!(memory.is_empty() && memory.as_slice().is_empty());
        let received = SealedMemory::from_received(copy(&memory), Some(0)).unwrap();
        received.populate();
        assert!(Arc::new(received).into_bytes().is_empty());
    }

    #[test]
    fn bytes_share_the_mapping() {
        fn shareable<T: Send + Sync>() {}
        shareable::<SealedMemory>();
        let memory = Arc::new(SealedMemory::from_slice(b"hello memfd").unwrap());
        let ptr = memory.as_slice().as_ptr();
        let bytes = memory.into_bytes();
        assert_eq!((&bytes[..], bytes.as_ptr()), (&b"hello memfd"[..], ptr));
        assert_eq!(&bytes.slice(6..)[..], b"memfd");
    }

    #[test]
    fn refuses_unsealed_and_partly_sealed_memfds() {
        let error = refusal(unsealed(b"abc"), None);
        assert!(
            error.contains("not sealed against WRITE|GROW|SHRINK (seals: none)"),
            "{error}"
        );
        let grow_only = unsealed(b"abc");
        rustix::fs::fcntl_add_seals(&grow_only, SealFlags::GROW).unwrap();
        let error = refusal(grow_only, None);
        assert!(
            error.contains("not sealed against WRITE|SHRINK (seals: GROW)"),
            "{error}"
        );
        let (socket, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let error = refusal(socket.into(), None);
        assert!(error.contains("not a memfd"), "{error}");
    }

    #[test]
    fn refuses_a_size_other_than_announced() {
        let memory = SealedMemory::from_slice(b"four").unwrap();
        let error = refusal(copy(&memory), Some(5));
        assert!(
            error.contains("holds 4 bytes but 5 were announced"),
            "{error}"
        );
        let received = SealedMemory::from_received(copy(&memory), Some(4)).unwrap();
        assert_eq!(received.as_slice(), b"four");
    }

    /// `cargo test --release -p kt-transport --lib timing_100_mib -- --ignored --nocapture`
    #[test]
    #[ignore = "a timing, not a test"]
    fn timing_100_mib() {
        let source: Vec<u8> = (0..100 << 20).map(|i: usize| (i % 251) as u8).collect();
        let start = std::time::Instant::now();
        let memory = SealedMemory::from_slice(&source).unwrap();
        let created = start.elapsed();
        let received = SealedMemory::from_received(copy(&memory), None).unwrap();
        let mapped = start.elapsed() - created;
        assert!(received.as_slice() == source);
        let first = start.elapsed() - created - mapped;
        assert!(received.as_slice() == source);
        let second = start.elapsed() - created - mapped - first;
        let populated = SealedMemory::from_received(copy(&memory), None).unwrap();
        populated.populate();
        assert!(populated.as_slice() == source);
        let third = start.elapsed() - created - mapped - first - second;
        println!(
            "100 MiB: create+seal {created:?}; from_received {mapped:?}; compare {first:?}, \
             again {second:?}; from_received+populate+compare {third:?}"
        );
    }
}
