//! From syn's syntax tree to the [`crate::model`], rejecting every misuse with an error
//! that points at the offending code and says what to write instead.

use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericParam, ImplItem, ImplItemFn, ItemImpl, ItemStruct, Pat, ReturnType,
    Type, Visibility,
};

use crate::model::{ActorImpl, ActorStruct, Arg, Constructor, Hook, Method, Param, Receiver};

/// Names a handle method cannot have: `ActorRef<A>` dereferences to the generated
/// methods, so its own methods (and common trait methods) would shadow them.
const HANDLE_METHODS: &[&str] = &[
    "id",
    "name",
    "label",
    "kill",
    "is_alive",
    "raw",
    "from_raw",
    "from_erased",
    "clone",
    "clone_from",
    "deref",
    "fmt",
    "to_owned",
    "into",
    "try_into",
    "borrow",
    "type_id",
];

/// Associated functions `#[kt::actor]` adds to the actor type itself.
const GENERATED_FNS: &[&str] = &["spawn", "spawn_group"];

/// kt's helper attributes on items of the impl block: `#[kt(constructor)]` and so on.
#[derive(Default)]
struct Markers {
    constructor: bool,
    on_start: bool,
    on_stop: bool,
    idempotent: bool,
}

/// Parses `name = "..."` arguments of `#[kt::actor(...)]` on a struct.
pub fn actor_struct(args: proc_macro2::TokenStream, item: ItemStruct) -> syn::Result<ActorStruct> {
    let mut type_name = None;
    if !args.is_empty() {
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                type_name = Some((lit.value(), lit.span()));
                Ok(())
            } else {
                Err(meta.error("unknown #[kt::actor] option; the only option on a struct is `name = \"stable::TypeName\"`"))
            }
        });
        syn::parse::Parser::parse2(parser, args)?;
    }
    reject_generics(&item.generics, &item.ident)?;
    Ok(ActorStruct { item, type_name })
}

fn reject_generics(generics: &syn::Generics, ident: &syn::Ident) -> syn::Result<()> {
    if let Some(param) = generics.params.first() {
        let what = match param {
            GenericParam::Lifetime(_) => "a lifetime parameter",
            GenericParam::Type(_) => "a type parameter",
            GenericParam::Const(_) => "a const parameter",
        };
        return Err(syn::Error::new(
            generics.span(),
            format!(
                "kt actors cannot be generic, but `{ident}` has {what}. A worker builds an actor from \
                 its type name, so every actor type must be concrete: define one actor struct per \
                 instantiation (it can wrap a generic inner type), and move lifetimes into owned data"
            ),
        ));
    }
    if let Some(clause) = &generics.where_clause {
        return Err(syn::Error::new(
            clause.span(),
            "kt actors cannot have a where clause: actor types must be concrete",
        ));
    }
    Ok(())
}

