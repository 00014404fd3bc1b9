//! A group's host collectives (`kt_gpu::HostCollectives`, the CPU form of the interface
//! NCCL implements on GPUs) between local processes: every member gets the sum and the
//! root's buffer, and when a member's process is killed the survivors' next collective
//! fails with `ActorDied` naming it instead of waiting forever; the survivors then form a
//! smaller group of their own and go on.

mod support;

use std::sync::Arc;

use kt::prelude::*;
use kt_gpu::{CollectiveHub, Collectives, HostCollectives};

#[kt::actor]
pub struct Member {
    group: Option<HostCollectives>,
}

#[kt::actor]
impl Member {
    pub fn new() -> Self {
        Member { group: None }
    }

    /// Joins the group that meets at `hub`, at the rank the hub gives this actor; answers
    /// with it and the group's size.
    pub async fn join(
        &mut self,
        ctx: &Context<Self>,
        hub: ActorRef<CollectiveHub>,
    ) -> Result<(usize, usize), Error> {
        let group = HostCollectives::join(hub, ctx.id()).await?;
        let place = (group.rank(), group.world_size());
        self.group = Some(group);
        Ok(place)
    }

    /// All-reduces `values` with the group's other members.
    pub async fn sum(&mut self, mut values: Vec<f32>) -> Result<Vec<f32>, Error> {
        let group = self.group.as_mut().ok_or(Error::NoRuntime)?;
        group.all_reduce_sum(&mut values).await?;
        Ok(values)
    }

    /// Replaces `values` with the root's.
    pub async fn broadcast(
        &mut self,
        mut values: Vec<f32>,
        root: usize,
    ) -> Result<Vec<f32>, Error> {
        let group = self.group.as_mut().ok_or(Error::NoRuntime)?;
        group.broadcast(&mut values, root).await?;
        Ok(values)
    }

    pub fn pid(&self) -> u32 {
        std::process::id()
    }
}

/// The group and its hub: the hub lives as long as the driver keeps this handle (the
/// members' copies do not own it).
async fn joined_group(size: usize) -> (ActorGroup<Member>, ActorRef<CollectiveHub>) {
    let group = Member::spawn_group(size)
        .on(Arc::new(kt::LocalProcess::new()))
        .await
        .unwrap();
    let hub = CollectiveHub::for_members(group.members()).await.unwrap();
    let places = group.all().join(hub.clone()).await.unwrap();
    for (rank, place) in places.into_iter().enumerate() {
        assert_eq!(place.unwrap(), (rank, size));
    }
    (group, hub)
}

#[kt::test]
async fn every_member_gets_the_sum_and_the_roots_buffer() {
    let (group, _hub) = joined_group(3).await;
    let sums = futures_util::future::join_all(
        (0..3).map(|rank| group.member(rank).unwrap().sum(vec![rank as f32, 1.0, 2.0])),
    )
    .await;
    for sum in sums {
        assert_eq!(sum.unwrap().unwrap(), [3.0, 3.0, 6.0]);
    }
    let replies = futures_util::future::join_all((0..3).map(|rank| {
        group
            .member(rank)
            .unwrap()
            .broadcast(vec![rank as f32; 2], 1)
    }))
    .await;
    for reply in replies {
        assert_eq!(reply.unwrap().unwrap(), [1.0, 1.0]);
    }
}

#[kt::test]
async fn a_killed_member_fails_the_survivors_collective_and_they_go_on_as_a_smaller_group() {
    let (group, _hub) = joined_group(3).await;
    let victim = group.member(2).unwrap();
    let pid = victim.pid().await.unwrap();
    // SAFETY: a plain signal to a child process of this test.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let survivors = futures_util::future::join_all(
        (0..2).map(|rank| group.member(rank).unwrap().sum(vec![1.0])),
    )
    .await;
    for reply in survivors {
        match reply.unwrap() {
            Err(Error::ActorDied { actor, cause }) => {
                assert_eq!(actor.id, victim.id());
                assert_eq!(cause, DeathCause::Signaled { signal: 9 });
            }
            other => panic!("expected ActorDied, got {other:?}"),
        }
    }
    // The survivors reform: a hub of their own, new ranks from it, a world of two.
    let survivors = group.survivors();
    assert_eq!(survivors.len(), 2, "the killed member is known to be gone");
    let hub = CollectiveHub::for_members(&survivors).await.unwrap();
    let smaller = ActorGroup::from_members(survivors).unwrap();
    let places = smaller.all().join(hub.clone()).await.unwrap();
    assert_eq!(
        places.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        [(0, 2), (1, 2)]
    );
    let sums = futures_util::future::join_all(
        (0..2).map(|rank| smaller.member(rank).unwrap().sum(vec![1.0, rank as f32])),
    )
    .await;
    for sum in sums {
        assert_eq!(sum.unwrap().unwrap(), [2.0, 1.0]);
    }
}

#[kt::test]
async fn an_actor_outside_the_hubs_members_cannot_join() {
    let (group, _hub) = joined_group(2).await;
    let other_hub = CollectiveHub::for_members(&group.members()[..1])
        .await
        .unwrap();
    match group
        .member(1)
        .unwrap()
        .join(other_hub.clone())
        .await
        .unwrap()
    {
        Err(Error::CollectiveMismatch { message, .. }) => {
            assert!(message.contains("is not one of the 1 members"), "{message}")
        }
        other => panic!("expected CollectiveMismatch, got {other:?}"),
    }
}
