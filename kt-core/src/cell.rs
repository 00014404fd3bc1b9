//! The in-process home of one actor: its bounded mailbox, its status, and the signals
//! that stop it.
//!
//! The mailbox is a bounded tokio channel. A call made while it is full is *parked*
//! in an ordered queue beside it and moved in by a flusher task as room frees up, so
//! that sending never blocks the calling thread, never drops a call, and never lets a
//! later call from the same caller overtake an earlier one (rule O1 in
//! [`crate::semantics`]). The caller's `Call` future resolves only after the actor has
//! run the call, so a caller that awaits its calls is slowed to the actor's pace.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::actor::{Actor, Message};
use crate::error::{ActorLabel, DeathCause, Error};
use crate::reply::EncodedReply;
use crate::route::EncodedRoute;

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

/// Calls parked while the mailbox was full, in call order, each with the signal that
/// tells its caller when it entered the mailbox.
struct Parked<M> {
    queue: VecDeque<(M, oneshot::Sender<()>)>,
    flusher_running: bool,
}

/// Whether a sent call is in the actor's mailbox yet.
#[derive(Debug)]
pub enum Accepted {
    /// The call is in the mailbox (or, for a remote actor, handed to the transport).
    Now,
    /// The mailbox was full: the call is parked in order; the receiver fires when it
    /// enters the mailbox, and fails if the actor died first.
    Later(oneshot::Receiver<()>),
}

/// One actor's mailbox and status, shared by its handles and its run loop.
pub(crate) struct LocalCell<A: Actor> {
    pub(crate) label: ActorLabel,
    me: Weak<LocalCell<A>>,
    tx: mpsc::Sender<A::Message>,
    /// True while calls are parked: later calls must park behind them to keep order.
    parking: AtomicBool,
    parked: Mutex<Parked<A::Message>>,
    /// Set once, before the actor stops taking calls; read by every failing call.
    death: OnceLock<DeathCause>,
    /// Wakes the run loop when the last owning handle drops.
    pub(crate) release: Notify,
    abort: OnceLock<AbortHandle>,
    runtime: tokio::runtime::Handle,
}

impl<A: Actor> LocalCell<A> {
    pub(crate) fn new(
        label: ActorLabel,
        capacity: usize,
        runtime: tokio::runtime::Handle,
    ) -> (Arc<Self>, mpsc::Receiver<A::Message>) {
        let (tx, rx) = mpsc::channel(capacity);
        let cell = Arc::new_cyclic(|me| LocalCell {
            label,
            me: me.clone(),
            tx,
            parking: AtomicBool::new(false),
            parked: Mutex::new(Parked {
                queue: VecDeque::new(),
                flusher_running: false,
            }),
            death: OnceLock::new(),
            release: Notify::new(),
            abort: OnceLock::new(),
            runtime,
        });
        (cell, rx)
    }

    /// Puts a message in the mailbox now, or parks it in order if the mailbox is full.
    /// A message for an actor that is gone is answered with the reason at once.
    pub(crate) fn enqueue(&self, msg: A::Message) -> Accepted {
        if self.death.get().is_some() {
            msg.reject(self.gone());
            return Accepted::Now;
        }
        if self.parking.load(Ordering::Acquire) {
            return self.park(msg);
        }
        match self.tx.try_send(msg) {
            Ok(()) => Accepted::Now,
            Err(mpsc::error::TrySendError::Full(msg)) => self.park(msg),
            Err(mpsc::error::TrySendError::Closed(msg)) => {
                msg.reject(self.gone());
                Accepted::Now
            }
        }
    }

    fn park(&self, msg: A::Message) -> Accepted {
        let (accepted_tx, accepted_rx) = oneshot::channel();
        let mut parked = self
            .parked
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        parked.queue.push_back((msg, accepted_tx));
        if !parked.flusher_running {
            let Some(cell) = self.me.upgrade() else {
                // Only reachable while the cell itself is being dropped: nobody can run the call.
                drop(parked);
                self.reject_parked();
                return Accepted::Now;
            };
            parked.flusher_running = true;
            self.parking.store(true, Ordering::Release);
            self.runtime.spawn(async move { cell.flush_parked().await });
        }
        Accepted::Later(accepted_rx)
    }

    /// Moves parked calls into the mailbox, oldest first, waiting for room.
    async fn flush_parked(&self) {
        loop {
            let (next, accepted) = {
                let mut parked = self
                    .parked
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                match parked.queue.pop_front() {
                    Some(entry) => entry,
                    None => {
                        parked.flusher_running = false;
                        self.parking.store(false, Ordering::Release);
                        return;
                    }
                }
            };
            match self.tx.send(next).await {
                Ok(()) => {
                    let _ = accepted.send(());
                }
                Err(mpsc::error::SendError(msg)) => msg.reject(self.gone()),
            }
        }
    }

    fn reject_parked(&self) {
        let drained: Vec<_> = {
            let mut parked = self
                .parked
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            parked.queue.drain(..).collect()
        };
        for (msg, _accepted) in drained {
            msg.reject(self.gone());
        }
    }

    /// Records why the actor is gone; the first cause recorded wins.
    pub(crate) fn set_death(&self, cause: DeathCause) {
        let _ = self.death.set(cause);
    }

    /// The error every call to this actor gets once it is gone.
    pub(crate) fn gone(&self) -> Error {
        Error::ActorDied {
            actor: self.label.clone(),
            cause: self
                .death
                .get()
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
        if self.death.get().is_some() {
            return;
        }
        self.set_death(DeathCause::Killed);
        if let Some(abort) = self.abort.get() {
            abort.abort();
        }
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.death.get().is_none()
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

    fn send_encoded(&self, method: &str, payload: &[u8], reply: EncodedReply) -> Accepted {
        match A::decode_message(method, payload, reply) {
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
}

impl Accepted {
    pub(crate) fn into_receiver(self) -> Option<oneshot::Receiver<()>> {
        match self {
            Accepted::Now => None,
            Accepted::Later(rx) => Some(rx),
        }
    }
}
