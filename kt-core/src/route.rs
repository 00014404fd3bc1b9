//! The encoded path to an actor: method name plus MessagePack arguments in, encoded
//! reply out: the `Result<T, Error>` as [`codec::with_encoded_reply`] encodes it.
//!
//! It is the one interface every non-typed caller uses: a remote worker serving a
//! driver, a handle spawned through the loopback placement, a group broadcast, and a
//! spawn by type name from the registry. Transports implement [`EncodedRoute`] for
//! actors that live elsewhere; kt-core implements it for actors in this process.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::codec;
use crate::error::DeathCause;
use crate::error::{ActorLabel, Error, Result};
use crate::inbound::CallSource;
use crate::ordered::Accepted;
use crate::reply::{EncodedReply, KeptReply};

/// Sends encoded calls to one actor, wherever it lives.
pub trait EncodedRoute: Send + Sync + 'static {
    /// Which actor this route reaches.
    fn label(&self) -> &ActorLabel;

    /// Sends one call now (before returning, rule E1); its answer goes to `reply`.
    /// A call that cannot be delivered is answered through `reply` with the reason.
    /// Returns whether the call is in the actor's mailbox yet (rule B1).
    fn send_encoded(&self, method: &str, payload: Bytes, reply: EncodedReply) -> Accepted;

    /// [`EncodedRoute::send_encoded`] with arguments that are only borrowed: a route that
    /// copies them anyway (into a stream's buffer) or only reads them (to decode them)
    /// overrides this, and a typed call's arguments then need no allocation of their own.
    fn send_args(&self, method: &str, args: &[u8], reply: EncodedReply) -> Accepted {
        self.send_encoded(method, Bytes::copy_from_slice(args), reply)
    }

    /// Sends one call (as [`EncodedRoute::send_args`]) whose reply its caller will
    /// collect. The default hands the reply to a channel; a route that keeps replies
    /// itself (a transport's window of pending calls) overrides this to return
    /// [`AwaitedReply::Kept`] and answers [`EncodedRoute::poll_kept`] and
    /// [`EncodedRoute::forget_kept`] for it: a call then needs no channel of its own.
    fn send_awaited(&self, method: &str, args: &[u8]) -> (Accepted, AwaitedReply) {
        let (reply, rx) = EncodedReply::channel();
        let accepted = self.send_args(method, args, reply);
        (accepted, AwaitedReply::Channel(rx))
    }

    /// Collects the reply of call `call` (an [`AwaitedReply::Kept`] this route
    /// returned): `Ready(Some)` once it came, `Ready(None)` if it never will (the actor
    /// is gone: [`EncodedRoute::gone`] says why), or `Pending`, having kept `cx`'s
    /// waker to wake when it comes.
    fn poll_kept(&self, call: u64, cx: &mut Context<'_>) -> Poll<Option<KeptReply>> {
        let _ = (call, cx);
        Poll::Ready(None)
    }

    /// The caller of call `call` (an [`AwaitedReply::Kept`]) stopped waiting: its reply,
    /// when it comes, is dropped.
    fn forget_kept(&self, call: u64) {
        let _ = call;
    }

    /// The error for calls whose answer was lost because the actor is gone.
    fn gone(&self) -> Error;

    /// Stops the actor now (see `ActorRef::kill`).
    fn kill(&self);

    /// False once the actor is known to be gone.
    fn is_alive(&self) -> bool;

    /// Resolves when the actor has stopped for good, with the reason.
    fn stopped(&self) -> BoxFuture<'static, DeathCause>;

    /// Lends the actor's task a transport's stream of calls, to read itself while it is
    /// idle (see [`CallSource`]): true if it took it. The default takes none; actors in
    /// this process that run one call at a time do.
    fn lend(&self, source: Arc<dyn CallSource>) -> bool {
        let _ = source;
        false
    }

    /// Where other processes reach this actor, for a route that already crosses
    /// processes; `None` for an actor in this process (the transport exports it).
    fn address(&self) -> Option<HandleAddress> {
        None
    }
}

