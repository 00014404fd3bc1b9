//! The same-host path: sealed memfds handed over a Unix socket.
//!
//! Every holding process listens on an abstract Unix socket (no file to clean up; gone
//! with the process). A getter on the same host asks for one version of one key and gets
//! back the value's size and its memfd; it checks the seals itself and maps the pages
//! read-only, so a value of any size arrives in a fraction of a millisecond and is never
//! copied. Any process of the network namespace can connect to an abstract socket, so
//! the holder serves only peers of its own user.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use kt_core::Error;
use kt_transport::wire::fd_passing::{FdConnection, FdListener, same_user};
use kt_transport::wire::sealed_memory::SealedMemory;
use serde::{Deserialize, Serialize};

use crate::holdings::Holdings;
use crate::version::Version;

/// The largest request or reply message (a key and an error's text fit easily).
const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Serialize, Deserialize)]
struct Request {
    key: String,
    version: u64,
}

#[derive(Serialize, Deserialize)]
struct Reply {
    /// The value's size (its descriptor comes with the message), or why not.
    result: Result<u64, Error>,
    /// The descriptor is a spilled value's file, not a sealed memfd.
    #[serde(default)]
    spilled: bool,
}

/// Binds this process's socket and serves it on `runtime`; returns its name.
pub(crate) fn serve(
    holdings: Arc<Holdings>,
    runtime: &tokio::runtime::Handle,
) -> Result<String, Error> {
    let listener = {
        let _in_runtime = runtime.enter();
        FdListener::bind_unique("kt-store").map_err(|e| Error::Unavailable {
            target: "this process's store socket".into(),
            message: format!("cannot listen on an abstract Unix socket: {e}"),
        })?
    };
    let name = listener.name().to_string();
    runtime.spawn(async move {
        loop {
            match listener.accept().await {
                Ok(connection) => {
                    let holdings = holdings.clone();
                    tokio::spawn(async move { serve_connection(connection, &holdings).await });
                }
                Err(error) => tracing::debug!("store socket: accept failed: {error}"),
            }
        }
    });
    Ok(name)
}

async fn serve_connection(connection: FdConnection, holdings: &Holdings) {
    match same_user(&connection) {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            return tracing::warn!("store socket: refused a peer of another user");
        }
    }
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let request = match connection.recv(&mut buf).await {
            Ok((0, _)) | Err(_) => return,
            Ok((len, _)) => kt_core::codec::decode::<Request>(&buf[..len], "a store request"),
        };
        let key = request.as_ref().map(|request| request.key.clone()).ok();
        let (reply, passed) = match request {
            Ok(request) => answer(holdings, request).await,
            Err(error) => (reply(Err(error), false), None),
        };
        let Ok(encoded) = kt_core::codec::encode(&reply, "a store reply") else {
            return;
        };
        let fds: Vec<_> = passed.iter().map(|fd| fd.as_fd()).collect();
        if connection.send(&encoded, &fds).await.is_err() {
            return;
        }
        if let (Some(_), Some(key), Ok(size)) = (&passed, &key, &reply.result) {
            crate::traffic::count(key, |t| t.passed_on_this_host += size);
        }
    }
}

/// The memfd of a held version, or the file of a spilled one.
async fn answer(holdings: &Holdings, request: Request) -> (Reply, Option<OwnedFd>) {
    let not_held = || Error::VersionGone {
        key: request.key.clone(),
        version: request.version,
        kept: "none in this process".into(),
    };
    let Some(held) = holdings.find(&request.key, Version(request.version)).await else {
        return (reply(Err(not_held()), false), None);
    };
    let passed = match (&held.spilled, &held.memory) {
        (Some(file), _) => file.as_fd().try_clone_to_owned().map(|fd| (fd, true)),
        (None, Some(memory)) => memory.fd().try_clone_to_owned().map(|fd| (fd, false)),
        (None, None) => return (reply(Err(not_held()), false), None),
    };
    match passed {
        Ok((fd, spilled)) => (reply(Ok(held.info.size), spilled), Some(fd)),
        Err(error) => {
            let error = Error::Unavailable {
                target: "a store holder".into(),
                message: format!("cannot pass the value's descriptor: {error}"),
            };
            (reply(Err(error), false), None)
        }
    }
}

fn reply(result: Result<u64, Error>, spilled: bool) -> Reply {
    Reply { result, spilled }
}

/// What a holder on this host passed.
pub(crate) enum Passed {
    /// Its sealed memfd, mapped here.
    Memfd(Arc<SealedMemory>),
    /// The unlinked file it spilled the value to, to be copied (a file cannot be sealed,
    /// so it is never mapped across processes).
    File(OwnedFd),
}

/// Why a same-host fetch failed: the holder is gone, or it answered without the value.
pub(crate) enum SameHostFailure {
    /// Nobody listens on its socket: the process is gone.
    Gone(Error),
    /// It answered, without the value.
    NotHeld(Error),
}

/// Fetches version `version` of `key` from the holder listening on `socket`.
pub(crate) async fn fetch(
    socket: &str,
    key: &str,
    version: Version,
    size: u64,
) -> Result<Passed, SameHostFailure> {
    let gone = |message: String| {
        SameHostFailure::Gone(Error::Unavailable {
            target: format!("the store holder on socket {socket}"),
            message,
        })
    };
    let connection = FdConnection::connect(socket).map_err(|e| gone(e.to_string()))?;
    let request = Request {
        key: key.to_string(),
        version: version.0,
    };
    let encoded =
        kt_core::codec::encode(&request, "a store request").map_err(SameHostFailure::NotHeld)?;
    connection
        .send(&encoded, &[])
        .await
        .map_err(|e| gone(e.to_string()))?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let (len, mut fds) = connection
        .recv(&mut buf)
        .await
        .map_err(|e| gone(e.to_string()))?;
    if len == 0 {
        return Err(gone("it closed the connection".into()));
    }
    let reply: Reply =
        kt_core::codec::decode(&buf[..len], "a store reply").map_err(SameHostFailure::NotHeld)?;
    let announced = reply.result.clone().map_err(SameHostFailure::NotHeld)?;
    if announced != size || fds.len() != 1 {
        return Err(SameHostFailure::NotHeld(Error::Protocol {
            message: format!(
                "the store holder on {socket} sent {} descriptors for {announced} bytes of \
                 '{key}' {version}, where one for {size} bytes was expected",
                fds.len()
            ),
        }));
    }
    let fd = fds.remove(0);
    if reply.spilled {
        return Ok(Passed::File(fd));
    }
    let memory = SealedMemory::from_received(fd, Some(size)).map_err(|error| {
        SameHostFailure::NotHeld(Error::Protocol {
            message: error.to_string(),
        })
    })?;
    Ok(Passed::Memfd(Arc::new(memory)))
}
