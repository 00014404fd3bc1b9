//! [`Fate`]: how an actor's death is recorded and seen, the same for every backend.
//!
//! Two steps, because they can be apart in time: the cause is *recorded* as soon as it
//! is known (the first one wins, so a `kill()` is not overwritten by the disconnect it
//! causes), which makes the actor dead to new calls; the actor is *finished* when it is
//! gone for good (its task ended, its process exited), which wakes everyone waiting in
//! `stopped()`. An actor in this process, a route to another process and a restarting
//! route each keep one.

use std::sync::OnceLock;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use crate::error::DeathCause;

/// An actor's death: its cause once recorded, and the moment it is finished.
#[derive(Debug)]
pub struct Fate {
    cause: OnceLock<DeathCause>,
    finished: watch::Sender<Option<DeathCause>>,
}

impl Default for Fate {
    fn default() -> Self {
        Fate::new()
    }
}

impl Fate {
    /// An actor that is alive.
    pub fn new() -> Fate {
        Fate {
            cause: OnceLock::new(),
            finished: watch::channel(None).0,
        }
    }

    /// Records why the actor died; the first cause recorded wins. True if this one did.
    pub fn record(&self, cause: DeathCause) -> bool {
        self.cause.set(cause).is_ok()
    }

    /// The cause recorded, once there is one.
    pub fn cause(&self) -> Option<&DeathCause> {
        self.cause.get()
    }

    /// True once a cause is recorded.
    pub fn is_dead(&self) -> bool {
        self.cause.get().is_some()
    }

    /// The actor is gone for good: `stopped()` waiters wake with the recorded cause, or
    /// with `otherwise` (which is then recorded) when none was.
    pub fn finish(&self, otherwise: DeathCause) {
        self.record(otherwise);
        self.finished.send_replace(self.cause.get().cloned());
    }

    /// Records `cause` (unless one was recorded first) and finishes at once.
    pub fn die(&self, cause: DeathCause) {
        self.finish(cause);
    }

    /// Wakes `stopped()` waiters with `cause` without recording it (the actor is not
    /// known dead, only unreachable for good: a node that refused its stream).
    pub fn finish_unrecorded(&self, cause: DeathCause) {
        self.finished.send_replace(Some(cause));
    }

    /// Resolves once the actor is finished.
    pub async fn finished(&self) {
        let mut finished = self.finished.subscribe();
        let _ = finished.wait_for(Option::is_some).await;
    }

    /// Resolves when the actor is finished, with the reason.
    pub fn stopped(&self) -> BoxFuture<'static, DeathCause> {
        let mut finished = self.finished.subscribe();
        Box::pin(async move {
            match finished.wait_for(Option::is_some).await {
                Ok(cause) => cause.clone().unwrap_or(DeathCause::RuntimeShutdown),
                Err(_) => DeathCause::RuntimeShutdown,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn the_first_cause_wins_and_stopped_waits_for_the_finish() {
        let fate = Fate::new();
        let stopped = fate.stopped();
        assert!(fate.record(DeathCause::Killed));
        assert!(!fate.record(DeathCause::PodDeleted), "a later cause loses");
        assert!(fate.is_dead());
        let mut stopped = Box::pin(stopped);
        assert!(
            (&mut stopped).now_or_never().is_none(),
            "recorded, not finished"
        );
        fate.finish(DeathCause::RuntimeShutdown);
        assert_eq!(stopped.await, DeathCause::Killed);
    }

    #[tokio::test]
    async fn finishing_without_a_cause_records_the_fallback() {
        let fate = Fate::new();
        fate.finish(DeathCause::RuntimeShutdown);
        assert_eq!(fate.cause(), Some(&DeathCause::RuntimeShutdown));
        assert_eq!(fate.stopped().await, DeathCause::RuntimeShutdown);
    }
}
