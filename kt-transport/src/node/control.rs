//! The worker-control rendezvous: where a worker's control stream meets the code that
//! waits for it.
//!
//! A driver that starts a worker waits for its `Hello` (the worker dials back with the
//! token it was given); a dialed worker waits for its driver's `Attach`; a worker waits
//! for the driver's `Release` of the actor it hosts. Each is a one-shot keyed by token or
//! actor id, filled by the serving side ([`super::serve`]) when the frame arrives.

use std::collections::HashMap;
use std::sync::Mutex;

use kt_core::Error;
use kt_core::handle_wire::HandleAddress;
use tokio::sync::oneshot;

use super::lock;
use super::serve::Frames;

/// What a driver receives when a worker it started reports in.
pub(crate) struct HelloStream {
    /// The hosted actor's address, or why it could not start.
    pub result: Result<HandleAddress, Error>,
    /// Driver → worker: `Release`.
    pub control: quinn::SendStream,
    /// Worker → driver: `Gone`.
    pub events: Frames,
}

/// What a dialed worker receives when its driver attaches.
pub(crate) struct AttachStream {
    /// Worker → driver: `Hello`, later `Gone`.
    pub control: quinn::SendStream,
    /// Driver → worker: its end tells the worker the driver is gone.
    pub events: Frames,
}

/// The waiting sides of the rendezvous.
#[derive(Default)]
pub(crate) struct Rendezvous {
    hellos: Mutex<HashMap<u64, oneshot::Sender<HelloStream>>>,
    /// On a dialed worker: the driver's control stream, by token.
    attaches: Mutex<HashMap<u64, oneshot::Sender<AttachStream>>>,
    /// On a worker: fires when the driver releases the hosted actor.
    releases: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

impl Rendezvous {
    /// Registers a worker about to start; its hello arrives on the returned receiver.
    pub(crate) fn expect_hello(&self, token: u64) -> oneshot::Receiver<HelloStream> {
        let (tx, rx) = oneshot::channel();
        lock(&self.hellos).insert(token, tx);
        rx
    }

    /// Forgets a worker that will not report in.
    pub(crate) fn forget_hello(&self, token: u64) {
        lock(&self.hellos).remove(&token);
    }

    /// Hands a worker's hello to the spawn waiting for it.
    pub(crate) fn deliver_hello(&self, token: u64, hello: HelloStream) {
        if let Some(waiter) = lock(&self.hellos).remove(&token) {
            let _ = waiter.send(hello);
        }
    }

    /// On a dialed worker: the receiver gets the control stream of the driver that
    /// attaches with `token`.
    pub(crate) fn expect_attach(&self, token: u64) -> oneshot::Receiver<AttachStream> {
        let (tx, rx) = oneshot::channel();
        lock(&self.attaches).insert(token, tx);
        rx
    }

    /// Hands an attaching driver's stream to the worker waiting for it; hands it back
    /// when no worker waits for this token.
    pub(crate) fn deliver_attach(&self, token: u64, attach: AttachStream) -> Option<AttachStream> {
        match lock(&self.attaches).remove(&token) {
            Some(waiter) => waiter.send(attach).err(),
            None => Some(attach),
        }
    }

    /// On a worker: the receiver fires when the driver releases the hosted actor.
    pub(crate) fn on_release(&self, actor_id: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        lock(&self.releases).insert(actor_id, tx);
        rx
    }

    /// The driver released the hosted actor `actor_id`.
    pub(crate) fn release_hosted(&self, actor_id: u64) {
        if let Some(release) = lock(&self.releases).remove(&actor_id) {
            let _ = release.send(());
        }
    }
}
