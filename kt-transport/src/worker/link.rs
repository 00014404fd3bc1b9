//! A driver's link to one worker process after its `Hello`, the same for every way a
//! worker is started (a local child that dialed back, a pod the driver dialed): the
//! route to the hosted actor, the worker's events watched, the control stream held open
//! for the worker's life, and a [`DeathReporter`] for whoever watches the process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kt_core::DeathCause;
use kt_core::handle_wire::HandleAddress;

use crate::node::{Frames, Node, RemoteRoute, RouteState, watch_events};

/// Links to the worker at `worker` whose actor is at `address`, its streams `control`
/// (driver → worker) and `events` (worker → driver). `killer` ends the worker's process
/// on `kill()`.
pub(crate) fn link(
    node: &Arc<Node>,
    worker: Option<SocketAddr>,
    address: HandleAddress,
    control: quinn::SendStream,
    events: Frames,
    killer: Option<Box<dyn Fn() + Send + Sync>>,
) -> (Arc<RemoteRoute>, DeathReporter) {
    let route = RemoteRoute::new(node.clone(), address.clone(), true, killer);
    let state = route.state().clone();
    node.runtime.spawn(watch_events(events, state.clone()));
    // The control stream stays open for the worker's life: its end tells an owned
    // actor's worker that the driver is gone.
    node.runtime.spawn(async move {
        let control = control;
        let _ = control.stopped().await;
    });
    let death = DeathReporter {
        state,
        node: node.clone(),
        worker,
        worker_node: address.node.clone(),
    };
    (route, death)
}

/// Reports the death of a worker's actor, with the cause its watcher saw (the child's
/// exit status, the pod's status), to every call waiting on it.
#[derive(Clone)]
pub struct DeathReporter {
    state: Arc<RouteState>,
    node: Arc<Node>,
    worker: Option<SocketAddr>,
    /// The worker's node address, as its handles name it.
    worker_node: String,
}

/// Told when a worker process this driver supervises is gone, with the node address
/// its handles named: services of the session that keep per-process state (the data
/// store's directory of holders) forget it at once instead of finding out on next use.
/// Registered with `inventory::submit!`.
pub struct WorkerGone {
    /// Called with the gone worker's node address and why it is gone; it must not block.
    pub notify: fn(&str, &DeathCause),
}

inventory::collect!(WorkerGone);

impl DeathReporter {
    /// The worker's process is gone for `cause`. Replies it flushed before a clean exit
    /// are still delivered; every call left fails with `ActorDied { cause }`.
    pub async fn died(&self, cause: DeathCause) {
        if self.state.was_reported() {
            // The worker reported why it stopped and finished its streams before
            // exiting: replies still being read are answers, not losses.
            self.state.replies_read(Duration::from_secs(2)).await;
        }
        // Before the callers learn of the death, so that what they do next (a get of a
        // value it held) already finds it forgotten.
        for hook in inventory::iter::<WorkerGone> {
            (hook.notify)(&self.worker_node, &cause);
        }
        self.state.die_and_fail(cause);
        // Its address may be handed to a new process: never reuse a connection to the
        // dead one.
        if let Some(worker) = self.worker {
            self.node.forget_peer(worker);
        }
    }

    /// True once the actor is known to be dead (reported by its worker or the backend).
    pub fn is_dead(&self) -> bool {
        self.state.is_dead()
    }
}
