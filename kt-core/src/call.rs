//! [`Call<T>`]: the future of one method call's reply, and [`GroupCall<T>`] for a
//! broadcast to every member of a group.
//!
//! A call is sent when the handle method is called (rule E1 in [`crate::semantics`]);
//! the future only waits for the reply, and dropping it does not cancel the call (E2).
//! A method returning `Result<T, E>` gives a `Call<Result<T, E>>`, which resolves to
//! `kt::Result<Result<T, E>>`: the outer layer says whether the call itself went
//! through, the inner one is the method's own typed answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_util::future::JoinAll;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::ordered::Accepted;
use crate::reply::KeptReply;
use crate::route::{AwaitedReply, EncodedRoute};

/// The pending reply of one call. Await it for the result, or drop it (or call
/// [`Call::forget`]) to let the call run without waiting.
#[must_use = "the call is already sent; await the Call for its reply, or call .forget() to say you do not need it"]
pub struct Call<T> {
    state: State<T>,
    accepted: Accepted,
    /// How an encoded reply becomes a `T`, when not as a plain `T` (a vector of numbers
    /// that travels raw, say: [`codec::raw`]).
    decode: Option<DecodeReply<T>>,
}

/// Decodes the encoded reply of method `method` (see [`Call::decoding_with`]).
pub type DecodeReply<T> = fn(&KeptReply, &'static str) -> Result<T>;

enum State<T> {
    Failed(Option<Error>),
    Local {
        rx: oneshot::Receiver<Result<T>>,
        route: Arc<dyn EncodedRoute>,
    },
    Encoded {
        rx: oneshot::Receiver<bytes::Bytes>,
        route: Arc<dyn EncodedRoute>,
        method: &'static str,
    },
    /// The route keeps the reply under this call id.
    Kept {
        call: u64,
        route: Arc<dyn EncodedRoute>,
        method: &'static str,
    },
    Done,
}

impl<T> Call<T> {
    /// A call that failed before it could be sent.
    pub fn failed(error: Error) -> Self {
        Call {
            state: State::Failed(Some(error)),
            accepted: Accepted::Now,
            decode: None,
        }
    }

    pub(crate) fn local(
        rx: oneshot::Receiver<Result<T>>,
        route: Arc<dyn EncodedRoute>,
        accepted: Accepted,
    ) -> Self {
        Call {
            state: State::Local { rx, route },
            accepted,
            decode: None,
        }
    }

    pub(crate) fn encoded(
        rx: oneshot::Receiver<bytes::Bytes>,
        route: Arc<dyn EncodedRoute>,
        method: &'static str,
        accepted: Accepted,
    ) -> Self {
        Call {
            state: State::Encoded { rx, route, method },
            accepted,
            decode: None,
        }
    }

    /// A call sent with [`EncodedRoute::send_awaited`].
    pub(crate) fn awaited(
        awaited: AwaitedReply,
        route: &Arc<dyn EncodedRoute>,
        method: &'static str,
        accepted: Accepted,
    ) -> Self {
        let state = match awaited {
            AwaitedReply::Channel(rx) => State::Encoded {
                rx,
                route: route.clone(),
                method,
            },
            AwaitedReply::Kept(call) => State::Kept {
                call,
                route: route.clone(),
                method,
            },
            AwaitedReply::Refused(error) => State::Failed(Some(*error)),
        };
        Call {
            state,
            accepted,
            decode: None,
        }
    }

    /// Decodes the reply with `decode` rather than as a plain `T`: the code
    /// `#[kt::actor]` generates for a method whose reply travels in another form.
    #[doc(hidden)]
    pub fn decoding_with(mut self, decode: DecodeReply<T>) -> Self {
        self.decode = Some(decode);
        self
    }

    /// Waits until the call is in the actor's mailbox: at once, unless the mailbox was
    /// full when the call was made (rule B1). Await it in a fire-and-forget producer to be
    /// slowed to the actor's pace; the reply can still be awaited afterwards.
    pub async fn sent(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.accepted, Accepted::Now)
            .admitted()
            .await
        {
            return Ok(());
        }
        match &self.state {
            State::Local { route, .. }
            | State::Encoded { route, .. }
            | State::Kept { route, .. } => Err(route.gone()),
            State::Failed(_) | State::Done => Ok(()),
        }
    }

    /// Lets the call run without waiting for its reply (fire and forget). The call is
    /// already in the actor's mailbox (or parked in order behind a full one).
    pub fn forget(self) {}
}

impl<T: DeserializeOwned> Future for Call<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let with = self.decode;
        let result = match &mut self.state {
            State::Failed(error) => Err(error.take().unwrap_or(Error::NoRuntime)),
            State::Local { rx, route } => match ready!(Pin::new(rx).poll(cx)) {
                Ok(result) => result,
                // The reply slot was dropped unanswered: the actor was killed or its
                // runtime shut down while the call waited.
                Err(_) => Err(route.gone()),
            },
            State::Encoded { rx, route, method } => match ready!(Pin::new(rx).poll(cx)) {
                Ok(bytes) => decode(with, &KeptReply::Shared(bytes), method),
                Err(_) => Err(route.gone()),
            },
            State::Kept {
                call,
                route,
                method,
            } => match ready!(route.poll_kept(*call, cx)) {
                Some(kept) => decode(with, &kept, method),
                None => Err(route.gone()),
            },
            State::Done => panic!("Call polled after it completed"),
        };
        self.state = State::Done;
        Poll::Ready(result)
    }
}

impl<T> Drop for Call<T> {
    fn drop(&mut self) {
        // Nobody will collect a reply the route keeps: it drops it when it comes.
        if let State::Kept { call, route, .. } = &self.state {
            route.forget_kept(*call);
        }
    }
}

fn decode<T: DeserializeOwned>(
    with: Option<DecodeReply<T>>,
    kept: &KeptReply,
    method: &'static str,
) -> Result<T> {
    match with {
        Some(decode) => decode(kept, method),
        None => kept.decode(format_args!("the reply of `{method}`")),
    }
}

/// The pending replies of a call broadcast to every member of a group; resolves to the
/// members' results in rank order, or to the error of the lowest-ranked member that failed
/// (after every member has answered, so no call is left running unobserved).
#[must_use = "the calls are already sent; await the GroupCall for the replies"]
pub struct GroupCall<T: DeserializeOwned> {
    calls: JoinAll<Call<T>>,
}

impl<T: DeserializeOwned> GroupCall<T> {
    pub(crate) fn new(calls: Vec<Call<T>>) -> Self {
        GroupCall {
            calls: futures_util::future::join_all(calls),
        }
    }

    /// Every member's own outcome, in rank order, where awaiting the `GroupCall` itself
    /// gives the first failure: what a driver reads to learn which members died
    /// (`Err(Error::ActorDied)`) and which answered.
    pub fn each(self) -> impl Future<Output = Vec<Result<T>>> + Send + 'static
    where
        T: Send + 'static,
    {
        self.calls
    }
}

impl<T: DeserializeOwned> Future for GroupCall<T> {
    type Output = Result<Vec<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Vec<T>>> {
        let results = ready!(Pin::new(&mut self.calls).poll(cx));
        Poll::Ready(results.into_iter().collect())
    }
}
