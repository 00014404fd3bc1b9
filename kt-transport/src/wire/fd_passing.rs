//! File descriptors between processes of one user on one machine, over an abstract
//! Unix `SOCK_SEQPACKET` socket (`SCM_RIGHTS`), on tokio.
//!
//! This is how a [`SealedMemory`](super::sealed_memory::SealedMemory) reaches another
//! process: the value's memfd travels as ancillary data beside a small message.
//! `SOCK_SEQPACKET` keeps message boundaries, so one message is one request or one
//! reply together with its descriptors, and never half of one.
//!
//! - **Abstract names.** The listener binds a name in Linux's abstract namespace: no
//!   file to clean up, gone with the process. But any process of the network namespace
//!   (in Kubernetes: the pod, whatever its containers' users) can reach it, or bind the
//!   name first. So both ends check the peer's uid (`SO_PEERCRED`):
//!   [`FdListener::accept`] skips peers of another user, and [`FdConnection::connect`]
//!   refuses a listener of another user.
//! - **Truncation is an error.** A message longer than the receive buffer, or with more
//!   descriptors than fit the control buffer, loses its tail for good (`MSG_TRUNC`,
//!   `MSG_CTRUNC`); [`FdConnection::recv`] then fails, and closes whatever descriptors
//!   did arrive, instead of handing over part of a message.
//! - **Close-on-exec.** Received descriptors get `FD_CLOEXEC` atomically
//!   (`MSG_CMSG_CLOEXEC`), so a worker process spawned meanwhile inherits none.
//!
//! Why hand-rolled on rustix and not the `tokio-seqpacket` crate (0.9.1, which builds
//! and does all of this): rustix is already here for the memfd, and its `sendmsg`,
//! `recvmsg` and control-message buffers are safe functions, so the only `unsafe` here
//! is registering a socket with tokio (`AsyncFd::register`, unsafe since tokio 1.54),
//! for about the lines that adapting the crate would take. The crate adds two
//! dependencies (it and `filedesc`) with their own `libc` `unsafe`; its receive path
//! reads `cmsghdr`s from a caller's buffer that it does not align, its send path makes
//! a slice reaching past the reserved control space, it registers with the `AsyncFd`
//! constructor tokio 1.54 deprecated as unsound, and abstract names go through it as
//! `Path`s starting with a NUL byte.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The most descriptors one message may carry: the kernel's `SCM_MAX_FD`.
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Control-buffer space for [`MAX_FDS_PER_MESSAGE`] descriptors.
const CONTROL_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE));

/// How many connections may wait for [`FdListener::accept`].
const BACKLOG: i32 = 128;

/// Flags of every socket here: non-blocking for tokio, and kept from spawned processes.
const SOCKET_FLAGS: SocketFlags = SocketFlags::NONBLOCK.union(SocketFlags::CLOEXEC);

/// A listening `SOCK_SEQPACKET` socket on an abstract Unix name.
#[derive(Debug)]
pub struct FdListener {
    io: AsyncFd<OwnedFd>,
    name: String,
}

impl FdListener {
    /// Binds the abstract name `name` (written `@name` by tools such as `ss`).
    ///
    /// Fails with `AddrInUse` when a process of this network namespace holds it. Must be
    /// called within a tokio runtime.
    pub fn bind(name: &str) -> io::Result<Self> {
        let socket = seqpacket_socket()?;
        let bound = rustix::net::bind(&socket, &abstract_address(name)?);
        bound.map_err(context(format!("could not bind abstract socket @{name}")))?;
        rustix::net::listen(&socket, BACKLOG)?;
        let (io, name) = (register(socket)?, name.to_owned());
        Ok(Self { io, name })
    }

