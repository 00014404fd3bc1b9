//! `RestartingRoute`: an actor whose worker *process* is replaced when it dies (rule S3).
//!
//! A panic is handled inside the worker, which rebuilds the actor in place (S1). When the
//! process itself dies — killed by a signal, aborted, exited — the driver's backend
//! starts a new one from the same recipe (type, encoded arguments, options) while
//! restarts are left. The handle does not change: this route forwards calls to the
//! current incarnation and swaps incarnations underneath.
//!
//! - Calls that were on their way to the dead process may have run: they fail with
//!   `ActorDied { cause }` (at most once), except calls of `#[kt(idempotent)]` methods,
//!   which are re-sent to the next incarnation — first, before any call that waited for
//!   it, and in the order they were made.
//! - Calls made while the new process starts wait for it, in order (bounded by the
//!   start timeout), instead of failing.
//! - A user's `kill()`, a stop from inside, a release by the last owning handle, or a
//!   worker that reported its own end (panicked with no restarts left) are not deaths to
//!   recover from: the actor stays dead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use kt_core::backend::{
    Accepted, EncodedReply, EncodedRoute, Fate, OwnerGuard, Release, ReplySink,
};
use kt_core::handle_wire::HandleAddress;
use kt_core::registry::ActorType;
use kt_core::{ActorLabel, DeathCause, ErasedActor, Error};
use tokio::sync::oneshot;

use crate::node::RemoteRoute;

/// How many calls may wait for a restarting actor before callers are told it is
/// unavailable (the same bound as a route's own queue).
const RESTART_QUEUE: usize = 4096;

/// Starts a new incarnation of the actor with the restarts it has left (its budget for
/// panics, rule S1): a new local process, a new pod.
pub type StartIncarnation =
    Arc<dyn Fn(u32) -> BoxFuture<'static, kt_core::Result<Arc<RemoteRoute>>> + Send + Sync>;

/// The handle to an actor hosted by a worker, as every placement hands it out: its first
/// incarnation's route as it is when no restarts are allowed, or supervised by a
/// restarting route that starts the next incarnations with `start` (rule S3). An owned
/// actor's handle holds a share of ownership; the last one to drop releases the actor.
pub fn supervised(
    first: Arc<RemoteRoute>,
    actor_type: ActorType,
    restarts: u32,
    detached: bool,
    start: StartIncarnation,
) -> kt_core::Result<ErasedActor> {
    if restarts == 0 {
        // Nothing to restart: calls go straight to the one process.
        let owner = (!detached).then(|| Arc::new(OwnerGuard::new(first.releaser())));
        return Ok(ErasedActor::new(first, owner));
    }
    let runtime = crate::node::Node::global()?.runtime.clone();
    let route = RestartingRoute::new(first, actor_type, restarts, start, runtime);
    let owner =
        (!detached).then(|| Arc::new(OwnerGuard::new(Arc::new(ReleaseRestarting(route.clone())))));
    Ok(ErasedActor::new(route, owner))
}

/// Calls to an actor whose process is restarted when it dies.
pub(crate) struct RestartingRoute {
    label: ActorLabel,
    actor_type: ActorType,
    start: StartIncarnation,
    runtime: tokio::runtime::Handle,
    inner: Mutex<Inner>,
    /// Set once the actor is dead for good.
    fate: Fate,
    /// Idempotent calls lost with an incarnation, with the order they were made in: the
    /// next incarnation gets them before anything else. Its own lock, never taken with
    /// `inner` held by a reply path (a lost call is reported under other locks).
    lost: Mutex<Vec<Lost>>,
    /// The order of idempotent calls, for `lost`.
    next_seq: AtomicU64,
    this: Weak<RestartingRoute>,
}

struct Inner {
    current: Arc<RemoteRoute>,
    restarts_left: u32,
    /// The last owning handle is gone: the actor finishes its calls and is not restarted.
    released: bool,
    phase: Phase,
}

enum Phase {
    Running,
    /// A new process is starting; calls wait here in order.
    Restarting {
        waiting: Vec<Waiting>,
    },
    Dead(DeathCause),
}

/// An idempotent call whose incarnation died before answering.
struct Lost {
    seq: u64,
    method: String,
    payload: Bytes,
    reply: EncodedReply,
}

struct Waiting {
    method: String,
    payload: Bytes,
    reply: EncodedReply,
    accepted: oneshot::Sender<()>,
}

