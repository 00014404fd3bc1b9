//! # kt-macros: `#[kt::actor]` and `#[kt::main]`
//!
//! Code generation only: parsing lives in `parse`, the actor's description in `model`,
//! and the generated code in `emit`; all runtime behaviour lives in kt-core. Users reach
//! these macros through the `kt` crate (`#[kt::actor]`, `#[kt::main]`).
//!
//! ```
//! // Doctests of a proc-macro crate cannot depend on kt itself; the full example lives in
//! // the `kt` crate's docs. This one shows the attribute's shape.
//! let source = "#[kt::actor] impl Counter { pub fn new(start: u64) -> Self { Counter { value: start } } }";
//! assert!(source.contains("#[kt::actor]"));
//! ```

#![warn(missing_docs)]

mod emit;
mod main_attr;
mod model;
mod parse;
mod wire_form;

use proc_macro::TokenStream;

/// Makes a struct and its impl block an actor. Put it on both.
///
/// On the struct it registers the stable type name (`module::path::Type`, or
/// `#[kt::actor(name = "my.Type")]`). On the impl block it generates, for a `Counter`:
///
/// - `Counter::spawn(args...)`: a builder (options, then `.await`) for an `ActorRef<Counter>`;
///   the arguments are the constructor's (`new`, or the function marked `#[kt(constructor)]`,
///   returning `Self` or `Result<Self, E>`, sync or `async`).
/// - `Counter::spawn_group(size, args...)`: the same for a group of `size` ranked members.
/// - `CounterHandle`, the target `ActorRef<Counter>` dereferences to, with one method per
///   public method, each returning a `Call<T>`; and `CounterGroup` with the broadcast forms.
/// - `CounterMessage`, the message enum, with local dispatch and encoded (rmp-serde) dispatch.
/// - The `kt::Actor` implementation and a link-time registration in kt's type registry, so a
///   worker can build a `Counter` from its name and encoded arguments.
///
/// Method rules: `&mut self` methods run one at a time, `&self` methods may overlap up to
/// `max_concurrency`; a `ctx: &Context<Self>` parameter receives the actor's context;
/// arguments and return values must be owned and serde-serializable. An argument or return
/// type that is a vector of numbers (`Vec<u8>`, `Vec<f32>`, any of `u8`–`u64`, `i8`–`i64`,
/// `f32`, `f64`), also inside `Option` or `Result`, travels as its raw bytes (one
/// MessagePack `bin`, not a number per element); inside your own types, mark such a field
/// `#[serde(with = "kt::raw")]`. Helper attributes:
/// `#[kt(constructor)]`, `#[kt(on_start)]`, `#[kt(on_stop)]` (hooks taking `&mut self` and
/// optionally the context and, for `on_stop`, `cause: &DeathCause`), `#[kt(idempotent)]`
/// (the call may be re-run on a restarted actor).
///
/// # What the macro generates
///
/// For the actor below, the generated code is exactly the following (a test in this crate
/// compares the macro's output with this text, token for token):
///
/// ```text
#[doc = include_str!("../doc/counter_input.rs")]
/// ```
///
/// expands to
///
/// ```text
#[doc = include_str!("../doc/counter_expanded.rs")]
/// ```
#[proc_macro_attribute]
pub fn actor(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_actor(args.into(), item.into()).into()
}

/// The expansion of `#[kt::actor]`, on token streams (testable outside a macro context).
fn expand_actor(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let result = match syn::parse2::<syn::Item>(item) {
        Ok(syn::Item::Struct(item)) => {
            parse::actor_struct(args, item).map(|a| emit::actor_struct(&a))
        }
        Ok(syn::Item::Impl(item)) => reject_args(&args)
            .and_then(|()| parse::actor_impl(item))
            .map(|a| emit::actor_impl(&a)),
        Ok(other) => Err(syn::Error::new_spanned(
            other,
            "#[kt::actor] goes on an actor's struct and on its impl block",
        )),
        Err(error) => Err(error),
    };
    result.unwrap_or_else(syn::Error::into_compile_error)
}

fn reject_args(args: &proc_macro2::TokenStream) -> syn::Result<()> {
    if args.is_empty() {
        return Ok(());
    }
    Err(syn::Error::new_spanned(
        args,
        "#[kt::actor] takes no options on an impl block; put `name = \"...\"` on the struct",
    ))
}