    /// Binds a fresh abstract name of this process: `{prefix}-{pid}-{64 random bits}`.
    /// Must be called within a tokio runtime.
    pub fn bind_unique(prefix: &str) -> io::Result<Self> {
        let mut random = [0u8; 8];
        super::tls::random_bytes(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let pid = std::process::id();
        Self::bind(&format!(
            "{prefix}-{pid}-{:016x}",
            u64::from_le_bytes(random)
        ))
    }

    /// The abstract name this listener is bound to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for the next connection from a process of this user.
    ///
    /// Connections from other users are closed and logged, never returned: the abstract
    /// name is reachable by every process of the network namespace.
    pub async fn accept(&self) -> io::Result<FdConnection> {
        loop {
            let accept = |listener: &OwnedFd| Ok(rustix::net::accept_with(listener, SOCKET_FLAGS)?);
            let socket = self.io.async_io(Interest::READABLE, accept).await?;
            let connection = FdConnection {
                io: register(socket)?,
            };
            let peer_uid = connection.peer_uid();
            if peer_uid.as_ref().is_ok_and(|uid| *uid == own_uid()) {
                return Ok(connection);
            }
            let socket = &self.name;
            tracing::warn!(
                socket,
                ?peer_uid,
                "refused a connection from another user's process"
            );
        }
    }
}

/// A connected `SOCK_SEQPACKET` socket: whole messages, each with up to
/// [`MAX_FDS_PER_MESSAGE`] descriptors.
#[derive(Debug)]
pub struct FdConnection {
    io: AsyncFd<OwnedFd>,
}

impl FdConnection {
    /// Connects to the listener on the abstract name `name`, refusing one that runs as
    /// another user. Must be called within a tokio runtime.
    ///
    /// Does not wait: a Unix connect completes at once or fails (`ConnectionRefused`:
    /// nobody listens; `WouldBlock`: the listener's backlog is full).
    pub fn connect(name: &str) -> io::Result<Self> {
        let socket = seqpacket_socket()?;
        let connected = rustix::net::connect(&socket, &abstract_address(name)?);
        connected.map_err(context(format!(
            "could not connect to abstract socket @{name}"
        )))?;
        let connection = Self {
            io: register(socket)?,
        };
        let (uid, own) = (connection.peer_uid()?, own_uid());
        if uid != own {
            let message = format!(
                "the listener on abstract socket @{name} runs as uid {uid}, not as this \
                 process's uid {own}: another user holds the name; refusing it"
            );
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, message));
        }
        Ok(connection)
    }

    /// A connected pair, e.g. for a parent and the child it spawns. Must be called
    /// within a tokio runtime.
    pub fn pair() -> io::Result<(Self, Self)> {
        let (family, kind) = (AddressFamily::UNIX, SocketType::SEQPACKET);
        let (a, b) = rustix::net::socketpair(family, kind, SOCKET_FLAGS, None)?;
        Ok((Self { io: register(a)? }, Self { io: register(b)? }))
    }

    /// Sends `data` and `fds` as one message.
    ///
    /// `data` must not be empty (an empty message would read as the end of the
    /// connection) and `fds` holds at most [`MAX_FDS_PER_MESSAGE`] descriptors. The
    /// receiver gets duplicates; the caller's descriptors stay open.
    pub async fn send(&self, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let (len, count) = (data.len(), fds.len());
        if len == 0 || count > MAX_FDS_PER_MESSAGE {
            let message = format!(
                "a message needs 1 or more bytes and at most {MAX_FDS_PER_MESSAGE} descriptors, \
                 not {len} bytes and {count} descriptors"
            );
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        let mut space = [MaybeUninit::uninit(); CONTROL_SPACE];
        let send = |socket: &OwnedFd| {
            let mut control = SendAncillaryBuffer::new(&mut space);
            // The space is sized for the most descriptors allowed, so this holds.
            if !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(io::Error::other("no control space for the descriptors"));
            }
            // NOSIGNAL: a closed peer is an EPIPE error, not a SIGPIPE that kills us.
            let data = [IoSlice::new(data)];
            Ok(rustix::net::sendmsg(
                socket,
                &data,
                &mut control,
                SendFlags::NOSIGNAL,
            )?)
        };
        let sent = self.io.async_io(Interest::WRITABLE, send).await?;
        // A seqpacket send is all or nothing (EMSGSIZE); this only guards that.
        if sent != len {
            return Err(io::Error::other(format!(
                "sent {sent} of a {len}-byte message"
            )));
        }
        Ok(())
    }

    /// Receives one message into `buf`, with its descriptors.
    ///
    /// `(0, [])` means the peer closed the connection. A message longer than `buf` is an
    /// `InvalidData` error (size `buf` for the largest message of the protocol).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
        self.recv_with_room(buf, MAX_FDS_PER_MESSAGE).await
    }

    /// [`recv`](Self::recv) with control space for about `fd_room` descriptors (the
    /// kernel fills whatever whole descriptors fit the space).
    async fn recv_with_room(
        &self,
        buf: &mut [u8],
        room: usize,
    ) -> io::Result<(usize, Vec<OwnedFd>)> {
        let mut space = [MaybeUninit::uninit(); CONTROL_SPACE];
        let space = &mut space[..rustix::cmsg_space!(ScmRights(room.min(MAX_FDS_PER_MESSAGE)))];
        let buf_len = buf.len();
        let recv = |socket: &OwnedFd| {
            let mut control = RecvAncillaryBuffer::new(space);
            // TRUNC: report a message's real length even when it did not fit.
            let flags = RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC;
            let message =
                rustix::net::recvmsg(socket, &mut [IoSliceMut::new(buf)], &mut control, flags)?;
            // Taken even from a truncated message, so that dropping them closes them.
            let fds = control.drain().filter_map(|message| match message {
                RecvAncillaryMessage::ScmRights(fds) => Some(fds),
                _ => None,
            });
            Ok((message, fds.flatten().collect::<Vec<OwnedFd>>()))
        };
        let (message, fds) = self.io.async_io(Interest::READABLE, recv).await?;
        let truncated = if message.flags.contains(ReturnFlags::TRUNC) {
            format!(
                "a {}-byte message was truncated to the {buf_len}-byte receive buffer",
                message.bytes
            )
        } else if message.flags.contains(ReturnFlags::CTRUNC) {
            let arrived = fds.len();
            format!(
                "a message's control data was truncated: it carried more than the {arrived} descriptors that arrived"
            )
        } else {
            return Ok((message.bytes, fds));
        };
        Err(io::Error::new(io::ErrorKind::InvalidData, truncated))
    }

    /// The uid the peer ran as when it connected, listened or made the pair.
    pub fn peer_uid(&self) -> io::Result<u32> {
        let credentials = rustix::net::sockopt::socket_peercred(self.io.get_ref())?;
        Ok(credentials.uid.as_raw())
    }
}

