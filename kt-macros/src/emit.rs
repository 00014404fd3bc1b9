//! From the [`crate::model`] to Rust code. Everything generated reaches kt through
//! `::kt::__private`, so users need no other dependency.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::{ActorImpl, ActorStruct, Hook, Method, Param, Receiver};
use crate::wire_form::{Form, form};

/// The struct, unchanged, plus the impl that names it.
pub fn actor_struct(actor: &ActorStruct) -> TokenStream {
    let item = &actor.item;
    let ident = &item.ident;
    let type_name = match &actor.type_name {
        Some((name, span)) => quote_spanned!(*span=> #name),
        None => {
            let ident_str = ident.to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #ident_str))
        }
    };
    quote! {
        #item

        // Not offered as a hint when another type lacks the impl: the hint would name
        // whichever actor happens to be linked, not the fix.
        #[diagnostic::do_not_recommend]
        impl ::kt::__private::ActorStruct for #ident {
            const TYPE_NAME: &'static str = #type_name;
        }
    }
}

/// Everything the impl block generates.
pub fn actor_impl(actor: &ActorImpl) -> TokenStream {
    let item = &actor.item;
    let message_enum = message_enum(actor);
    let handle = handle_type(actor);
    let group = group_type(actor);
    let spawn_fns = spawn_fns(actor);
    let actor_trait = actor_trait(actor);
    let wire_checks = wire_checks(actor);
    let ident = &actor.self_ident;
    // The wire checks come first so that their targeted errors are the first ones shown.
    quote! {
        #wire_checks
        #item
        #message_enum
        #handle
        #group
        #spawn_fns
        #actor_trait
        ::kt::__private::inventory::submit! {
            ::kt::__private::ActorType::of::<#ident>()
        }
    }
}

fn message_ident(actor: &ActorImpl) -> syn::Ident {
    format_ident!("{}Message", actor.self_ident)
}

