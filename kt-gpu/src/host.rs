//! [`HostCollectives`]: the [`Collectives`] of a group of actors on host memory, over kt
//! calls — what group code runs on without GPUs (and in CI).
//!
//! Every member sends its buffer to one [`CollectiveHub`] (an actor in the driver) and
//! gets the result back: a star, not a ring, so the hub moves `2 × world size × buffer`
//! bytes per collective. That suits the small models of tests, examples and CPU training
//! loops; GPU groups use NCCL ([`Communicator`](crate::Communicator)).
//!
//! A collective never hangs on a dead member: the hub watches the worker processes of the
//! members it was given, and when one is gone every waiting and later collective of the
//! group fails with [`Error::ActorDied`] naming it. To go on, the driver makes a hub for the
//! survivors (`CollectiveHub::for_members(&group.survivors())`) and each survivor joins it
//! with [`HostCollectives::join`], which gives it its rank in the smaller group. A member
//! that simply never calls is caught by the timeout ([`Error::Timeout`]).
//!
//! ```no_run
//! use kt_gpu::{CollectiveHub, Collectives, HostCollectives};
//!
//! async fn driver<A: kt_core::Actor>(trainers: &kt_core::ActorGroup<A>) -> kt_core::Result<()> {
//!     // A hub for the group; hand `hub` to every member (handles travel in calls).
//!     let hub = CollectiveHub::for_members(trainers.members()).await?;
//!     # let _ = hub;
//!     Ok(())
//! }
//!
//! // In member `rank` of `world_size`, inside a training step:
//! async fn step(hub: kt_core::ActorRef<CollectiveHub>, rank: usize, world_size: usize) -> kt_core::Result<()> {
//!     let mut group = HostCollectives::new(hub, rank, world_size);
//!     let mut gradients = vec![0.5f32; 1024];
//!     group.all_reduce_sum(&mut gradients).await?; // every member now holds the sum
//!     Ok(())
//! }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use kt_core::{ActorLabel, ActorRef, DeathCause, Error, InProcess};
use tokio::sync::oneshot;

use crate::collectives::{CollectiveFuture, Collectives};

/// How long a member waits for the others by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// One pending collective of the hub.
struct Round {
    /// `None` for a sum; `Some(root)` for a broadcast from `root`.
    root: Option<usize>,
    /// The sum so far, or the root's buffer once it came.
    values: Option<Vec<f32>>,
    /// Which ranks have contributed.
    arrived: Vec<bool>,
    waiters: Vec<oneshot::Sender<Result<Vec<f32>, Error>>>,
}

/// What the hub knows, shared with the hook that hears of dead workers.
struct HubState {
    world_size: usize,
    /// Each member's worker node (as its handles name it) and label.
    members: Vec<(String, ActorLabel)>,
    rounds: HashMap<u64, Round>,
    /// Set once a member is gone: every collective fails with it.
    failed: Option<Error>,
}

impl HubState {
    fn fail(&mut self, error: Error) {
        for (_, round) in self.rounds.drain() {
            for waiter in round.waiters {
                let _ = waiter.send(Err(error.clone()));
            }
        }
        self.failed.get_or_insert(error);
    }
}

fn lock(state: &Mutex<HubState>) -> MutexGuard<'_, HubState> {
    state.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Every hub of this process, for the dead-worker hook.
fn hubs() -> &'static Mutex<Vec<Weak<Mutex<HubState>>>> {
    static HUBS: OnceLock<Mutex<Vec<Weak<Mutex<HubState>>>>> = OnceLock::new();
    HUBS.get_or_init(Default::default)
}

/// A worker this driver supervised is gone: the groups it was a member of fail.
fn worker_gone(node: &str, cause: &DeathCause) {
    let mut hubs = hubs().lock().unwrap_or_else(|poison| poison.into_inner());
    hubs.retain(|hub| hub.strong_count() > 0);
    for hub in hubs.iter().filter_map(Weak::upgrade) {
        let mut state = lock(&hub);
        let gone = state
            .members
            .iter()
            .find(|(member, _)| member == node)
            .cloned();
        if let Some((_, actor)) = gone {
            state.fail(Error::ActorDied {
                actor,
                cause: cause.clone(),
            });
        }
    }
}