impl AsFd for FdConnection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.get_ref().as_fd()
    }
}

/// Whether the peer of `connection` runs as this process's (effective) user.
pub fn same_user(connection: &FdConnection) -> io::Result<bool> {
    Ok(connection.peer_uid()? == own_uid())
}

/// `SO_PEERCRED` reports the peer's effective uid, so compare with ours.
fn own_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Hands `socket` to tokio's reactor (which needs a runtime).
fn register(socket: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: tokio needs the descriptor to stay open, and the same, while registered.
    // The `OwnedFd` moves into the `AsyncFd`, which closes it only after deregistering
    // it, and this module never takes it out or swaps it (no `get_mut`, `into_inner`).
    unsafe { AsyncFd::register(socket) }.map_err(|error| error.into_parts().1)
}

fn seqpacket_socket() -> io::Result<OwnedFd> {
    let (family, kind) = (AddressFamily::UNIX, SocketType::SEQPACKET);
    Ok(rustix::net::socket_with(family, kind, SOCKET_FLAGS, None)?)
}

fn abstract_address(name: &str) -> io::Result<SocketAddrUnix> {
    SocketAddrUnix::new_abstract_name(name.as_bytes()).map_err(context(format!(
        "abstract socket name @{name} is too long (107 bytes at most)"
    )))
}