/// The `MethodInfo` literal describing one method.
fn method_info(method: &Method) -> TokenStream {
    let name = method.ident.to_string();
    let shared = method.receiver == Receiver::Shared;
    let idempotent = method.idempotent;
    quote! {
        ::kt::__private::MethodInfo { name: #name, shared: #shared, idempotent: #idempotent }
    }
}

fn variant_ident(method: &Method) -> syn::Ident {
    let camel: String = method
        .ident
        .to_string()
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    format_ident!("{}", camel, span = method.ident.span())
}

fn arg_idents(method: &Method) -> Vec<&syn::Ident> {
    method.args().map(|a| &a.ident).collect()
}

fn arg_types(method: &Method) -> Vec<&syn::Type> {
    method.args().map(|a| &a.ty).collect()
}

fn message_enum(actor: &ActorImpl) -> TokenStream {
    let ident = &actor.self_ident;
    let message = message_ident(actor);
    let doc = format!(
        "The messages of the `{ident}` actor: one variant per public method, with its reply slot."
    );
    let variants = actor.methods.iter().map(|m| {
        let variant = variant_ident(m);
        let types = arg_types(m);
        let output = &m.output;
        let doc = format!("A call of `{}::{}`.", ident, m.ident);
        quote! { #[doc = #doc] #variant(#(#types,)* ::kt::__private::Reply<#output>) }
    });
    let infos = actor.methods.iter().map(|m| {
        let variant = variant_ident(m);
        let info = method_info(m);
        quote! { Self::#variant(..) => { &#info } }
    });
    let rejects = actor.methods.iter().map(|m| {
        let variant = variant_ident(m);
        quote! { Self::#variant(.., reply) => { reply.send(::core::result::Result::Err(error)) } }
    });
    quote! {
        #[doc = #doc]
        #[allow(dead_code)]
        pub enum #message {
            #(#variants,)*
        }

        impl ::kt::__private::Message for #message {
            fn info(&self) -> &'static ::kt::__private::MethodInfo {
                match self { #(#infos)* }
            }

            fn reject(self, error: ::kt::__private::Error) {
                match self { #(#rejects)* }
            }
        }
    }
}

fn handle_type(actor: &ActorImpl) -> TokenStream {
    let ident = &actor.self_ident;
    let handle = format_ident!("{}Handle", ident);
    let message = message_ident(actor);
    let doc = format!(
        "The methods of `ActorRef<{ident}>`: each sends its call at once and returns a `Call` future of the reply."
    );
    let methods = actor.methods.iter().map(|m| {
        let name = m.ident.to_string();
        let variant = variant_ident(m);
        let idents = arg_idents(m);
        let output = &m.output;
        let (wired, unwired) = (args_into_wire(m), args_from_wire(m));
        let decode = match reply_decoder(m) {
            Some(decoder) => quote!(.decoding_with(#decoder)),
            None => quote!(),
        };
        handle_method(m, quote!(::kt::__private::Call<#output>), quote! {
            self.0.call(#name, (#(#wired,)*), |(#(#idents,)*), reply| #message::#variant(#(#unwired,)* reply))#decode
        })
    });
    quote! {
        #[doc = #doc]
        pub struct #handle(::kt::__private::RawRef<#ident>);

        impl ::kt::__private::Handle<#ident> for #handle {
            fn from_raw(raw: ::kt::__private::RawRef<#ident>) -> Self {
                #handle(raw)
            }

            fn raw(&self) -> &::kt::__private::RawRef<#ident> {
                &self.0
            }
        }

        impl #handle {
            #(#methods)*
        }
    }
}

/// Each argument as it travels ([`crate::wire_form`]): the argument itself unless it
/// is a vector of numbers.
fn args_into_wire(m: &Method) -> Vec<TokenStream> {
    args_converted(m, Form::to_wire)
}

/// Each argument, named by its identifier but holding its wire form, back as its type.
fn args_from_wire(m: &Method) -> Vec<TokenStream> {
    args_converted(m, Form::back_from_wire)
}

/// Each argument's identifier, converted by `convert` for its type's form.
fn args_converted(m: &Method, convert: fn(&Form, TokenStream) -> TokenStream) -> Vec<TokenStream> {
    m.args()
        .map(|a| {
            let ident = &a.ident;
            convert(&form(&a.ty), quote!(#ident))
        })
        .collect()
}

/// The decoder of a reply that does not travel as the return type itself.
fn reply_decoder(m: &Method) -> Option<TokenStream> {
    let output = &m.output;
    let form = form(output);
    if form.is_plain() {
        return None;
    }
    let wire = form.wire_type(output);
    let back = form.back_from_wire(quote!(__kt_w));
    Some(quote! {
        |kept, method| kept
            .decode::<#wire>(::core::format_args!("the reply of `{}`", method))
            .map(|__kt_w| #back)
    })
}

/// A method of a generated handle type: the actor method's name, docs, visibility and
/// arguments, returning `returns` by running `body`.
fn handle_method(m: &Method, returns: TokenStream, body: TokenStream) -> TokenStream {
    let (method, vis, docs) = (&m.ident, &m.vis, &m.docs);
    let idents = arg_idents(m);
    let types = arg_types(m);
    quote! {
        #(#docs)*
        #vis fn #method(&self, #(#idents: #types),*) -> #returns {
            #body
        }
    }
}

fn group_type(actor: &ActorImpl) -> TokenStream {
    let ident = &actor.self_ident;
    let group = format_ident!("{}Group", ident);
    let doc = format!(
        "The broadcast methods of a group of `{ident}` actors (`group.all()`): each sends the call to \
         every member and resolves to their results in rank order."
    );
    let methods = actor.methods.iter().map(|m| {
        let name = m.ident.to_string();
        let output = &m.output;
        let wired = args_into_wire(m);
        let body = match reply_decoder(m) {
            Some(decoder) => quote! {
                self.0.broadcast_decoded(#name, &(#(#wired,)*), ::core::option::Option::Some(#decoder))
            },
            None => quote! { self.0.broadcast(#name, &(#(#wired,)*)) },
        };
        handle_method(m, quote!(::kt::__private::GroupCall<#output>), body)
    });
    quote! {
        #[doc = #doc]
        pub struct #group(::kt::__private::GroupMembers<#ident>);

        impl ::kt::__private::GroupHandle<#ident> for #group {
            fn from_members(members: ::kt::__private::GroupMembers<#ident>) -> Self {
                #group(members)
            }

            fn members(&self) -> &::kt::__private::GroupMembers<#ident> {
                &self.0
            }
        }

        impl #group {
            #(#methods)*
        }
    }
}

fn spawn_fns(actor: &ActorImpl) -> TokenStream {
    let ident = &actor.self_ident;
    let ctor = &actor.constructor;
    let vis = &ctor.vis;
    let idents: Vec<_> = ctor.args.iter().map(|a| &a.ident).collect();
    let types: Vec<_> = ctor.args.iter().map(|a| &a.ty).collect();
    let size = if idents.iter().any(|i| *i == "group_size") {
        format_ident!("kt_group_size")
    } else {
        format_ident!("group_size")
    };
    let spawn_doc = format!(
        "Spawns a `{ident}` actor built by `{ident}::{}` with these arguments. Set options on the \
         returned builder, then `.await` it for the handle.",
        ctor.ident
    );
    let group_doc = format!(
        "Spawns a group of `{size}` `{ident}` actors, each built by `{ident}::{}` with these arguments \
         and knowing its rank (`Context::group`). `.await` it for the `ActorGroup`.",
        ctor.ident
    );
    quote! {
        impl #ident {
            #[doc = #spawn_doc]
            #vis fn spawn(#(#idents: #types),*) -> ::kt::__private::Spawn<#ident> {
                ::kt::__private::Spawn::new((#(#idents,)*))
            }

            #[doc = #group_doc]
            #vis fn spawn_group(#size: usize, #(#idents: #types),*) -> ::kt::__private::SpawnGroup<#ident> {
                ::kt::__private::SpawnGroup::new(#size, (#(#idents,)*))
            }
        }
    }
}

/// The arguments a hook or method is called with, in the order it declares them.
fn call_args(params: &[Param]) -> Vec<TokenStream> {
    params
        .iter()
        .map(|p| match p {
            Param::Arg(arg) => {
                let ident = &arg.ident;
                quote!(#ident)
            }
            Param::Context => quote!(ctx),
            Param::DeathCause => quote!(cause),
        })
        .collect()
}

fn hook_body(hook: Option<&Hook>) -> TokenStream {
    let Some(hook) = hook else {
        return quote!(::core::result::Result::Ok(()));
    };
    let ident = &hook.ident;
    let args = call_args(&hook.params);
    let call = if hook.is_async {
        quote!(self.#ident(#(#args),*).await)
    } else {
        quote!(self.#ident(#(#args),*))
    };
    if hook.fallible {
        quote!(#call.map_err(::kt::__private::error_text))
    } else {
        quote!({ #call; ::core::result::Result::<(), ::std::string::String>::Ok(()) })
    }
}

fn actor_trait(actor: &ActorImpl) -> TokenStream {
    let ident = &actor.self_ident;
    let message = message_ident(actor);
    let handle = format_ident!("{}Handle", ident);
    let group = format_ident!("{}Group", ident);
    let ctor = &actor.constructor;
    let ctor_ident = &ctor.ident;
    let ctor_args: Vec<_> = ctor.args.iter().map(|a| &a.ident).collect();
    let ctor_types: Vec<_> = ctor.args.iter().map(|a| &a.ty).collect();
    let mut construct = quote!(#ident::#ctor_ident(#(#ctor_args),*));
    if ctor.is_async {
        construct = quote!(#construct.await);
    }
    let construct = if ctor.fallible {
        quote!(#construct.map_err(::kt::__private::error_text))
    } else {
        quote!(::core::result::Result::Ok(#construct))
    };
    let on_start = hook_body(actor.on_start.as_ref());
    let on_stop = match &actor.on_stop {
        Some(hook) => {
            let body = hook_body(Some(hook));
            quote!(let _ = #body;)
        }
        None => quote!(),
    };
    let type_name = quote!(<#ident as ::kt::__private::ActorStruct>::TYPE_NAME);
    let method_infos = actor.methods.iter().map(method_info);

    let exclusive_arms = actor
        .methods
        .iter()
        .map(|m| dispatch_arm(&message, m, true));
    let shared_arms = actor
        .methods
        .iter()
        .map(|m| dispatch_arm(&message, m, false));
    let decode_arms = actor.methods.iter().map(|m| {
        let name = m.ident.to_string();
        let variant = variant_ident(m);
        let idents = arg_idents(m);
        let types = m.args().map(|a| form(&a.ty).wire_type(&a.ty));
        let unwired = args_from_wire(m);
        let output = &m.output;
        let out_form = form(output);
        let reply = match out_form.is_plain() {
            true => quote!(::kt::__private::Reply::encoded(reply)),
            false => {
                let view = out_form.view(quote!(__kt_r));
                quote! {
                    ::kt::__private::Reply::encoded_with(
                        reply,
                        |result: &::kt::__private::Result<#output>, reply: ::kt::__private::EncodedReply| {
                            ::kt::__private::encode_reply_as(result.as_ref().map(|__kt_r| #view), reply)
                        },
                    )
                }
            }
        };
        quote! {
            #name => {
                let ((#(#idents,)*), reply) = ::kt::__private::decode_args::<(#(#types,)*)>(#type_name, method, payload, reply)?;
                ::core::result::Result::Ok(#message::#variant(#(#unwired,)* #reply))
            }
        }
    });
    quote! {
        impl ::kt::__private::Actor for #ident {
            const TYPE_NAME: &'static str = #type_name;
            const METHODS: &'static [::kt::__private::MethodInfo] = &[#(#method_infos),*];
            type Args = (#(#ctor_types,)*);
            type Message = #message;
            type Handle = #handle;
            type GroupHandle = #group;

            fn construct(args: Self::Args) -> impl ::core::future::Future<Output = ::core::result::Result<Self, ::std::string::String>> + ::core::marker::Send {
                async move {
                    let (#(#ctor_args,)*) = args;
                    #construct
                }
            }

            fn on_start(&mut self, ctx: &::kt::__private::Context<Self>) -> impl ::core::future::Future<Output = ::core::result::Result<(), ::std::string::String>> + ::core::marker::Send {
                async move {
                    let _ = ctx;
                    #on_start
                }
            }

            fn on_stop(&mut self, ctx: &::kt::__private::Context<Self>, cause: &::kt::__private::DeathCause) -> impl ::core::future::Future<Output = ()> + ::core::marker::Send {
                async move {
                    let _ = (&ctx, &cause);
                    #on_stop
                }
            }

            fn handle(&mut self, msg: Self::Message, ctx: &::kt::__private::Context<Self>) -> impl ::core::future::Future<Output = ::kt::__private::Outcome> + ::core::marker::Send {
                async move {
                    let _ = &ctx;
                    match msg { #(#exclusive_arms)* }
                }
            }

            fn handle_shared(&self, msg: Self::Message, ctx: &::kt::__private::Context<Self>) -> impl ::core::future::Future<Output = ::kt::__private::Outcome> + ::core::marker::Send {
                async move {
                    let _ = &ctx;
                    match msg { #(#shared_arms)* }
                }
            }

            fn decode_message(
                method: &str,
                payload: &[u8],
                reply: ::kt::__private::EncodedReply,
            ) -> ::core::result::Result<Self::Message, (::kt::__private::Error, ::kt::__private::EncodedReply)> {
                match method {
                    #(#decode_arms)*
                    _ => ::core::result::Result::Err(::kt::__private::unknown_method(#type_name, method, reply)),
                }
            }
        }
    }
}

/// One arm of `handle` (`exclusive`) or `handle_shared`.
fn dispatch_arm(message: &syn::Ident, m: &Method, exclusive: bool) -> TokenStream {
    let variant = variant_ident(m);
    let name = m.ident.to_string();
    let method = &m.ident;
    let idents = arg_idents(m);
    if !exclusive && m.receiver == Receiver::Exclusive {
        return quote! {
            #message::#variant(.., reply) => { ::kt::__private::misrouted(ctx, #name, reply) }
        };
    }
    let args = call_args(&m.params);
    let body = if m.is_async {
        quote!(::kt::__private::run_async(ctx, #name, reply, self.#method(#(#args),*)).await)
    } else {
        quote!(::kt::__private::run_sync(ctx, #name, reply, || self.#method(#(#args),*)))
    };
    quote! { #message::#variant(#(#idents,)* reply) => { #body } }
}

/// Compile-time checks that every argument and return type can cross an actor boundary,
/// each reported at the type itself.
fn wire_checks(actor: &ActorImpl) -> TokenStream {
    let ctor_types = actor.constructor.args.iter().map(|a| &a.ty);
    let method_types = actor
        .methods
        .iter()
        .flat_map(|m| m.args().map(|a| &a.ty).chain(std::iter::once(&m.output)));
    let mut seen = std::collections::HashSet::new();
    let checks = ctor_types
        .chain(method_types)
        .filter(|ty| seen.insert(quote!(#ty).to_string()))
        .map(|ty| quote_spanned!(ty.span()=> ::kt::__private::assert_wire::<#ty>();));
    quote! {
        const _: () = {
            #(#checks)*
        };
    }
}