inventory::submit! {
    kt_transport::worker::WorkerGone { notify: worker_gone }
}

/// The meeting point of one group's [`HostCollectives`]: an actor (in the driver, made by
/// [`CollectiveHub::for_members`]) that every member calls with its buffer.
#[kt_macros::actor(name = "kt.gpu.CollectiveHub")]
pub struct CollectiveHub {
    state: Arc<Mutex<HubState>>,
}

#[kt_macros::actor]
impl CollectiveHub {
    /// A hub for `world_size` members whose workers are `members` (their node addresses
    /// and labels; empty: do not watch).
    pub fn new(world_size: usize, members: Vec<(String, ActorLabel)>) -> Self {
        let state = Arc::new(Mutex::new(HubState {
            world_size,
            members,
            rounds: HashMap::new(),
            failed: None,
        }));
        let mut hubs = hubs().lock().unwrap_or_else(|poison| poison.into_inner());
        hubs.retain(|hub| hub.strong_count() > 0);
        hubs.push(Arc::downgrade(&state));
        drop(hubs);
        CollectiveHub { state }
    }

    /// Member `rank`'s part of collective `round`: a sum (`root` `None`) or a broadcast
    /// from `root`. Answers with the result once every member's part is in.
    pub async fn contribute(
        &self,
        round: u64,
        rank: usize,
        root: Option<usize>,
        values: Vec<f32>,
    ) -> Result<Vec<f32>, Error> {
        let waiting = self.join(round, rank, root, values)?;
        waiting.await.unwrap_or_else(|_| {
            Err(Error::Protocol {
                message: format!("collective round {round} was dropped unanswered"),
            })
        })
    }

    /// The rank of the member whose actor id is `actor` (its place in the members this
    /// hub was made for) and the group's size: how a member learns its place in a group
    /// reformed after a death ([`HostCollectives::join`]).
    pub fn place_of(&self, actor: u64) -> Result<(usize, usize), Error> {
        let state = lock(&self.state);
        let rank = state
            .members
            .iter()
            .position(|(_, label)| label.id == actor);
        rank.map(|rank| (rank, state.world_size))
            .ok_or_else(|| Error::CollectiveMismatch {
                operation: "joining a group's collectives".into(),
                message: format!(
                    "actor {actor} is not one of the {} members this hub was made for; make \
                     the hub with CollectiveHub::for_members of the group it joins",
                    state.members.len()
                ),
            })
    }

    /// Fails every waiting and later collective of the group with `error`.
    pub fn abort(&self, error: Error) {
        lock(&self.state).fail(error);
    }

