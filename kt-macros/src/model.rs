//! What the macro knows about an actor once parsing is done: plain data, no syn
//! parsing logic and no code generation.

use proc_macro2::Span;
use syn::{Attribute, Ident, Type, Visibility};

/// An argument of a constructor or a method (the context parameter excluded).
pub struct Arg {
    pub ident: Ident,
    pub ty: Type,
}

/// How a function's parameters line up: plain arguments and where the context goes.
// Built a handful of times per macro call: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Param {
    Arg(Arg),
    Context,
    DeathCause,
}

/// `&self` (shared) or `&mut self` (exclusive).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    Shared,
    Exclusive,
}

/// A public method of the actor: one handle method, one message variant.
pub struct Method {
    pub ident: Ident,
    pub vis: Visibility,
    pub docs: Vec<Attribute>,
    pub receiver: Receiver,
    pub is_async: bool,
    pub params: Vec<Param>,
    /// The return type; `()` when the method returns nothing.
    pub output: Type,
    pub idempotent: bool,
}

impl Method {
    pub fn args(&self) -> impl Iterator<Item = &Arg> {
        self.params.iter().filter_map(|p| match p {
            Param::Arg(arg) => Some(arg),
            _ => None,
        })
    }
}

/// The function that builds the actor.
pub struct Constructor {
    pub ident: Ident,
    pub vis: Visibility,
    pub is_async: bool,
    pub fallible: bool,
    pub args: Vec<Arg>,
}

/// `on_start` / `on_stop` hooks marked in the impl block.
pub struct Hook {
    pub ident: Ident,
    pub is_async: bool,
    pub fallible: bool,
    pub params: Vec<Param>,
}

/// The whole actor as the impl block describes it.
pub struct ActorImpl {
    pub self_ident: Ident,
    pub constructor: Constructor,
    pub methods: Vec<Method>,
    pub on_start: Option<Hook>,
    pub on_stop: Option<Hook>,
    /// The impl block as the user wrote it, minus kt's own helper attributes.
    pub item: syn::ItemImpl,
}

/// The struct half: its name and its stable type name.
pub struct ActorStruct {
    pub item: syn::ItemStruct,
    /// `name = "..."` from the attribute, overriding `module_path!()::Type`.
    pub type_name: Option<(String, Span)>,
}
