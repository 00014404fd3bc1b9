//! The actor model: the [`Actor`] trait, the messages it handles, and its [`Context`].
//!
//! Users do not implement [`Actor`] by hand: `#[kt::actor]` on a struct and its impl
//! block generates the implementation (see the macro's docs for the expansion). The
//! trait is nonetheless written to be implementable by hand — kt-core's own tests do
//! so — and every backend (in-process, local process, Kubernetes) drives an actor
//! only through it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::actor_ref::{ActorRef, RawRef};
use crate::cell::LocalCell;
use crate::error::{ActorLabel, DeathCause, Error};
use crate::group::GroupMembers;
use crate::options::GroupMember;
use crate::reply::EncodedReply;
use crate::route::OwnerGuard;

/// An actor type: its state is the struct, its messages are its public methods.
///
/// `Sync` is required because `&self` methods may run concurrently (up to the spawn
/// option `max_concurrency`), each borrowing the state.
pub trait Actor: Sized + Send + Sync + 'static {
    /// The stable name the type is registered under, `module::path::Type`. Workers build
    /// actors from this name, so it must be the same in every build of the binary.
    const TYPE_NAME: &'static str;

    /// Every public method, in declaration order: what a transport needs to know about
    /// a method it only has the name of (for example, whether a lost call may be re-sent).
    const METHODS: &'static [MethodInfo];

    /// The constructor's arguments, as one tuple. They travel encoded to remote workers
    /// and are kept encoded to rebuild the actor on restart.
    type Args: Serialize + DeserializeOwned + Send + 'static;

    /// The message enum: one variant per public method, each with its reply slot.
    type Message: Message;

    /// The generated type holding the handle methods; `ActorRef<Self>` dereferences to it.
    type Handle: Handle<Self>;

    /// The generated type holding the broadcast methods of a group (`group.all()`).
    type GroupHandle: GroupHandle<Self>;

    /// Builds the actor from its constructor's arguments. An `Err` fails the spawn (or
    /// the restart) with [`Error::StartFailed`].
    fn construct(args: Self::Args) -> impl Future<Output = Result<Self, String>> + Send;

    /// Runs once after construction (and after each restart), before any call.
    /// An `Err` fails the spawn with [`Error::StartFailed`].
    fn on_start(&mut self, ctx: &Context<Self>) -> impl Future<Output = Result<(), String>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs once when the actor stops gracefully (its last owning handle dropped, or
    /// [`Context::stop`]). It does not run after `kill()` or a panic that ends the actor.
    fn on_stop(
        &mut self,
        ctx: &Context<Self>,
        cause: &DeathCause,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, cause);
        async {}
    }

    /// Runs one message with exclusive access to the state.
    fn handle(
        &mut self,
        msg: Self::Message,
        ctx: &Context<Self>,
    ) -> impl Future<Output = Outcome> + Send;

    /// Runs one message of a `&self` method ([`MethodInfo::shared`]); several may overlap.
    /// Messages of `&mut self` methods never reach this function; if one did, it is
    /// answered with an error rather than run.
    fn handle_shared(
        &self,
        msg: Self::Message,
        ctx: &Context<Self>,
    ) -> impl Future<Output = Outcome> + Send;

    /// Rebuilds a message from its method name and encoded arguments, with a reply slot
    /// that encodes the answer. On failure the reply slot is handed back so that the
    /// caller can be told why.
    #[allow(clippy::result_large_err)]
    fn decode_message(
        method: &str,
        payload: &[u8],
        reply: EncodedReply,
    ) -> Result<Self::Message, (Error, EncodedReply)>;
}

/// What every message enum can tell the runtime about itself.
pub trait Message: Send + 'static {
    /// The method this message calls.
    fn info(&self) -> &'static MethodInfo;

    /// Answers the caller with `error` without running the method (the actor is gone,
    /// or restarted before the call ran).
    fn reject(self, error: Error);
}

/// Static facts about one actor method, used by the runtime to schedule it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    /// The method's name, as it appears on the wire.
    pub name: &'static str,
    /// True for `&self` methods, which may run concurrently with each other.
    pub shared: bool,
    /// True for methods marked `#[kt(idempotent)]`: safe to run again, so a call waiting
    /// when the actor restarts runs on the next incarnation instead of failing.
    pub idempotent: bool,
}