    fn join(
        &self,
        round: u64,
        rank: usize,
        root: Option<usize>,
        values: Vec<f32>,
    ) -> Result<oneshot::Receiver<Result<Vec<f32>, Error>>, Error> {
        let mut state = lock(&self.state);
        if let Some(error) = &state.failed {
            return Err(error.clone());
        }
        let world_size = state.world_size;
        let mismatch = |message: String| Error::CollectiveMismatch {
            operation: format!("collective {round} of the group"),
            message,
        };
        if rank >= world_size || root.is_some_and(|root| root >= world_size) {
            return Err(mismatch(format!(
                "rank {rank} (root {root:?}) is outside a group of {world_size}"
            )));
        }
        let entry = state.rounds.entry(round).or_insert_with(|| Round {
            root,
            values: None,
            arrived: vec![false; world_size],
            waiters: Vec::new(),
        });
        let problem = if entry.root != root {
            let kind = |root: Option<usize>| match root {
                None => "an all-reduce".to_string(),
                Some(root) => format!("a broadcast from rank {root}"),
            };
            Some(format!(
                "rank {rank} asked for {}, an earlier member for {}",
                kind(root),
                kind(entry.root)
            ))
        } else if entry.arrived[rank] {
            Some(format!("rank {rank} contributed twice"))
        } else {
            match (&mut entry.values, root) {
                (Some(sum), None) if sum.len() != values.len() => Some(format!(
                    "rank {rank} gave {} values where others gave {}",
                    values.len(),
                    sum.len()
                )),
                (Some(sum), None) => {
                    sum.iter_mut().zip(&values).for_each(|(s, v)| *s += v);
                    None
                }
                (None, None) => {
                    entry.values = Some(values);
                    None
                }
                (_, Some(root)) if root == rank => {
                    entry.values = Some(values);
                    None
                }
                (_, Some(_)) => None,
            }
        };
        if let Some(problem) = problem {
            let error = mismatch(problem);
            state.fail(error.clone());
            return Err(error);
        }
        entry.arrived[rank] = true;
        let (tx, rx) = oneshot::channel();
        entry.waiters.push(tx);
        if entry.arrived.iter().all(|a| *a)
            && let Some(done) = state.rounds.remove(&round)
        {
            let result = done.values.unwrap_or_default();
            for waiter in done.waiters {
                let _ = waiter.send(Ok(result.clone()));
            }
        }
        Ok(rx)
    }
}

impl CollectiveHub {
    /// Starts a hub in this process for a group whose members are `members` (rank order),
    /// watching their worker processes. The hub lives as long as the returned handle (the
    /// copies handed to members do not own it): keep it while the group trains.
    pub async fn for_members<A: kt_core::Actor>(
        members: &[ActorRef<A>],
    ) -> Result<ActorRef<CollectiveHub>, Error> {
        let mut watched = Vec::with_capacity(members.len());
        for member in members {
            let address = kt_core::handle_wire::address_of(&member.raw().erase())?;
            watched.push((address.node, address.label));
        }
        CollectiveHub::spawn(members.len(), watched)
            .on(Arc::new(InProcess))
            // Every member waits in its `contribute` at once; one more for an `abort`.
            .max_concurrency(members.len() + 1)
            .await
    }
}

/// One member's side of a group's host collectives: [`Collectives`] on `[f32]`, through
/// a [`CollectiveHub`].
pub struct HostCollectives {
    hub: ActorRef<CollectiveHub>,
    rank: usize,
    world_size: usize,
    /// The next collective's number: every member counts the same.
    round: u64,
    timeout: Duration,
}

impl HostCollectives {
    /// Member `rank` of a group of `world_size` that meets at `hub`.
    pub fn new(hub: ActorRef<CollectiveHub>, rank: usize, world_size: usize) -> Self {
        HostCollectives {
            hub,
            rank,
            world_size,
            round: 0,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The collectives of the actor whose id is `actor` (`ctx.id()` inside it) in the
    /// group that meets at `hub`, at the rank the hub gives it: a member of a group
    /// reformed with [`ActorGroup::from_members`](kt_core::ActorGroup::from_members)
    /// learns its new rank and world size here, since its `ctx.group()` still says the
    /// ones it was spawned with.
    pub async fn join(hub: ActorRef<CollectiveHub>, actor: u64) -> Result<Self, Error> {
        let (rank, world_size) = hub.place_of(actor).await??;
        Ok(HostCollectives::new(hub, rank, world_size))
    }

    /// How long a collective waits for the other members before it fails with
    /// [`Error::Timeout`] (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn run(&mut self, buffer: &mut [f32], root: Option<usize>) -> Result<(), Error> {
        let round = self.round;
        self.round += 1;
        let values = match root {
            Some(root) if root != self.rank => Vec::new(),
            _ => buffer.to_vec(),
        };
        let call = self.hub.contribute(round, self.rank, root, values);
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(reply) => reply??,
            Err(_) => {
                return Err(Error::Timeout {
                    operation: format!(
                        "collective {round} of rank {} in a group of {}",
                        self.rank, self.world_size
                    ),
                    waited_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                    advice: "a member did not join it: check that every member runs the same \
                             collectives in the same order, or raise HostCollectives::timeout"
                        .into(),
                });
            }
        };
        if result.len() != buffer.len() {
            return Err(Error::CollectiveMismatch {
                operation: format!("collective {round} of rank {}", self.rank),
                message: format!(
                    "the result has {} values, this member's buffer {}",
                    result.len(),
                    buffer.len()
                ),
            });
        }
        buffer.copy_from_slice(&result);
        Ok(())
    }
}