impl RestartingRoute {
    /// Wraps the first incarnation; `start` builds the next ones.
    pub(crate) fn new(
        first: Arc<RemoteRoute>,
        actor_type: ActorType,
        restarts: u32,
        start: StartIncarnation,
        runtime: tokio::runtime::Handle,
    ) -> Arc<RestartingRoute> {
        let route = Arc::new_cyclic(|this| RestartingRoute {
            label: first.label().clone(),
            actor_type,
            start,
            runtime,
            inner: Mutex::new(Inner {
                current: first.clone(),
                restarts_left: restarts,
                released: false,
                phase: Phase::Running,
            }),
            fate: Fate::new(),
            lost: Mutex::new(Vec::new()),
            next_seq: AtomicU64::new(0),
            this: this.clone(),
        });
        route.watch(first);
        route
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notices the death of `incarnation` even when no call is made.
    fn watch(&self, incarnation: Arc<RemoteRoute>) {
        let this = self.this.clone();
        self.runtime.spawn(async move {
            let cause = incarnation.stopped().await;
            if let Some(route) = this.upgrade() {
                let mut inner = route.lock();
                if Arc::ptr_eq(&inner.current, &incarnation) {
                    route.after_death(&mut inner, cause);
                }
            }
        });
    }

    /// The current incarnation died of `cause`: restart it or declare the actor dead.
    fn after_death(&self, inner: &mut Inner, cause: DeathCause) {
        if !matches!(inner.phase, Phase::Running) {
            return;
        }
        if inner.released || inner.restarts_left == 0 || !process_death(&cause) {
            inner.phase = Phase::Dead(cause.clone());
            self.fate.die(cause);
            return;
        }
        inner.restarts_left -= 1;
        inner.phase = Phase::Restarting {
            waiting: Vec::new(),
        };
        tracing::warn!(
            "actor {} died ({cause}); starting a new process ({} restarts left)",
            self.label,
            inner.restarts_left
        );
        let start = (self.start)(inner.restarts_left);
        let this = self.this.clone();
        self.runtime.spawn(async move {
            let started = start.await;
            if let Some(route) = this.upgrade() {
                route.restarted(started, cause);
            }
        });
    }

    /// The new process is up (or could not start): hand it the waiting calls.
    fn restarted(&self, started: kt_core::Result<Arc<RemoteRoute>>, cause: DeathCause) {
        let mut inner = self.lock();
        let waiting = match &mut inner.phase {
            Phase::Restarting { waiting } => std::mem::take(waiting),
            // Killed while restarting: the new process must not outlive the kill.
            _ => {
                if let Ok(route) = started {
                    route.kill();
                }
                return;
            }
        };
        match started {
            Ok(route) => {
                inner.current = route.clone();
                inner.phase = Phase::Running;
                // Re-sent calls first, in the order they were made; then the calls that
                // waited for this incarnation (rule S3).
                for call in self.take_lost() {
                    let _ = self.forward(&route, &call.method, call.payload, call.reply);
                }
                for call in waiting {
                    let _ = self.forward(&route, &call.method, call.payload, call.reply);
                    let _ = call.accepted.send(());
                }
                if inner.released {
                    route.releaser().release();
                }
                drop(inner);
                self.watch(route);
            }
            Err(error) => {
                tracing::warn!("actor {} could not be restarted: {error}", self.label);
                inner.phase = Phase::Dead(cause.clone());
                drop(inner);
                for call in self.take_lost() {
                    call.reply.fail(error.clone());
                }
                for call in waiting {
                    call.reply.fail(error.clone());
                }
                self.fate.die(cause);
            }
        }
    }

    /// The lost idempotent calls, in the order they were made.
    fn take_lost(&self) -> Vec<Lost> {
        let mut lost = std::mem::take(&mut *self.lost.lock().unwrap_or_else(|e| e.into_inner()));
        lost.sort_by_key(|call| call.seq);
        lost
    }

    /// Keeps a lost idempotent call for the next incarnation.
    fn keep_lost(&self, call: Lost) {
        self.lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
    }

    /// Lost calls reported after the next incarnation took its calls (or while the
    /// death is not yet handled): decide the death now if needed, and send them on.
    fn flush_lost(&self) {
        let mut inner = self.lock();
        if matches!(inner.phase, Phase::Running)
            && let Some(cause) = inner.current.death_cause()
        {
            self.after_death(&mut inner, cause);
        }
        match &inner.phase {
            // `restarted` hands them to the new incarnation, first.
            Phase::Restarting { .. } => {}
            Phase::Running => {
                let current = inner.current.clone();
                drop(inner);
                for call in self.take_lost() {
                    let _ = self.forward(&current, &call.method, call.payload, call.reply);
                }
            }
            Phase::Dead(cause) => {
                let error = Error::ActorDied {
                    actor: self.label.clone(),
                    cause: cause.clone(),
                };
                drop(inner);
                for call in self.take_lost() {
                    call.reply.fail(error.clone());
                }
            }
        }
    }

    /// Sends one call to an incarnation; an idempotent call that is lost with it is
    /// re-sent to the next one.
    fn forward(
        &self,
        incarnation: &Arc<RemoteRoute>,
        method: &str,
        payload: Bytes,
        reply: EncodedReply,
    ) -> Accepted {
        let reply = if self.actor_type.is_idempotent(method) {
            EncodedReply::new(ResendIfLost {
                seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
                route: self.this.clone(),
                incarnation: incarnation.clone(),
                method: method.to_string(),
                payload: payload.clone(),
                reply,
                runtime: self.runtime.clone(),
            })
        } else {
            reply
        };
        incarnation.send_encoded(method, payload, reply)
    }
}

/// True for deaths of the process itself, which a new process recovers from; false for
/// ends the actor or its user chose (kill, stop, release, panics past the budget).
fn process_death(cause: &DeathCause) -> bool {
    matches!(
        cause,
        DeathCause::Signaled { .. }
            | DeathCause::Exited { .. }
            | DeathCause::ConnectionLost { .. }
            | DeathCause::OomKilled
            | DeathCause::Evicted { .. }
            | DeathCause::Preempted { .. }
            | DeathCause::PodDeleted
    )
}

impl EncodedRoute for RestartingRoute {
    fn label(&self) -> &ActorLabel {
        &self.label
    }

