//! `#[kt::main]`: runs `async fn main` on kt's runtime.

use proc_macro2::TokenStream;
use quote::quote;

pub fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(
            args,
            "#[kt::main] takes no options",
        ));
    }
    let func: syn::ItemFn = syn::parse2(item)?;
    if func.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            func.sig.fn_token,
            "#[kt::main] goes on an `async fn main`",
        ));
    }
    if !func.sig.inputs.is_empty() {
        return Err(syn::Error::new_spanned(
            &func.sig.inputs,
            "`main` takes no arguments",
        ));
    }
    let attrs = &func.attrs;
    let vis = &func.vis;
    let ident = &func.sig.ident;
    let output = &func.sig.output;
    let body = &func.block;
    Ok(quote! {
        #(#attrs)*
        #vis fn #ident() #output {
            ::kt::__private::block_on_main(async move #body)
        }
    })
}