impl Collectives for HostCollectives {
    type Buffer = [f32];

    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn all_reduce_sum<'a>(&'a mut self, buffer: &'a mut [f32]) -> CollectiveFuture<'a> {
        Box::pin(self.run(buffer, None))
    }

    fn broadcast<'a>(&'a mut self, buffer: &'a mut [f32], root: usize) -> CollectiveFuture<'a> {
        Box::pin(self.run(buffer, Some(root)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn hub(world_size: usize) -> ActorRef<CollectiveHub> {
        CollectiveHub::spawn(world_size, Vec::new())
            .on(Arc::new(InProcess))
            .max_concurrency(16)
            .await
            .expect("hub")
    }

    #[tokio::test]
    async fn members_get_the_sum_and_the_roots_buffer() {
        let hub = hub(3).await;
        let tasks: Vec<_> = (0..3)
            .map(|rank| {
                let hub = hub.clone();
                tokio::spawn(async move {
                    let mut group = HostCollectives::new(hub, rank, 3);
                    let mut sum = vec![rank as f32, 1.0];
                    group.all_reduce_sum(&mut sum).await.expect("sum");
                    let mut root = vec![rank as f32 * 10.0; 2];
                    group.broadcast(&mut root, 2).await.expect("broadcast");
                    (sum, root)
                })
            })
            .collect();
        for task in tasks {
            let (sum, root) = task.await.expect("task");
            assert_eq!(sum, [3.0, 3.0]);
            assert_eq!(root, [20.0, 20.0]);
        }
    }

    #[tokio::test]
    async fn mismatched_members_fail_the_group_instead_of_waiting() {
        let hub = hub(2).await;
        let members: Vec<_> = [vec![1.0, 2.0], vec![1.0]]
            .into_iter()
            .enumerate()
            .map(|(rank, mut buffer)| {
                let mut member = HostCollectives::new(hub.clone(), rank, 2);
                tokio::spawn(async move { member.all_reduce_sum(&mut buffer).await })
            })
            .collect();
        // Whichever came second finds the mismatch; the first is failed with it.
        for member in members {
            match member.await.expect("task") {
                Err(Error::CollectiveMismatch { message, .. }) => {
                    assert!(message.contains("values where others gave"), "{message}")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // The group is done for: a later collective fails at once.
        let mut late = HostCollectives::new(hub, 0, 2);
        assert!(late.broadcast(&mut [0.0], 1).await.is_err());
    }

    #[tokio::test]
    async fn an_aborted_group_fails_its_waiting_member_and_a_silent_one_times_out() {
        let hub = hub(2).await;
        let mut a = HostCollectives::new(hub.clone(), 0, 2).timeout(Duration::from_millis(50));
        let error = a.all_reduce_sum(&mut [1.0]).await.expect_err("nobody else");
        assert!(matches!(error, Error::Timeout { .. }), "{error}");

        let hub = self::hub(2).await;
        let mut a = HostCollectives::new(hub.clone(), 0, 2);
        let waiting = tokio::spawn(async move { a.all_reduce_sum(&mut [1.0]).await });
        let gone = ActorLabel {
            id: 9,
            type_name: "t::Trainer".into(),
            name: None,
        };
        hub.abort(Error::ActorDied {
            actor: gone,
            cause: DeathCause::Signaled { signal: 9 },
        })
        .await
        .expect("abort");
        let error = waiting.await.expect("task").expect_err("aborted");
        assert!(error.is_actor_gone(), "{error}");
    }
}
