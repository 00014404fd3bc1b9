//! The rules every backend keeps, numbered so that tests and docs can name them.
//!
//! This module holds no code. Each rule is tested by the shared semantic suite of the
//! `kt` crate (`tests/semantics.rs`: in process, loopback, local processes;
//! `tests/semantics_kubernetes.rs`: pods of the API-server emulator); a test's name says
//! which rule breaks when it fails. Every rule runs on all four backends except S3,
//! which needs a worker process to lose and runs on local processes and on pods.
//!
//! # Sending
//! - **E1 — Eager send.** Calling a handle method puts the call in the actor's mailbox
//!   before the method returns. If the mailbox is full, the call is parked, in order, in a
//!   queue beside the mailbox and moved in as room frees up (see B1).
//! - **E2 — Dropping is not cancelling.** Dropping a [`crate::Call`] (or calling
//!   [`crate::Call::forget`]) lets the call run; only its reply is discarded.
//!
//! # Order and concurrency
//! - **O1 — Caller order.** Calls made one after another (through one handle or its
//!   clones) run in the order they were made. Calls made concurrently from different
//!   tasks have no order between them.
//! - **O2 — Exclusive methods.** `&mut self` methods run one at a time, each to
//!   completion (an `async` one included) before the next call starts.
//! - **O3 — Shared methods.** Consecutive `&self` calls may overlap, at most
//!   `max_concurrency` at once (default 1: no overlap). A `&mut self` call waits for the
//!   running `&self` calls to finish, and later calls wait for it.
//!
//! # Errors
//! - **R1 — Errors are values.** A method's `Err(E)` reaches the caller as that `E`:
//!   `Call<Result<T, E>>` resolves to `kt::Result<Result<T, E>>`.
//! - **R2 — Panics.** A panic in a method reaches its caller as
//!   [`crate::Error::ActorPanicked`] `{ actor, method, message }`; the actor then follows
//!   its restart policy (S1, S2).
//!
//! # Supervision
//! - **S1 — Restart.** With restarts left (`max_restarts`), a panicked actor is rebuilt by
//!   its constructor with the original arguments and `on_start` runs again. Calls already
//!   in its mailbox when it panicked fail with [`crate::Error::ActorDied`] (cause
//!   `Panicked`), except calls of methods marked `#[kt(idempotent)]`, which run on the new
//!   incarnation first. Calls made later run on the new incarnation — including a call
//!   made right after the caller saw the panic: the panicked call is answered only after
//!   the waiting calls were dealt with.
//! - **S2 — No restarts left.** The actor is dead: queued calls and every later call fail
//!   with `ActorDied { cause: Panicked { .. } }`. `on_stop` does not run on a panicked state.
//! - **S3 — Process restarts.** When the process hosting an actor dies (killed by a
//!   signal, exited, connection lost for good) and restarts are left, the backend starts a
//!   new process and rebuilds the actor with its original arguments; the handle stays
//!   valid. Calls that were sent to the dead process fail with `ActorDied { cause }` (they
//!   may have run: at most once), except `#[kt(idempotent)]` ones, which are re-sent to the
//!   new process — first, before the calls that waited for it, and in the order they were
//!   made, as S1 runs them. Calls made while it starts wait for it, in order. `kill()`, a stop from
//!   inside, the release by the last owning handle, and a panic past the budget are not
//!   restarted. Each new process gets the restarts left as its budget for panics (S1);
//!   handles that travelled to other processes keep reaching the process they were sent
//!   for. Both process backends keep it: a local process is replaced by a new child
//!   process; on Kubernetes a dead pod (OOM-killed, evicted, preempted, deleted, crashed)
//!   is replaced by a new pod of its own name (`<pod>-r<n>`, the dead one staying for
//!   inspection), except while the session shuts down. A container that cannot start
//!   (`ContainerStartFailed`) is not restarted: a new pod would fail the same way.
//!
//! # Lifetime
//! - **L1 — Owned actors.** An owned actor (the default) stops when its last owning
//!   handle is dropped: the calls already in its mailbox still run, then `on_stop` runs
//!   with cause `HandlesDropped`.
//! - **L2 — Detached actors.** A detached actor (which must be named) lives until it is
//!   killed, whatever happens to the handles.
//! - **L3 — Kill.** `kill()` stops an actor at once: the running method is cancelled at
//!   its next await point, waiting calls fail with `ActorDied { cause: Killed }`, and
//!   `on_stop` does not run.
//! - **L4 — Stopping itself.** [`crate::Context::stop`] stops the actor after the current
//!   call: queued calls fail with `ActorDied { cause: Stopped }`, `on_stop` runs.
//! - **L5 — Handles that travel.** A handle sent to another process (as an argument or a
//!   return value) reaches the actor directly but does not own it: the actor's lifetime
//!   stays with the owning handles of the process that spawned it.
//!
//! # Death
//! - **D1 — Dead is not slow.** Every call to an actor that is gone fails at once with
//!   `ActorDied { actor, cause }`, and every call that was waiting on it fails with the
//!   same error; no call hangs.
//!
//! # Backpressure
//! - **B1 — Bounded mailboxes.** A mailbox holds at most `mailbox_capacity` calls. Calls
//!   made while it is full are parked in order on the caller's side and their `Call`
//!   futures resolve only after the actor ran them, so a caller that awaits its calls
//!   waits for room. No call is ever dropped silently: at most
//!   [`crate::parking_limit`]`(mailbox_capacity)` calls (16 per mailbox slot, at least
//!   65,536) park beside a full mailbox, and a call past that bound is refused at once with
//!   [`crate::Error::Overloaded`] — it does not run, the calls before it do — so a producer
//!   that never awaits cannot grow memory without limit. For an actor in another process the
//!   same bound holds on the caller's side: the caller's route lets at most
//!   `mailbox_capacity + max_concurrency` unanswered calls onto the wire (what the actor
//!   can hold and run), keeps later ones back in order, and sends each as a reply frees
//!   room — that is when its `Call::sent` resolves.
//!
//! # Names
//! - **N1 — Unique names.** A name belongs to one live actor at a time; spawning a second
//!   actor with a taken name fails with [`crate::Error::NameTaken`]. `get_actor::<A>(name)`
//!   fails with [`crate::Error::WrongActorType`] when the actor is not an `A`, and with
//!   [`crate::Error::ActorNotFound`] when no live actor has the name. A name's scope is
//!   the backend's: one process for in-process actors, one user on one machine for
//!   local-process actors (another driver sees them), one namespace on Kubernetes.
//!
//! # Security
//! - **X1 — Registered types only.** An actor is built by name only if its type is
//!   registered (by `#[kt::actor]`) in the binary that builds it.
//! - **X2 — Mutual TLS.** Every connection between processes is mutually authenticated
//!   against the cluster's CA (for local processes, the CA this user's drivers share); a peer without a valid certificate is refused in the
//!   handshake, before any message is read.
//! - **X3 — Bad input is answered, not fatal.** Garbage, truncated or oversized frames,
//!   unknown actors, unknown methods and wrong argument types get a typed error back, and
//!   the process keeps serving everything else.