/// Where the reply of a call sent with [`EncodedRoute::send_awaited`] will be.
#[derive(Debug)]
pub enum AwaitedReply {
    /// It arrives on this channel (closed unanswered if the actor is gone).
    Channel(oneshot::Receiver<Bytes>),
    /// The route keeps it, under this call id ([`EncodedRoute::poll_kept`]).
    Kept(u64),
    /// The call was refused before it was sent (boxed: this travels back on every call,
    /// and an error is rare and large).
    Refused(Box<Error>),
}

/// Where an actor can be reached from another process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleAddress {
    /// The serving node's socket address, `ip:port`.
    pub node: String,
    /// The actor's id, type and name.
    pub label: ActorLabel,
}

/// Something that must hear when its last owning handle is dropped.
pub trait Release: Send + Sync + 'static {
    /// Called once, when the last owning handle is dropped.
    fn release(&self);
}

/// Shared by all owning handles of one actor; dropping the last one releases the actor.
pub struct OwnerGuard {
    target: Arc<dyn Release>,
}

impl OwnerGuard {
    /// A guard that calls `target.release()` when it is dropped.
    pub fn new(target: Arc<dyn Release>) -> Self {
        OwnerGuard { target }
    }
}

impl Drop for OwnerGuard {
    fn drop(&mut self) {
        self.target.release();
    }
}

impl std::fmt::Debug for OwnerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnerGuard")
    }
}

/// A handle to an actor of a type known only by name: what a worker holds for the
/// actors it serves, and what [`crate::registry::spawn_by_name`] returns.
#[derive(Clone)]
pub struct ErasedActor {
    pub(crate) route: Arc<dyn EncodedRoute>,
    pub(crate) owner: Option<Arc<OwnerGuard>>,
}

impl std::fmt::Debug for ErasedActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErasedActor")
            .field("actor", self.route.label())
            .finish()
    }
}

impl ErasedActor {
    /// Wraps a route; `owner` is the guard that stops the actor when the last owning
    /// handle drops (`None` for a detached actor, or a non-owning handle).
    pub fn new(route: Arc<dyn EncodedRoute>, owner: Option<Arc<OwnerGuard>>) -> Self {
        ErasedActor { route, owner }
    }

    /// Which actor this is.
    pub fn label(&self) -> &ActorLabel {
        self.route.label()
    }

    /// The route, for transports that serve this actor.
    pub fn route(&self) -> &Arc<dyn EncodedRoute> {
        &self.route
    }

    /// Sends an encoded call and waits for its encoded reply ([`codec::decode_reply`]
    /// reads it).
    pub async fn call_encoded(&self, method: &str, payload: Bytes) -> Result<Bytes> {
        let (reply, rx) = EncodedReply::channel();
        let _ = self.route.send_encoded(method, payload, reply);
        rx.await.map_err(|_| self.route.gone())
    }

    /// Sends a call with typed arguments and decodes its typed reply.
    pub async fn call<Args, T>(&self, method: &str, args: &Args) -> Result<T>
    where
        Args: serde::Serialize,
        T: serde::de::DeserializeOwned,
    {
        let payload = codec::encode_bytes(args, format_args!("arguments of `{method}`"))?;
        let bytes = self.call_encoded(method, payload).await?;
        codec::decode_reply_of::<T>(&bytes, None, format_args!("the reply of `{method}`"))
    }

    /// Stops the actor now.
    pub fn kill(&self) {
        self.route.kill();
    }

    /// Resolves when the actor has stopped for good, with the reason.
    pub fn stopped(&self) -> BoxFuture<'static, DeathCause> {
        self.route.stopped()
    }

    /// The ownership share this handle holds, if any.
    pub fn owner(&self) -> Option<&Arc<OwnerGuard>> {
        self.owner.as_ref()
    }

    /// True when this handle keeps the actor alive.
    pub fn is_owning(&self) -> bool {
        self.owner.is_some()
    }

    /// The same handle without a share of ownership.
    pub fn without_ownership(&self) -> ErasedActor {
        ErasedActor {
            route: self.route.clone(),
            owner: None,
        }
    }
}
