//! `#[kt::main]` and `#[kt::test]`: run an `async fn` on kt's runtime, serving as a
//! worker instead when a backend started the binary in worker mode.

use proc_macro2::TokenStream;
use quote::quote;

/// Parses an argument-less `async fn` under an option-less attribute named `attr`.
fn async_fn(attr: &str, args: TokenStream, item: TokenStream) -> syn::Result<syn::ItemFn> {
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(
            args,
            format!("#[kt::{attr}] takes no options"),
        ));
    }
    let func: syn::ItemFn = syn::parse2(item)?;
    if func.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            func.sig.fn_token,
            format!("#[kt::{attr}] goes on an `async fn`"),
        ));
    }
    if !func.sig.inputs.is_empty() {
        return Err(syn::Error::new_spanned(
            &func.sig.inputs,
            format!("a #[kt::{attr}] function takes no arguments"),
        ));
    }
    Ok(func)
}

/// `#[kt::main]`: the body runs on kt's runtime, or the process serves as a worker.
pub fn expand_main(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let func = async_fn("main", args, item)?;
    let (attrs, vis, ident, output, body) = (
        &func.attrs,
        &func.vis,
        &func.sig.ident,
        &func.sig.output,
        &func.block,
    );
    Ok(quote! {
        #(#attrs)*
        #vis fn #ident() #output {
            ::kt::__private::block_on_main(async move #body)
        }
    })
}

/// `#[kt::test]`: a test that also serves as the worker entry point of its test binary.
pub fn expand_test(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let func = async_fn("test", args, item)?;
    let (attrs, vis, ident, output, body) = (
        &func.attrs,
        &func.vis,
        &func.sig.ident,
        &func.sig.output,
        &func.block,
    );
    let name = ident.to_string();
    Ok(quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis fn #ident() #output {
            ::kt::__private::run_test(
                ::core::concat!(::core::module_path!(), "::", #name),
                async move #body,
            )
        }
    })
}