    fn send_encoded(&self, method: &str, payload: Bytes, reply: EncodedReply) -> Accepted {
        let mut inner = self.lock();
        if matches!(inner.phase, Phase::Running)
            && let Some(cause) = inner.current.death_cause()
        {
            // Seen dead before the watcher was woken: decide now, so this call waits for
            // the next incarnation rather than failing.
            self.after_death(&mut inner, cause);
        }
        match &mut inner.phase {
            Phase::Running => {
                let current = inner.current.clone();
                drop(inner);
                self.forward(&current, method, payload, reply)
            }
            Phase::Restarting { waiting } if waiting.len() < RESTART_QUEUE => {
                let (accepted, rx) = oneshot::channel();
                waiting.push(Waiting {
                    method: method.to_string(),
                    payload,
                    reply,
                    accepted,
                });
                Accepted::Later(rx)
            }
            Phase::Restarting { .. } => {
                reply.fail(Error::Unavailable {
                    target: format!("actor {}", self.label),
                    message: format!(
                        "its process is restarting and {RESTART_QUEUE} calls already wait for \
                         it; await some of them before sending more"
                    ),
                });
                Accepted::Now
            }
            Phase::Dead(cause) => {
                reply.fail(Error::ActorDied {
                    actor: self.label.clone(),
                    cause: cause.clone(),
                });
                Accepted::Now
            }
        }
    }

    fn gone(&self) -> Error {
        let inner = self.lock();
        match &inner.phase {
            Phase::Dead(cause) => Error::ActorDied {
                actor: self.label.clone(),
                cause: cause.clone(),
            },
            _ => inner.current.gone(),
        }
    }

    fn kill(&self) {
        let mut inner = self.lock();
        if matches!(inner.phase, Phase::Dead(_)) {
            return;
        }
        let previous = std::mem::replace(&mut inner.phase, Phase::Dead(DeathCause::Killed));
        let current = inner.current.clone();
        drop(inner);
        match previous {
            Phase::Dead(_) => {}
            Phase::Restarting { waiting } => {
                for call in waiting {
                    call.reply.fail(Error::ActorDied {
                        actor: self.label.clone(),
                        cause: DeathCause::Killed,
                    });
                }
            }
            Phase::Running => current.kill(),
        }
        self.fate.die(DeathCause::Killed);
    }

    fn is_alive(&self) -> bool {
        !matches!(self.lock().phase, Phase::Dead(_))
    }

    fn stopped(&self) -> BoxFuture<'static, DeathCause> {
        self.fate.stopped()
    }

    fn address(&self) -> Option<HandleAddress> {
        self.lock().current.address()
    }
}

/// Releases the current incarnation when the last owning handle drops, and keeps the
/// actor from being restarted afterwards.
pub(crate) struct ReleaseRestarting(pub(crate) Arc<RestartingRoute>);

impl Release for ReleaseRestarting {
    fn release(&self) {
        let mut inner = self.0.lock();
        inner.released = true;
        if matches!(inner.phase, Phase::Running) {
            inner.current.releaser().release();
        }
        // While restarting, the release is sent once the new process has its calls.
    }
}

/// The reply slot of an idempotent call: if the incarnation it was sent to died before
/// answering, the call goes to the next incarnation instead of failing.
struct ResendIfLost {
    /// When the call was first made, among this actor's idempotent calls.
    seq: u64,
    route: Weak<RestartingRoute>,
    incarnation: Arc<RemoteRoute>,
    method: String,
    payload: Bytes,
    reply: EncodedReply,
    runtime: tokio::runtime::Handle,
}

impl ReplySink for ResendIfLost {
    fn deliver(self: Box<Self>, encoded: bytes::Bytes) {
        let lost = self.incarnation.death_cause().is_some()
            && matches!(
                kt_core::codec::reply_error(&encoded),
                Some(Error::ActorDied { .. })
            );
        let route = self.route.upgrade();
        match route {
            Some(route) if lost => {
                let ResendIfLost {
                    seq,
                    method,
                    payload,
                    reply,
                    runtime,
                    ..
                } = *self;
                route.keep_lost(Lost {
                    seq,
                    method,
                    payload,
                    reply,
                });
                // The rest not inline: this may run under the lock of the dead
                // incarnation's connection, or under this route's own.
                runtime.spawn(async move { route.flush_lost() });
            }
            _ => self.reply.deliver(encoded),
        }
    }
}