/// The error for a failed system call: `what` went wrong, then the errno, whose kind
/// (`AddrInUse`, `ConnectionRefused`, ...) it keeps.
fn context(what: String) -> impl FnOnce(Errno) -> io::Error {
    move |errno| {
        let error = io::Error::from(errno);
        io::Error::new(error.kind(), format!("{what}: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rustix::fs::{MemfdFlags, SealFlags};

    use super::*;
    use crate::wire::sealed_memory::SealedMemory;

    fn unique_name() -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("kt-test-fd-passing-{}-{n}", std::process::id())
    }

    async fn connected() -> (FdConnection, FdConnection) {
        let listener = FdListener::bind(&unique_name()).unwrap();
        let client = FdConnection::connect(listener.name()).unwrap();
        (listener.accept().await.unwrap(), client)
    }

    #[track_caller]
    fn assert_error<T: std::fmt::Debug>(result: io::Result<T>, kind: io::ErrorKind, text: &str) {
        let error = result.unwrap_err();
        assert!(
            error.kind() == kind && error.to_string().contains(text),
            "{error:?}"
        );
    }

    fn refusal(fd: OwnedFd) -> String {
        SealedMemory::from_received(fd, None)
            .unwrap_err()
            .to_string()
    }

    #[tokio::test]
    async fn a_sent_memfd_maps_to_the_same_bytes() {
        let (server, client) = connected().await;
        let memory = SealedMemory::from_slice(b"the value").unwrap();
        client.send(b"put key", &[memory.fd()]).await.unwrap();

        let mut buf = [0; 64];
        let (len, mut fds) = server.recv(&mut buf).await.unwrap();
        assert_eq!((&buf[..len], fds.len()), (&b"put key"[..], 1));
        let fd = fds.remove(0);
        let flags = rustix::io::fcntl_getfd(&fd).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        let received = Arc::new(SealedMemory::from_received(fd, Some(9)).unwrap());
        assert_eq!(&received.into_bytes()[..], b"the value");
    }

    #[tokio::test]
    async fn a_reader_refuses_unsealed_memfds() {
        let (a, b) = FdConnection::pair().unwrap();
        let unsealed = rustix::fs::memfd_create("test", MemfdFlags::ALLOW_SEALING).unwrap();
        rustix::fs::ftruncate(&unsealed, 4).unwrap();
        let grow_only = rustix::fs::memfd_create("test", MemfdFlags::ALLOW_SEALING).unwrap();
        rustix::fs::fcntl_add_seals(&grow_only, SealFlags::GROW).unwrap();
        let fds = [unsealed.as_fd(), grow_only.as_fd()];
        a.send(b"two", &fds).await.unwrap();

        let (_, mut fds) = b.recv(&mut [0; 8]).await.unwrap();
        let grow_only = refusal(fds.remove(1));
        assert!(
            grow_only.contains("not sealed against WRITE|SHRINK (seals: GROW)"),
            "{grow_only}"
        );
        let unsealed = refusal(fds.remove(0));
        let missing = "not sealed against WRITE|GROW|SHRINK (seals: none)";
        assert!(unsealed.contains(missing), "{unsealed}");
    }

    #[tokio::test]
    async fn truncated_messages_are_errors() {
        let (a, b) = FdConnection::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        a.send(b"ten", &[file.as_fd(); 10]).await.unwrap();
        let received = b.recv_with_room(&mut [0; 8], 1).await;
        assert_error(
            received,
            io::ErrorKind::InvalidData,
            "control data was truncated",
        );

        a.send(&[1; 100], &[]).await.unwrap();
        let message = "a 100-byte message was truncated to the 10-byte receive buffer";
        assert_error(
            b.recv(&mut [0; 10]).await,
            io::ErrorKind::InvalidData,
            message,
        );
    }

    #[tokio::test]
    async fn at_most_253_descriptors_per_message() {
        let (a, b) = FdConnection::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        let fds = [file.as_fd(); MAX_FDS_PER_MESSAGE + 1];
        a.send(b"max", &fds[1..]).await.unwrap();
        let (_, received) = b.recv(&mut [0; 8]).await.unwrap();
        assert_eq!(received.len(), MAX_FDS_PER_MESSAGE);
        let invalid = io::ErrorKind::InvalidInput;
        assert_error(
            a.send(b"too many", &fds).await,
            invalid,
            "at most 253 descriptors",
        );
        assert_error(a.send(b"", &[]).await, invalid, "not 0 bytes");
    }

    #[tokio::test]
    async fn both_ends_see_the_same_user_and_a_close() {
        let (server, client) = connected().await;
        assert!(same_user(&server).unwrap() && same_user(&client).unwrap());
        assert_eq!(
            server.peer_uid().unwrap(),
            rustix::process::geteuid().as_raw()
        );
        drop(client);
        let (len, fds) = server.recv(&mut [0; 8]).await.unwrap();
        assert!(len == 0 && fds.is_empty());
    }

    #[tokio::test]
    async fn names_are_exclusive_and_connects_fail_clearly() {
        let listener = FdListener::bind(&unique_name()).unwrap();
        let taken = FdListener::bind(listener.name());
        assert_error(
            taken,
            io::ErrorKind::AddrInUse,
            "could not bind abstract socket @kt-test",
        );
        let refused = FdConnection::connect(&unique_name());
        let message = "could not connect to abstract socket @kt-test-fd-passing-";
        assert_error(refused, io::ErrorKind::ConnectionRefused, message);
    }
}
