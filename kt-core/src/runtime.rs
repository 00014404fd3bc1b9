//! The in-process runtime: one tokio task per actor, running its messages by the rules
//! of [`crate::semantics`].
//!
//! The task owns the actor's state. `&mut self` calls run one at a time in mailbox
//! order; runs of `&self` calls overlap up to `max_concurrency` (as futures polled by
//! the same task, so no extra thread hop). A panic is caught per call, answered to that
//! caller, and handled by the supervisor: restart with the original arguments, or die.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::Poll;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::actor::{Actor, Context, Message, Outcome, PanicAnswer};
use crate::actor_ref::RawRef;
use crate::cell::LocalCell;
use crate::codec;
use crate::error::{ActorLabel, DeathCause, Error, Result};
use crate::inbound::Inbound;
use crate::names::{self, NameGuard};
use crate::options::{Lifetime, SpawnOptions};
use crate::placement::{Placed, SpawnArgs};
use crate::route::ErasedActor;
use crate::route::OwnerGuard;

/// Constructor arguments in their MessagePack form, shared by restarts.
type EncodedArgs = Arc<[u8]>;

/// A new actor id, unique across a cluster: 64 bits from the operating system's secure
/// random source. Handles travel between processes, and process ids cannot tell actors
/// apart there (every pod's worker is process 1); 64 random bits collide with odds of
/// about n²/2⁶⁵ among n actors. Never 0, which stands for "unknown".
fn next_actor_id() -> u64 {
    loop {
        let id = getrandom::u64().unwrap_or_else(|_| fallback_id());
        if id != 0 {
            return id;
        }
    }
}

/// Where the secure random source is unavailable: the process id, the time and a
/// counter, mixed (unique within a machine, and unlikely to collide beyond it).
fn fallback_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_nanos() as u64);
    let mixed = (u64::from(std::process::id()) << 40)
        ^ nanos.rotate_left(17)
        ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Spawns an actor of type `A` in this process, on the current tokio runtime, and waits
/// until its constructor and `on_start` have run.
pub(crate) async fn spawn_in_process<A: Actor>(
    args: SpawnArgs,
    options: SpawnOptions,
) -> Result<Placed> {
    options.validate()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
    let (args, restart_args) = prepare_args::<A>(args, options.max_restarts > 0)?;
    let label = ActorLabel {
        id: next_actor_id(),
        type_name: A::TYPE_NAME.into(),
        name: options.name.clone(),
    };
    let (cell, rx) = LocalCell::<A>::new(label.clone(), options.mailbox_capacity, runtime.clone());
    let owner = match options.lifetime {
        Lifetime::Owned => Some(Arc::new(OwnerGuard::new(cell.clone()))),
        Lifetime::Detached => None,
    };
    let name_guard = match &options.name {
        Some(name) => Some(names::register(
            name,
            &cell,
            owner.as_ref().map(Arc::downgrade),
        )?),
        None => None,
    };
    let ctx = Context {
        label,
        cell: cell.clone(),
        owner: owner.as_ref().map(Arc::downgrade),
        group: options.group,
        stop_requested: AtomicBool::new(false),
        restarts: AtomicU32::new(0),
    };
    let supervisor = Supervisor {
        restart_args,
        restarts_left: options.max_restarts,
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    let exit = ExitGuard {
        cell: cell.clone(),
        _name: name_guard,
    };
    let task = runtime.spawn(run_actor(
        ctx,
        rx,
        args,
        supervisor,
        options.max_concurrency,
        ready_tx,
        exit,
    ));
    cell.set_abort_handle(task.abort_handle());
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error),
        Err(_) => return Err(cell.gone()),
    }
    let erased = ErasedActor::new(cell.clone(), owner.clone());
    Ok(Placed::in_process(RawRef::local(cell, owner), erased))
}

/// Turns the spawn arguments into the typed value, plus their encoding when restarts
/// will need to rebuild the actor from them.
fn prepare_args<A: Actor>(
    args: SpawnArgs,
    keep_encoded: bool,
) -> Result<(A::Args, Option<EncodedArgs>)> {
    let what = || format!("the constructor arguments of `{}`", A::TYPE_NAME);
    match args {
        SpawnArgs::Encoded(bytes) => {
            let typed = codec::decode::<A::Args>(&bytes, what())?;
            Ok((typed, keep_encoded.then_some(bytes)))
        }
        SpawnArgs::Typed(any) => {
            let typed = *any.downcast::<A::Args>().map_err(|_| Error::Decode {
                what: what(),
                message: "the arguments have another type than the constructor's".into(),
            })?;
            let encoded = match keep_encoded {
                true => Some(Arc::from(codec::encode(&typed, what())?)),
                false => None,
            };
            Ok((typed, encoded))
        }
    }
}

/// Runs when the actor task ends for any reason — normal stop, kill (abort), or the
/// runtime shutting down — so the cell always records a cause and the name is freed.
struct ExitGuard<A: Actor> {
    cell: Arc<LocalCell<A>>,
    _name: Option<NameGuard>,
}