/// Parses the impl block of an actor.
pub fn actor_impl(mut item: ItemImpl) -> syn::Result<ActorImpl> {
    if let Some((path, _)) = &item.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "#[kt::actor] goes on the inherent impl block of the actor (`impl Counter { ... }`), \
             not on a trait impl",
        ));
    }
    let self_ident = match &*item.self_ty {
        Type::Path(path) if path.qself.is_none() => match path.path.segments.last() {
            Some(segment) if segment.arguments.is_none() => segment.ident.clone(),
            Some(segment) => {
                return Err(syn::Error::new(
                    segment.arguments.span(),
                    "kt actors cannot be generic: implement a concrete actor type",
                ));
            }
            None => {
                return Err(syn::Error::new(
                    item.self_ty.span(),
                    "expected the actor's type name",
                ));
            }
        },
        other => {
            return Err(syn::Error::new(
                other.span(),
                "expected the actor's type name",
            ));
        }
    };
    reject_generics(&item.generics, &self_ident)?;

    let mut errors: Option<syn::Error> = None;
    let mut push_error = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    let mut constructor = None;
    let mut methods = Vec::new();
    let mut on_start = None;
    let mut on_stop = None;
    for impl_item in &mut item.items {
        let ImplItem::Fn(func) = impl_item else {
            continue;
        };
        let markers = match take_markers(&mut func.attrs) {
            Ok(markers) => markers,
            Err(e) => {
                push_error(e);
                continue;
            }
        };
        let outcome = classify(
            func,
            &markers,
            &self_ident,
            &mut constructor,
            &mut methods,
            &mut on_start,
            &mut on_stop,
        );
        if let Err(e) = outcome {
            push_error(e);
        }
    }
    if let Some(errors) = errors {
        return Err(errors);
    }
    let Some(constructor) = constructor else {
        return Err(syn::Error::new(
            item.self_ty.span(),
            format!(
                "the #[kt::actor] impl of `{self_ident}` has no constructor: add \
                 `pub fn new(...) -> Self` (its arguments are what `{self_ident}::spawn` takes), or \
                 mark another associated function with #[kt(constructor)]"
            ),
        ));
    };
    // An actor's `new` is the constructor `spawn` calls, not a `Default` candidate.
    item.attrs
        .push(syn::parse_quote!(#[allow(clippy::new_without_default)]));
    Ok(ActorImpl {
        self_ident,
        constructor,
        methods,
        on_start,
        on_stop,
        item,
    })
}

#[allow(clippy::too_many_arguments)]
fn classify(
    func: &ImplItemFn,
    markers: &Markers,
    self_ident: &syn::Ident,
    constructor: &mut Option<Constructor>,
    methods: &mut Vec<Method>,
    on_start: &mut Option<Hook>,
    on_stop: &mut Option<Hook>,
) -> syn::Result<()> {
    let sig = &func.sig;
    let is_ctor = markers.constructor || (sig.ident == "new" && sig.receiver().is_none());
    if is_ctor {
        if constructor.is_some() {
            return Err(syn::Error::new(
                sig.ident.span(),
                "an actor has one constructor: `new`, or the function marked #[kt(constructor)]",
            ));
        }
        *constructor = Some(parse_constructor(func, self_ident)?);
        return Ok(());
    }
    if markers.on_start || markers.on_stop {
        let hook = parse_hook(func)?;
        let slot = if markers.on_start { on_start } else { on_stop };
        if slot.is_some() {
            return Err(syn::Error::new(
                sig.ident.span(),
                "an actor has at most one on_start and one on_stop hook",
            ));
        }
        *slot = Some(hook);
        return Ok(());
    }
    if matches!(func.vis, Visibility::Inherited) || sig.receiver().is_none() {
        // Private methods are helpers of the actor; associated functions are not messages.
        if markers.idempotent {
            return Err(syn::Error::new(
                sig.ident.span(),
                "#[kt(idempotent)] goes on a public method of the actor",
            ));
        }
        return Ok(());
    }
    methods.push(parse_method(func, markers)?);
    Ok(())
}

fn take_markers(attrs: &mut Vec<Attribute>) -> syn::Result<Markers> {
    let mut markers = Markers::default();
    let mut result = Ok(());
    attrs.retain(|attr| {
        if !attr.path().is_ident("kt") {
            return true;
        }
        let parsed = attr.parse_nested_meta(|meta| {
            let flag = if meta.path.is_ident("constructor") {
                &mut markers.constructor
            } else if meta.path.is_ident("on_start") {
                &mut markers.on_start
            } else if meta.path.is_ident("on_stop") {
                &mut markers.on_stop
            } else if meta.path.is_ident("idempotent") {
                &mut markers.idempotent
            } else {
                return Err(meta.error(
                    "unknown kt attribute; write one of #[kt(constructor)], #[kt(on_start)], \
                     #[kt(on_stop)], #[kt(idempotent)]",
                ));
            };
            *flag = true;
            Ok(())
        });
        if let Err(e) = parsed {
            result = Err(e);
        }
        false
    });
    result.map(|()| markers)
}

fn parse_constructor(func: &ImplItemFn, self_ident: &syn::Ident) -> syn::Result<Constructor> {
    let sig = &func.sig;
    if let Some(receiver) = sig.receiver() {
        return Err(syn::Error::new(
            receiver.span(),
            "the constructor builds the actor, so it takes no `self`: write `fn new(args...) -> Self`",
        ));
    }
    reject_fn_generics(sig)?;
    let fallible = match &sig.output {
        ReturnType::Type(_, ty) if is_self_type(ty, self_ident) => false,
        ReturnType::Type(_, ty) if last_segment_is(ty, "Result") => true,
        other => {
            return Err(syn::Error::new(
                other.span(),
                "the constructor must return `Self` or `Result<Self, E>` (E: Display)",
            ));
        }
    };
    let mut args = Vec::new();
    for (index, input) in sig.inputs.iter().enumerate() {
        match parse_param(input, index)? {
            Param::Arg(arg) => args.push(arg),
            Param::Context | Param::DeathCause => {
                return Err(syn::Error::new(
                    input.span(),
                    "the constructor runs before the actor exists, so it gets no Context; use an \
                     #[kt(on_start)] hook for work that needs one",
                ));
            }
        }
    }
    Ok(Constructor {
        ident: sig.ident.clone(),
        vis: func.vis.clone(),
        is_async: sig.asyncness.is_some(),
        fallible,
        args,
    })
}

fn parse_hook(func: &ImplItemFn) -> syn::Result<Hook> {
    let sig = &func.sig;
    receiver_of(sig, Some(Receiver::Exclusive))?;
    reject_fn_generics(sig)?;
    let fallible = !matches!(sig.output, ReturnType::Default);
    let params = sig
        .inputs
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, input)| match parse_param(input, i)? {
            Param::Arg(arg) => Err(syn::Error::new(
                arg.ty.span(),
                "hooks take only `&mut self`, `ctx: &Context<Self>` and (for on_stop) `cause: &DeathCause`",
            )),
            other => Ok(other),
        })
        .collect::<syn::Result<_>>()?;
    Ok(Hook {
        ident: sig.ident.clone(),
        is_async: sig.asyncness.is_some(),
        fallible,
        params,
    })
}