/// The result of running one message, as the runtime needs it.
#[derive(Debug)]
#[must_use]
pub enum Outcome {
    /// The method returned (its value or its own `Err` went to the caller).
    Done,
    /// The method panicked. Its caller's [`Error::ActorPanicked`] is held in `answer`
    /// until the supervisor has dealt with the calls waiting behind it (rule S1), so a
    /// call made after seeing the panic always reaches the next incarnation.
    Panicked {
        /// The method that panicked.
        method: &'static str,
        /// The panic message.
        message: String,
        /// Sends the panicked caller its error.
        answer: PanicAnswer,
    },
}

impl Outcome {
    /// True when the method returned normally.
    pub fn is_done(&self) -> bool {
        matches!(self, Outcome::Done)
    }

    /// Sends a held-back panic answer now (when there is nothing else to settle first).
    pub fn settle(self) {
        if let Outcome::Panicked { answer, .. } = self {
            answer.send();
        }
    }
}

/// The held-back answer of a call whose method panicked.
pub struct PanicAnswer(Box<dyn FnOnce() + Send>);

impl PanicAnswer {
    /// Wraps the sending of the answer.
    pub fn new(send: impl FnOnce() + Send + 'static) -> Self {
        PanicAnswer(Box::new(send))
    }

    /// Sends the answer.
    pub fn send(self) {
        (self.0)()
    }
}

impl std::fmt::Debug for PanicAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PanicAnswer")
    }
}

/// The generated handle-methods type of an actor; `ActorRef<A>` dereferences to it.
pub trait Handle<A: Actor>: Send + Sync + 'static {
    /// Wraps a raw reference.
    fn from_raw(raw: RawRef<A>) -> Self;
    /// The raw reference inside.
    fn raw(&self) -> &RawRef<A>;
}

/// The generated broadcast-methods type of a group of actors (`ActorGroup::all`).
pub trait GroupHandle<A: Actor>: Send + Sync + 'static {
    /// Wraps the members.
    fn from_members(members: GroupMembers<A>) -> Self;
    /// The members inside.
    fn members(&self) -> &GroupMembers<A>;
}

/// What an actor knows about itself while it runs: passed to hooks, and to methods that
/// declare a `ctx: &Context<Self>` parameter.
pub struct Context<A: Actor> {
    pub(crate) label: ActorLabel,
    pub(crate) cell: Arc<LocalCell<A>>,
    pub(crate) owner: Option<Weak<OwnerGuard>>,
    pub(crate) group: Option<GroupMember>,
    pub(crate) stop_requested: AtomicBool,
    pub(crate) restarts: AtomicU32,
}

impl<A: Actor> Context<A> {
    /// The actor's process-unique id.
    pub fn id(&self) -> u64 {
        self.label.id
    }

    /// The name given at spawn, if any.
    pub fn name(&self) -> Option<&str> {
        self.label.name.as_deref()
    }

    /// The actor's id, type and name, as errors show them.
    pub fn label(&self) -> &ActorLabel {
        &self.label
    }

    /// A handle to this actor, to pass to other actors.
    ///
    /// For an owned actor the handle is an owning one: storing it inside the actor's own
    /// state keeps the actor alive until it is killed or stops itself.
    pub fn actor_ref(&self) -> ActorRef<A> {
        let owner = self.owner.as_ref().and_then(Weak::upgrade);
        ActorRef::from_raw(RawRef::local(self.cell.clone(), owner))
    }

    /// Asks the actor to stop after the current message. Calls still queued fail with
    /// [`Error::ActorDied`] (cause [`DeathCause::Stopped`]); `on_stop` runs.
    pub fn stop(&self) {
        self.stop_requested.store(true, Ordering::Release);
    }

    /// This actor's rank and its group's size, when it was spawned as a group member.
    pub fn group(&self) -> Option<&GroupMember> {
        self.group.as_ref()
    }

    /// How many times this actor has been restarted after a panic.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }
}