impl<A: Actor> Drop for ExitGuard<A> {
    fn drop(&mut self) {
        self.cell.inbound.close();
        self.cell.set_finished();
    }
}

/// What the actor needs to come back after a panic.
struct Supervisor {
    restart_args: Option<EncodedArgs>,
    restarts_left: u32,
}

/// Builds the actor and runs `on_start`; panics in either become errors.
async fn start<A: Actor>(args: A::Args, ctx: &Context<A>) -> std::result::Result<A, String> {
    let mut actor = AssertUnwindSafe(A::construct(args))
        .catch_unwind()
        .await
        .map_err(|payload| format!("the constructor panicked: {}", panic_message(&*payload)))??;
    AssertUnwindSafe(actor.on_start(ctx))
        .catch_unwind()
        .await
        .map_err(|payload| format!("on_start panicked: {}", panic_message(&*payload)))??;
    Ok(actor)
}

async fn run_actor<A: Actor>(
    ctx: Context<A>,
    mut rx: mpsc::Receiver<A::Message>,
    args: A::Args,
    mut supervisor: Supervisor,
    max_concurrency: usize,
    ready: oneshot::Sender<Result<()>>,
    _exit: ExitGuard<A>,
) {
    let cell = ctx.cell.clone();
    let mut actor = match start::<A>(args, &ctx).await {
        Ok(actor) => actor,
        Err(message) => {
            cell.set_death(DeathCause::StartFailed {
                message: message.clone(),
            });
            let _ = ready.send(Err(Error::StartFailed {
                actor: ctx.label.clone(),
                message,
            }));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    // One call at a time: a transport may lend this task its call stream to read while
    // it is idle (see `crate::inbound`).
    if max_concurrency == 1 {
        cell.inbound.open();
    }

    // Calls kept across a restart (idempotent ones) run before anything newer.
    let mut pending: VecDeque<A::Message> = VecDeque::new();
    loop {
        let msg = match pending.pop_front() {
            Some(msg) => msg,
            None => tokio::select! {
                biased;
                msg = rx.recv() => match msg {
                    Some(msg) => msg,
                    // Unreachable while the cell holds a sender; stop cleanly regardless.
                    None => return stop_gracefully(actor, &ctx, rx, DeathCause::HandlesDropped).await,
                },
                () = cell.release.notified() => {
                    return stop_gracefully(actor, &ctx, rx, DeathCause::HandlesDropped).await;
                }
                msg = next_lent_call::<A>(&cell), if cell.inbound.is_wanted() => msg,
            },
        };
        let outcome = if max_concurrency > 1 && msg.info().shared {
            let (outcome, held) = run_shared_batch(
                &actor,
                msg,
                &ctx,
                &mut rx,
                max_concurrency,
                pending.is_empty(),
            )
            .await;
            pending.extend(held);
            outcome
        } else {
            first_poll_holds_the_source(&cell.inbound, actor.handle(msg, &ctx)).await
        };
        if let Outcome::Panicked {
            method,
            message,
            answer,
        } = outcome
        {
            let cause = DeathCause::Panicked {
                method: method.to_string(),
                message,
            };
            match restart::<A>(&ctx, &mut rx, &mut supervisor, &mut pending, cause, answer).await {
                Some(next) => actor = next,
                None => return,
            }
        }
        if ctx.stop_requested.load(Ordering::Acquire) {
            return stop_now(actor, &ctx, rx, pending, DeathCause::Stopped).await;
        }
    }
}

/// The next call from the call stream a transport lent this actor, read by its own
/// task (a call that does not decode is answered with the error at once).
async fn next_lent_call<A: Actor>(cell: &LocalCell<A>) -> A::Message {
    std::future::poll_fn(|cx| {
        loop {
            let mut taken = None;
            let mut take = |method: &str, args: &[u8], reply| {
                taken = Some(A::decode_message(method, args, reply));
            };
            if cell.inbound.poll_next(cx, &mut take).is_pending() {
                return Poll::Pending;
            }
            match taken {
                Some(Ok(msg)) => return Poll::Ready(msg),
                Some(Err((error, reply))) => reply.fail(error),
                None => {}
            }
        }
    })
    .await
}

/// Runs a method; if it does not finish in its first poll, the lent call stream goes
/// back to its transport, which reads on while the method runs.
async fn first_poll_holds_the_source<F: Future<Output = Outcome>>(
    inbound: &Inbound,
    method: F,
) -> Outcome {
    let mut method = std::pin::pin!(method);
    let mut first = true;
    std::future::poll_fn(|cx| {
        let polled = method.as_mut().poll(cx);
        if std::mem::take(&mut first) && polled.is_pending() {
            inbound.give_back();
        }
        polled
    })
    .await
}

/// Runs a batch of `&self` calls concurrently, starting with `first` and taking more
/// from the mailbox while they are `&self` calls and fewer than `max` run. Returns the
/// first panic (if any) and the `&mut self` call that ended the batch (if any).
async fn run_shared_batch<A: Actor>(
    actor: &A,
    first: A::Message,
    ctx: &Context<A>,
    rx: &mut mpsc::Receiver<A::Message>,
    max: usize,
    may_take_more: bool,
) -> (Outcome, Option<A::Message>) {
    let mut running = FuturesUnordered::new();
    running.push(actor.handle_shared(first, ctx));
    let mut outcome = Outcome::Done;
    let mut held = None;
    loop {
        let accepting = may_take_more && held.is_none() && outcome.is_done() && running.len() < max;
        tokio::select! {
            biased;
            Some(done) = running.next() => {
                // The first panic is the one the supervisor handles; later ones in the
                // same batch are answered at once.
                if outcome.is_done() {
                    outcome = done;
                } else {
                    done.settle();
                }
                if running.is_empty() {
                    break;
                }
            }
            Some(msg) = rx.recv(), if accepting => {
                if msg.info().shared {
                    running.push(actor.handle_shared(msg, ctx));
                } else {
                    held = Some(msg);
                }
            }
        }
    }
    (outcome, held)
}

/// After a panic: fail the calls that were waiting (keeping idempotent ones), then
/// rebuild the actor if restarts are left. Returns the new incarnation, or `None` when
/// the actor is now dead.
async fn restart<A: Actor>(
    ctx: &Context<A>,
    rx: &mut mpsc::Receiver<A::Message>,
    supervisor: &mut Supervisor,
    pending: &mut VecDeque<A::Message>,
    cause: DeathCause,
    answer: PanicAnswer,
) -> Option<A> {
    // Rebuilding awaits: the transport reads the stream meanwhile.
    ctx.cell.inbound.give_back();
    let args = match (&supervisor.restart_args, supervisor.restarts_left) {
        (Some(args), 1..) => args.clone(),
        _ => {
            ctx.cell.set_death(cause);
            reject_all(ctx, rx, std::mem::take(pending));
            answer.send();
            return None;
        }
    };
    supervisor.restarts_left -= 1;
    let died = Error::ActorDied {
        actor: ctx.label.clone(),
        cause,
    };
    let waiting: Vec<_> = pending
        .drain(..)
        .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        .collect();
    for msg in waiting {
        if msg.info().idempotent {
            pending.push_back(msg);
        } else {
            msg.reject(died.clone());
        }
    }
    // Only now does the panicked caller hear of it: whatever it sends next lands after
    // this drain, on the next incarnation.
    answer.send();
    let rebuilt = match codec::decode::<A::Args>(&args, "the saved constructor arguments") {
        Ok(args) => start::<A>(args, ctx).await,
        Err(error) => Err(error.to_string()),
    };
    match rebuilt {
        Ok(actor) => {
            ctx.restarts.fetch_add(1, Ordering::Relaxed);
            tracing::info!(actor = %ctx.label, "restarted after a panic");
            Some(actor)
        }
        Err(message) => {
            ctx.cell.set_death(DeathCause::StartFailed { message });
            reject_all(ctx, rx, std::mem::take(pending));
            None
        }
    }
}

/// Stops after the calls already in the mailbox have run (rule L1), then `on_stop`.
async fn stop_gracefully<A: Actor>(
    mut actor: A,
    ctx: &Context<A>,
    mut rx: mpsc::Receiver<A::Message>,
    cause: DeathCause,
) {
    ctx.cell.set_death(cause.clone());
    ctx.cell.inbound.close();
    rx.close();
    while let Some(msg) = rx.recv().await {
        // A panic here is answered to its caller; the actor is stopping anyway.
        actor.handle(msg, ctx).await.settle();
    }
    run_on_stop(&mut actor, ctx, &cause).await;
}

/// Stops after the current call (rule L4): queued calls fail, `on_stop` runs.
async fn stop_now<A: Actor>(
    mut actor: A,
    ctx: &Context<A>,
    mut rx: mpsc::Receiver<A::Message>,
    pending: VecDeque<A::Message>,
    cause: DeathCause,
) {
    ctx.cell.set_death(cause.clone());
    ctx.cell.inbound.close();
    reject_all(ctx, &mut rx, pending);
    run_on_stop(&mut actor, ctx, &cause).await;
}

async fn run_on_stop<A: Actor>(actor: &mut A, ctx: &Context<A>, cause: &DeathCause) {
    if let Err(payload) = AssertUnwindSafe(actor.on_stop(ctx, cause))
        .catch_unwind()
        .await
    {
        tracing::warn!(actor = %ctx.label, "on_stop panicked: {}", panic_message(&*payload));
    }
}

/// Closes the mailbox and answers every queued call with the actor's cause of death.
fn reject_all<A: Actor>(
    ctx: &Context<A>,
    rx: &mut mpsc::Receiver<A::Message>,
    pending: VecDeque<A::Message>,
) {
    rx.close();
    let gone = ctx.cell.gone();
    for msg in pending
        .into_iter()
        .chain(std::iter::from_fn(|| rx.try_recv().ok()))
    {
        msg.reject(gone.clone());
    }
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}
