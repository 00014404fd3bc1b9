//! Groups: N actors of one type spawned together, each knowing its rank and the group's
//! size — the in-process shape of SPMD trainer groups and rollout replica pools.
//!
//! `group.all().method(args)` sends the call to every member (arguments encoded once)
//! and resolves to the results in rank order; `group.any().method(args)` sends it to one
//! member, round robin.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::actor::{Actor, GroupHandle};
use crate::actor_ref::ActorRef;
use crate::call::{Call, GroupCall};
use crate::codec;
use crate::error::{Error, Result};
use crate::options::{GroupMember, Lifetime, SpawnOptions, spawn_option_setters};
use crate::placement::{Placement, SpawnArgs, SpawnRequest, default_placement};
use crate::registry::ActorType;

/// The members of a group, in rank order; what generated broadcast methods send through.
pub struct GroupMembers<A: Actor> {
    members: Vec<ActorRef<A>>,
    next: AtomicUsize,
}

impl<A: Actor> GroupMembers<A> {
    /// Sends `method(args)` to every member, encoding the arguments once.
    pub fn broadcast<Args, T>(&self, method: &'static str, args: &Args) -> GroupCall<T>
    where
        Args: Serialize,
        T: DeserializeOwned,
    {
        self.broadcast_decoded(method, args, None)
    }

    /// [`broadcast`](Self::broadcast), each reply decoded with `decode` (the code
    /// `#[kt::actor]` generates for a method whose reply travels in another form).
    #[doc(hidden)]
    pub fn broadcast_decoded<Args, T>(
        &self,
        method: &'static str,
        args: &Args,
        decode: Option<crate::call::DecodeReply<T>>,
    ) -> GroupCall<T>
    where
        Args: Serialize,
        T: DeserializeOwned,
    {
        let what = format_args!("arguments of `{}::{method}`", A::TYPE_NAME);
        let calls = match codec::encode(args, what) {
            // Encoded once; every member's call shares the same bytes.
            Ok(payload) => {
                let payload = bytes::Bytes::from(payload);
                self.members
                    .iter()
                    .map(|m| {
                        let call = m.raw().call_encoded(method, payload.clone());
                        match decode {
                            Some(decode) => call.decoding_with(decode),
                            None => call,
                        }
                    })
                    .collect()
            }
            Err(error) => vec![Call::failed(error)],
        };
        GroupCall::new(calls)
    }

    fn next_member(&self) -> &ActorRef<A> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.members.len();
        &self.members[index]
    }
}

/// A group of actors of one type. Created by the generated `A::spawn_group(size, args...)`.
pub struct ActorGroup<A: Actor> {
    handle: A::GroupHandle,
}

impl<A: Actor> ActorGroup<A> {
    fn new(members: Vec<ActorRef<A>>) -> Self {
        ActorGroup {
            handle: A::GroupHandle::from_members(GroupMembers {
                members,
                next: AtomicUsize::new(0),
            }),
        }
    }

    /// A group of existing actors, in the order given: `all()` broadcasts to them and
    /// `any()` picks among them. This is how a driver reforms a group after a death:
    /// `ActorGroup::from_members(group.survivors())`. A member's own `ctx.group()` still
    /// says the rank and size it was spawned with; tell members their new place in the
    /// group yourself (a collective hub made for the new members does:
    /// `kt_gpu::HostCollectives::join`). Empty `members` is an
    /// [`Error::InvalidOptions`].
    pub fn from_members(members: Vec<ActorRef<A>>) -> Result<Self> {
        match members.is_empty() {
            true => Err(Error::invalid_options(format!(
                "a group of `{}` needs at least one member; none was given (are all of them gone?)",
                A::TYPE_NAME
            ))),
            false => Ok(ActorGroup::new(members)),
        }
    }

    /// The members not known to be gone ([`ActorRef::is_alive`]), in rank order: the
    /// handles to reform the group with after a member died.
    pub fn survivors(&self) -> Vec<ActorRef<A>> {
        self.members()
            .iter()
            .filter(|member| member.is_alive())
            .cloned()
            .collect()
    }

    /// Broadcast methods: each call goes to every member; results come back in rank order.
    pub fn all(&self) -> &A::GroupHandle {
        &self.handle
    }

    /// One member, chosen round robin: call a method on it to send the call to one replica.
    pub fn any(&self) -> &ActorRef<A> {
        self.handle.members().next_member()
    }

    /// The member of this rank.
    pub fn member(&self, rank: usize) -> Option<&ActorRef<A>> {
        self.handle.members().members.get(rank)
    }

    /// All members, in rank order.
    pub fn members(&self) -> &[ActorRef<A>] {
        &self.handle.members().members
    }

    /// How many members the group has.
    pub fn len(&self) -> usize {
        self.handle.members().members.len()
    }

    /// True for a group of no members (never produced by a spawn).
    pub fn is_empty(&self) -> bool {
        self.handle.members().members.is_empty()
    }

    /// Kills every member.
    pub fn kill(&self) {
        self.members().iter().for_each(ActorRef::kill);
    }
}

/// A group spawn being prepared: `.await` it for the [`ActorGroup`].
#[must_use = "a SpawnGroup does nothing until it is awaited"]
pub struct SpawnGroup<A: Actor> {
    size: usize,
    args: A::Args,
    options: SpawnOptions,
    placement: Option<Arc<dyn Placement>>,
}

impl<A: Actor> SpawnGroup<A> {
    /// A spawn of `size` members of `A`, each built with the arguments `args`.
    pub fn new(size: usize, args: A::Args) -> Self {
        SpawnGroup {
            size,
            args,
            options: SpawnOptions::default(),
            placement: None,
        }
    }

    spawn_option_setters!();

    async fn run(self) -> Result<ActorGroup<A>> {
        if self.size == 0 {
            return Err(Error::invalid_options("a group needs at least one member"));
        }
        self.options.validate()?;
        let placement = self.placement.unwrap_or_else(default_placement);
        let what = format!("the constructor arguments of `{}`", A::TYPE_NAME);
        static NEXT_GROUP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let group_name = self.options.name.clone().unwrap_or_else(|| {
            let short = A::TYPE_NAME.rsplit("::").next().unwrap_or(A::TYPE_NAME);
            let n = NEXT_GROUP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{}-group-{n}", short.to_lowercase())
        });
        let args: Arc<[u8]> = codec::encode(&self.args, &what)?.into();
        let spawns = (0..self.size).map(|rank| {
            let mut options = self.options.clone();
            options.group = Some(GroupMember {
                rank,
                size: self.size,
            });
            options.group_name = Some(group_name.clone());
            options.name = self
                .options
                .name
                .as_ref()
                .map(|name| format!("{name}-{rank}"));
            let request = SpawnRequest {
                actor_type: ActorType::of::<A>(),
                args: SpawnArgs::Encoded(args.clone()),
                options,
            };
            let placement = placement.clone();
            async move { placement.spawn(request).await?.into_ref::<A>() }
        });
        let results = futures_util::future::join_all(spawns).await;
        let mut members = Vec::with_capacity(self.size);
        let mut first_error = None;
        for result in results {
            match result {
                Ok(member) => members.push(member),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            // Owned members stop when dropped; detached ones must be killed explicitly.
            if self.options.lifetime == Lifetime::Detached {
                members.iter().for_each(ActorRef::kill);
            }
            return Err(error);
        }
        Ok(ActorGroup::new(members))
    }
}

impl<A: Actor> IntoFuture for SpawnGroup<A> {
    type Output = Result<ActorGroup<A>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<ActorGroup<A>>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