fn parse_method(func: &ImplItemFn, markers: &Markers) -> syn::Result<Method> {
    let sig = &func.sig;
    let name = sig.ident.to_string();
    if HANDLE_METHODS.contains(&name.as_str()) {
        return Err(syn::Error::new(
            sig.ident.span(),
            format!(
                "the actor method `{name}` clashes with `ActorRef::{name}`, which handles already have \
                 (and which would hide it): rename the method, for example `{name}_value`"
            ),
        ));
    }
    if GENERATED_FNS.contains(&name.as_str()) {
        return Err(syn::Error::new(
            sig.ident.span(),
            format!("`{name}` is generated by #[kt::actor] to start the actor: rename this method"),
        ));
    }
    reject_fn_generics(sig)?;
    let receiver = receiver_of(sig, None)?;
    let params = sig
        .inputs
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, input)| parse_param(input, i))
        .collect::<syn::Result<_>>()?;
    let output = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => {
            reject_borrowed(
                ty,
                "return values of actor methods are sent back to the caller, so they must be owned: return `String` instead of `&str`, a clone instead of a reference",
            )?;
            (**ty).clone()
        }
    };
    let docs = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .cloned()
        .collect();
    Ok(Method {
        ident: sig.ident.clone(),
        vis: func.vis.clone(),
        docs,
        receiver,
        is_async: sig.asyncness.is_some(),
        params,
        output,
        idempotent: markers.idempotent,
    })
}

fn receiver_of(sig: &syn::Signature, required: Option<Receiver>) -> syn::Result<Receiver> {
    let Some(receiver) = sig.receiver() else {
        return Err(syn::Error::new(
            sig.ident.span(),
            "expected a method taking `&self` or `&mut self`",
        ));
    };
    let found = match &receiver.kind {
        syn::ReceiverKind::Reference(_, _, None) => Receiver::Shared,
        syn::ReceiverKind::Reference(_, _, Some(_)) => Receiver::Exclusive,
        syn::ReceiverKind::Value => {
            return Err(syn::Error::new(
                receiver.span(),
                "actor methods cannot take `self` by value: that would consume the actor. Take `&mut self` \
                 (one call at a time) or `&self` (may overlap up to `max_concurrency`)",
            ));
        }
        _ => {
            return Err(syn::Error::new(
                receiver.span(),
                "actor methods take `&self` or `&mut self`, not a typed `self`",
            ));
        }
    };
    match required {
        Some(Receiver::Exclusive) if found == Receiver::Shared => {
            Err(syn::Error::new(receiver.span(), "hooks take `&mut self`"))
        }
        _ => Ok(found),
    }
}

fn reject_fn_generics(sig: &syn::Signature) -> syn::Result<()> {
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "actor methods cannot be generic: a remote caller must know the argument types. Use \
             concrete types (an enum if several are needed)",
        ));
    }
    Ok(())
}

fn parse_param(input: &FnArg, index: usize) -> syn::Result<Param> {
    let FnArg::Typed(pat_type) = input else {
        return Err(syn::Error::new(input.span(), "unexpected `self` parameter"));
    };
    let ty = &*pat_type.ty;
    if let Type::Reference(reference) = ty {
        if reference.mutability.is_none() && last_segment_is(&reference.elem, "Context") {
            return Ok(Param::Context);
        }
        if reference.mutability.is_none() && last_segment_is(&reference.elem, "DeathCause") {
            return Ok(Param::DeathCause);
        }
    }
    reject_borrowed(
        ty,
        "arguments of actor methods are sent to the actor, so they must be owned values: take `String` \
         instead of `&str`, `Vec<T>` instead of `&[T]`",
    )?;
    if let Type::ImplTrait(_) = ty {
        return Err(syn::Error::new(
            ty.span(),
            "actor method arguments must be concrete types, not `impl Trait`",
        ));
    }
    let ident = match &*pat_type.pat {
        Pat::Ident(pat) => pat.ident.clone(),
        _ => quote::format_ident!("arg{}", index),
    };
    Ok(Param::Arg(Arg {
        ident,
        ty: ty.clone(),
    }))
}

fn reject_borrowed(ty: &Type, message: &str) -> syn::Result<()> {
    match ty {
        Type::Reference(_) => Err(syn::Error::new(ty.span(), message)),
        _ => Ok(()),
    }
}

fn is_self_type(ty: &Type, self_ident: &syn::Ident) -> bool {
    last_segment_is(ty, "Self") || last_segment_is(ty, &self_ident.to_string())
}

fn last_segment_is(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Path(path) => path.path.segments.last().is_some_and(|s| s.ident == name),
        _ => false,
    }
}
