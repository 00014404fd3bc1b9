//! The in-process home of one actor: its bounded mailbox, its status, and the signals
//! that stop it.
//!
//! The mailbox is an [`OrderedSender`]: a call made while it is full is parked in order
//! and moved in as room frees up, so sending never blocks the calling thread, never drops
//! a call and never lets a later call overtake an earlier one. The caller's `Call` future
//! resolves only after the actor has run the call, so a caller that awaits its calls is
//! slowed to the actor's pace.

use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;

use crate::actor::{Actor, Message};
use crate::error::{ActorLabel, DeathCause, Error};
use crate::fate::Fate;
use crate::inbound::{CallSource, Inbound};
use crate::ordered::{Accepted, OrderedSender, Undeliverable};
use crate::reply::EncodedReply;
use crate::route::{EncodedRoute, Release};

/// One actor's mailbox and status, shared by its handles and its run loop.
pub(crate) struct LocalCell<A: Actor> {
    pub(crate) label: ActorLabel,
    mailbox: Arc<OrderedSender<A::Message>>,
    /// Set once, before the actor stops taking calls; read by every failing call.
    /// Why the actor died (recorded first), and when its task ended (finished).
    fate: Fate,
    /// Wakes the run loop when the last owning handle drops.
    pub(crate) release: Notify,
    abort: OnceLock<AbortHandle>,
    /// The call streams transports lent the run loop to read while it is idle.
    pub(crate) inbound: Inbound,
}

impl<A: Actor> LocalCell<A> {
    pub(crate) fn new(
        label: ActorLabel,
        capacity: usize,
        runtime: tokio::runtime::Handle,
    ) -> (Arc<Self>, mpsc::Receiver<A::Message>) {
        let mut receiver = None;
        let cell = Arc::new_cyclic(|me: &Weak<LocalCell<A>>| {
            let me = me.clone();
            let overloaded_label = label.clone();
            let undeliverable = Undeliverable {
                overloaded: Box::new(move |limit| Error::Overloaded {
                    actor: overloaded_label.clone(),
                    limit,
                }),
                bounce: |msg: A::Message, error| msg.reject(error),
                reason: Box::new(move || match me.upgrade() {
                    Some(cell) => cell.gone(),
                    None => Error::ActorDied {
                        actor: unknown_label(),
                        cause: DeathCause::RuntimeShutdown,
                    },
                }),
            };
            let (mailbox, rx) = OrderedSender::new(capacity, runtime, undeliverable);
            receiver = Some(rx);
            LocalCell {
                label,
                mailbox,
                fate: Fate::new(),
                release: Notify::new(),
                abort: OnceLock::new(),
                inbound: Inbound::default(),
            }
        });
        let rx = receiver.unwrap_or_else(|| unreachable!("new_cyclic ran the closure"));
        (cell, rx)
    }

    /// Puts a message in the mailbox now, or parks it in order if the mailbox is full.
    /// A message for an actor that is gone is answered with the reason at once.
    pub(crate) fn enqueue(&self, msg: A::Message) -> Accepted {
        if self.fate.is_dead() {
            msg.reject(self.gone());
            return Accepted::Now;
        }
        self.mailbox.send(msg)
    }

    /// Records why the actor is gone; the first cause recorded wins.
    pub(crate) fn set_death(&self, cause: DeathCause) {
        self.fate.record(cause);
    }

    /// Marks the actor's task as ended (its cause of death is recorded by then).
    pub(crate) fn set_finished(&self) {
        self.fate.finish(DeathCause::RuntimeShutdown);
    }

    /// The error every call to this actor gets once it is gone.
    pub(crate) fn gone(&self) -> Error {
        Error::ActorDied {
            actor: self.label.clone(),
            cause: self
                .fate
                .cause()
                .cloned()
                .unwrap_or(DeathCause::RuntimeShutdown),
        }
    }

    pub(crate) fn set_abort_handle(&self, handle: AbortHandle) {
        let _ = self.abort.set(handle);
    }

    /// Stops the actor now: the method running is cancelled at its next await point,
    /// queued calls fail with `ActorDied { cause: Killed }`, `on_stop` does not run.
    pub(crate) fn kill(&self) {
        if !self.fate.record(DeathCause::Killed) {
            return;
        }
        if let Some(abort) = self.abort.get() {
            abort.abort();
        }
    }

    pub(crate) fn is_alive(&self) -> bool {
        !self.fate.is_dead()
    }
}

/// The label of an actor whose cell is already gone (only seen in shutdown races).
fn unknown_label() -> ActorLabel {
    ActorLabel {
        id: 0,
        type_name: "unknown".into(),
        name: None,
    }
}

impl<A: Actor> Release for LocalCell<A> {
    fn release(&self) {
        // A stored permit: the run loop sees it even if it is busy right now.
        self.release.notify_one();
    }
}

impl<A: Actor> EncodedRoute for LocalCell<A> {
    fn label(&self) -> &ActorLabel {
        &self.label
    }

    fn send_encoded(&self, method: &str, payload: Bytes, reply: EncodedReply) -> Accepted {
        self.send_args(method, &payload, reply)
    }

    fn send_args(&self, method: &str, args: &[u8], reply: EncodedReply) -> Accepted {
        match A::decode_message(method, args, reply) {
            Ok(msg) => self.enqueue(msg),
            Err((error, reply)) => {
                reply.fail(error);
                Accepted::Now
            }
        }
    }

    fn gone(&self) -> Error {
        LocalCell::gone(self)
    }

    fn kill(&self) {
        LocalCell::kill(self)
    }

    fn is_alive(&self) -> bool {
        LocalCell::is_alive(self)
    }

    fn stopped(&self) -> BoxFuture<'static, DeathCause> {
        self.fate.stopped()
    }

    fn lend(&self, source: Arc<dyn CallSource>) -> bool {
        self.is_alive() && self.inbound.lend(source)
    }
}
