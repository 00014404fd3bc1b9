//! `#[kt::test]`: an async test that can also serve as a worker entry point, so that a
//! test binary (which has no `main` of its own) can spawn actors in child processes.

use proc_macro2::TokenStream;
use quote::quote;

pub fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(
            args,
            "#[kt::test] takes no options",
        ));
    }
    let func: syn::ItemFn = syn::parse2(item)?;
    if func.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            func.sig.fn_token,
            "#[kt::test] goes on an `async fn`",
        ));
    }
    if !func.sig.inputs.is_empty() {
        return Err(syn::Error::new_spanned(
            &func.sig.inputs,
            "tests take no arguments",
        ));
    }
    let attrs = &func.attrs;
    let vis = &func.vis;
    let ident = &func.sig.ident;
    let name = ident.to_string();
    let output = &func.sig.output;
    let body = &func.block;
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