/// Runs an `async fn main` on kt's runtime.
///
/// ```text
/// #[kt::main]
/// async fn main() -> kt::Result<()> { ... }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    main_attr::expand_main(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// An async test that runs on kt's runtime, and that test binaries use as the entry
/// point of their worker processes: a test binary has no `main`, so when the local-process
/// backend starts the binary as a worker, it asks the test harness to run one
/// `#[kt::test]`, which serves the actor instead of running its body.
///
/// ```text
/// #[kt::test]
/// async fn counts() -> kt::Result<()> {
///     let counter = Counter::spawn(0).await?; // a child process of this test binary
///     assert_eq!(counter.increment().await?, 1);
///     Ok(())
/// }
/// ```
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    main_attr::expand_test(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "// What #[kt::actor] generates for doc/counter_input.rs (kept true by a test).\n";

    /// Formats Rust source with rustfmt, as `cargo fmt` would.
    fn rustfmt(source: &str) -> String {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("rustfmt")
            .args(["--edition", "2024", "--emit", "stdout"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("rustfmt must be installed (rustup component add rustfmt)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(source.as_bytes())
            .expect("write to rustfmt");
        let output = child.wait_with_output().expect("rustfmt runs");
        assert!(output.status.success(), "rustfmt failed on the expansion");
        String::from_utf8(output.stdout).expect("utf-8")
    }

    /// Keeps "What the macro generates" true: the documented expansion must be the
    /// macro's output, formatted by rustfmt.
    #[::core::prelude::v1::test]
    fn documented_expansion_is_the_real_one() {
        let file: syn::File =
            syn::parse_str(include_str!("../doc/counter_input.rs")).expect("input parses");
        let mut expanded = proc_macro2::TokenStream::new();
        for item in file.items {
            let (args, item) = strip_actor_attr(item);
            expanded.extend(expand_actor(args, quote::ToTokens::into_token_stream(item)));
        }
        let formatted = rustfmt(&expanded.to_string());
        assert_only_kt_paths(&formatted);
        let got = format!("{HEADER}{formatted}");
        let want = include_str!("../doc/counter_expanded.rs");
        if got != want {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/doc/counter_expanded.rs.new");
            std::fs::write(path, &got).expect("write the new expansion");
            panic!(
                "the expansion changed: review kt-macros/doc/counter_expanded.rs.new and move it over the old file"
            );
        }
    }

    /// Generated code must reach everything through `::kt` (or `::core`/`::std`), so that
    /// users need no serde, tokio or inventory dependency of their own.
    fn assert_only_kt_paths(code: &str) {
        // Macro invocations are left unformatted (`:: kt :: x`): compare without spaces.
        let compact: Vec<char> = code.chars().filter(|c| !c.is_whitespace()).collect();
        for at in 0..compact.len().saturating_sub(1) {
            if compact[at] != ':' || compact[at + 1] != ':' {
                continue;
            }
            let before = |back: usize| at.checked_sub(back).map(|i| compact[i]);
            let continues_a_path = match before(1) {
                Some(c) if c.is_alphanumeric() || c == '_' || c == '"' || c == ':' => true,
                // `Type<..>::item` continues a path; `-> ::core::x` starts one.
                Some('>') => before(2) != Some('-'),
                _ => false,
            };
            if !continues_a_path {
                let rest: String = compact[at + 2..].iter().take(40).collect();
                assert!(
                    ["kt::", "core::", "std::"]
                        .iter()
                        .any(|root| rest.starts_with(root)),
                    "generated code names a path outside kt: ::{rest}"
                );
            }
        }
    }

    fn is_actor_attr(attr: &syn::Attribute) -> bool {
        attr.path()
            .segments
            .last()
            .is_some_and(|s| s.ident == "actor")
    }

    fn strip_actor_attr(mut item: syn::Item) -> (proc_macro2::TokenStream, syn::Item) {
        let attrs = match &mut item {
            syn::Item::Struct(s) => &mut s.attrs,
            syn::Item::Impl(i) => &mut i.attrs,
            _ => return (Default::default(), item),
        };
        let args = attrs
            .iter()
            .find(|a| is_actor_attr(a))
            .and_then(|a| a.meta.require_list().ok().map(|l| l.tokens.clone()))
            .unwrap_or_default();
        attrs.retain(|a| !is_actor_attr(a));
        (args, item)
    }
}
