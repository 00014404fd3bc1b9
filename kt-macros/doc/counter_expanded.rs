// What #[kt::actor] generates for doc/counter_input.rs (kept true by a test).
pub struct Counter {
    value: u64,
}
#[diagnostic::do_not_recommend]
impl ::kt::__private::ActorStruct for Counter {
    const TYPE_NAME: &'static str = ::core::concat!(::core::module_path!(), "::", "Counter");
}
const _: () = {
    ::kt::__private::assert_wire::<u64>();
};
#[allow(clippy::new_without_default)]
impl Counter {
    pub fn new(start: u64) -> Self {
        Counter { value: start }
    }
    #[doc = " Adds `n` and returns the new value."]
    pub fn add(&mut self, n: u64) -> u64 {
        self.value += n;
        self.value
    }
    pub async fn get(&self) -> u64 {
        self.value
    }
}
#[doc = "The messages of the `Counter` actor: one variant per public method, with its reply slot."]
#[allow(dead_code)]
pub enum CounterMessage {
    #[doc = "A call of `Counter::add`."]
    Add(u64, ::kt::__private::Reply<u64>),
    #[doc = "A call of `Counter::get`."]
    Get(::kt::__private::Reply<u64>),
}
impl ::kt::__private::Message for CounterMessage {
    fn info(&self) -> &'static ::kt::__private::MethodInfo {
        match self {
            Self::Add(..) => &::kt::__private::MethodInfo {
                name: "add",
                shared: false,
                idempotent: false,
            },
            Self::Get(..) => &::kt::__private::MethodInfo {
                name: "get",
                shared: true,
                idempotent: false,
            },
        }
    }
    fn reject(self, error: ::kt::__private::Error) {
        match self {
            Self::Add(.., reply) => reply.send(::core::result::Result::Err(error)),
            Self::Get(.., reply) => reply.send(::core::result::Result::Err(error)),
        }
    }
}
#[doc = "The methods of `ActorRef<Counter>`: each sends its call at once and returns a `Call` future of the reply."]
pub struct CounterHandle(::kt::__private::RawRef<Counter>);
impl ::kt::__private::Handle<Counter> for CounterHandle {
    fn from_raw(raw: ::kt::__private::RawRef<Counter>) -> Self {
        CounterHandle(raw)
    }
    fn raw(&self) -> &::kt::__private::RawRef<Counter> {
        &self.0
    }
}
impl CounterHandle {
    #[doc = " Adds `n` and returns the new value."]
    pub fn add(&self, n: u64) -> ::kt::__private::Call<u64> {
        self.0
            .call("add", (n,), |(n,), reply| CounterMessage::Add(n, reply))
    }
    pub fn get(&self) -> ::kt::__private::Call<u64> {
        self.0
            .call("get", (), |(), reply| CounterMessage::Get(reply))
    }
}
#[doc = "The broadcast methods of a group of `Counter` actors (`group.all()`): each sends the call to every member and resolves to their results in rank order."]
pub struct CounterGroup(::kt::__private::GroupMembers<Counter>);
impl ::kt::__private::GroupHandle<Counter> for CounterGroup {
    fn from_members(members: ::kt::__private::GroupMembers<Counter>) -> Self {
        CounterGroup(members)
    }
    fn members(&self) -> &::kt::__private::GroupMembers<Counter> {
        &self.0
    }
}
impl CounterGroup {
    #[doc = " Adds `n` and returns the new value."]
    pub fn add(&self, n: u64) -> ::kt::__private::GroupCall<u64> {
        self.0.broadcast("add", &(n,))
    }
    pub fn get(&self) -> ::kt::__private::GroupCall<u64> {
        self.0.broadcast("get", &())
    }
}
impl Counter {
    #[doc = "Spawns a `Counter` actor built by `Counter::new` with these arguments. Set options on the returned builder, then `.await` it for the handle."]
    pub fn spawn(start: u64) -> ::kt::__private::Spawn<Counter> {
        ::kt::__private::Spawn::new((start,))
    }
    #[doc = "Spawns a group of `group_size` `Counter` actors, each built by `Counter::new` with these arguments and knowing its rank (`Context::group`). `.await` it for the `ActorGroup`."]
    pub fn spawn_group(group_size: usize, start: u64) -> ::kt::__private::SpawnGroup<Counter> {
        ::kt::__private::SpawnGroup::new(group_size, (start,))
    }
}
impl ::kt::__private::Actor for Counter {
    const TYPE_NAME: &'static str = <Counter as ::kt::__private::ActorStruct>::TYPE_NAME;
    const METHODS: &'static [::kt::__private::MethodInfo] = &[
        ::kt::__private::MethodInfo {
            name: "add",
            shared: false,
            idempotent: false,
        },
        ::kt::__private::MethodInfo {
            name: "get",
            shared: true,
            idempotent: false,
        },
    ];
    type Args = (u64,);
    type Message = CounterMessage;
    type Handle = CounterHandle;
    type GroupHandle = CounterGroup;
    fn construct(
        args: Self::Args,
    ) -> impl ::core::future::Future<Output = ::core::result::Result<Self, ::std::string::String>>
    + ::core::marker::Send {
        async move {
            let (start,) = args;
            ::core::result::Result::Ok(Counter::new(start))
        }
    }
    fn on_start(
        &mut self,
        ctx: &::kt::__private::Context<Self>,
    ) -> impl ::core::future::Future<Output = ::core::result::Result<(), ::std::string::String>>
    + ::core::marker::Send {
        async move {
            let _ = ctx;
            ::core::result::Result::Ok(())
        }
    }
    fn on_stop(
        &mut self,
        ctx: &::kt::__private::Context<Self>,
        cause: &::kt::__private::DeathCause,
    ) -> impl ::core::future::Future<Output = ()> + ::core::marker::Send {
        async move {
            let _ = (&ctx, &cause);
        }
    }
    fn handle(
        &mut self,
        msg: Self::Message,
        ctx: &::kt::__private::Context<Self>,
    ) -> impl ::core::future::Future<Output = ::kt::__private::Outcome> + ::core::marker::Send {
        async move {
            let _ = &ctx;
            match msg {
                CounterMessage::Add(n, reply) => {
                    ::kt::__private::run_sync(ctx, "add", reply, || self.add(n))
                }
                CounterMessage::Get(reply) => {
                    ::kt::__private::run_async(ctx, "get", reply, self.get()).await
                }
            }
        }
    }
    fn handle_shared(
        &self,
        msg: Self::Message,
        ctx: &::kt::__private::Context<Self>,
    ) -> impl ::core::future::Future<Output = ::kt::__private::Outcome> + ::core::marker::Send {
        async move {
            let _ = &ctx;
            match msg {
                CounterMessage::Add(.., reply) => ::kt::__private::misrouted(ctx, "add", reply),
                CounterMessage::Get(reply) => {
                    ::kt::__private::run_async(ctx, "get", reply, self.get()).await
                }
            }
        }
    }
    fn decode_message(
        method: &str,
        payload: &[u8],
        reply: ::kt::__private::EncodedReply,
    ) -> ::core::result::Result<
        Self::Message,
        (::kt::__private::Error, ::kt::__private::EncodedReply),
    > {
        match method {
            "add" => {
                let ((n,), reply) = ::kt::__private::decode_args::<(u64,)>(
                    <Counter as ::kt::__private::ActorStruct>::TYPE_NAME,
                    method,
                    payload,
                    reply,
                )?;
                ::core::result::Result::Ok(CounterMessage::Add(
                    n,
                    ::kt::__private::Reply::encoded(reply),
                ))
            }
            "get" => {
                let ((), reply) = ::kt::__private::decode_args::<()>(
                    <Counter as ::kt::__private::ActorStruct>::TYPE_NAME,
                    method,
                    payload,
                    reply,
                )?;
                ::core::result::Result::Ok(CounterMessage::Get(::kt::__private::Reply::encoded(
                    reply,
                )))
            }
            _ => ::core::result::Result::Err(::kt::__private::unknown_method(
                <Counter as ::kt::__private::ActorStruct>::TYPE_NAME,
                method,
                reply,
            )),
        }
    }
}
::kt::__private::inventory::submit! { :: kt :: __private :: ActorType :: of :: < Counter > () }
