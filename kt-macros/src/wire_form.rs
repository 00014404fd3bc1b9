//! How an argument or return type travels: as itself, or — for vectors of numbers, also
//! inside `Option` and `Result` — as raw bytes (`kt::__private::RawVec`). Decided from
//! the type as written, so it is the same on the caller's side and the actor's.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{GenericArgument, PathArguments, Type};

/// The numbers whose vectors travel raw.
const RAW_ELEMENTS: &[&str] = &[
    "u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64",
];

/// The form of one type on the wire.
pub enum Form {
    /// As itself.
    Plain,
    /// `Vec<elem>`, as raw bytes.
    Raw,
    /// `Option<X>` or `Result<X, ..>` (any path whose last segment is one of them, the
    /// first generic argument being `X`), with `X` in another form.
    Mapped {
        /// The type with its first generic argument replaced by `X`'s wire type.
        path: syn::TypePath,
        inner: Box<(Type, Form)>,
    },
}

/// The first generic argument of `path`'s last segment, if it is a type.
fn first_argument(path: &syn::TypePath) -> Option<&Type> {
    let PathArguments::AngleBracketed(args) = &path.path.segments.last()?.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    }
}

/// The form of `ty`.
pub fn form(ty: &Type) -> Form {
    let Type::Path(path) = ty else {
        return Form::Plain;
    };
    if path.qself.is_some() {
        return Form::Plain;
    }
    let Some(last) = path.path.segments.last() else {
        return Form::Plain;
    };
    let name = last.ident.to_string();
    let Some(arg) = first_argument(path) else {
        return Form::Plain;
    };
    match name.as_str() {
        "Vec" if is_raw_element(arg) => Form::Raw,
        "Option" | "Result" => match form(arg) {
            Form::Plain => Form::Plain,
            inner => Form::Mapped {
                path: path.clone(),
                inner: Box::new((arg.clone(), inner)),
            },
        },
        _ => Form::Plain,
    }
}

fn is_raw_element(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    path.qself.is_none()
        && path.path.segments.len() == 1
        && path.path.segments[0].arguments.is_empty()
        && RAW_ELEMENTS.contains(&path.path.segments[0].ident.to_string().as_str())
}

impl Form {
    pub fn is_plain(&self) -> bool {
        matches!(self, Form::Plain)
    }

    /// The owned type that travels for `ty`.
    pub fn wire_type(&self, ty: &Type) -> TokenStream {
        match self {
            Form::Plain => quote!(#ty),
            Form::Raw => {
                let elem = match ty {
                    Type::Path(path) => first_argument(path).cloned(),
                    _ => None,
                };
                quote!(::kt::__private::RawVec<#elem>)
            }
            Form::Mapped { path, inner } => {
                let (inner_ty, inner_form) = &**inner;
                let wire = inner_form.wire_type(inner_ty);
                let mut path = path.clone();
                if let Some(last) = path.path.segments.last_mut()
                    && let PathArguments::AngleBracketed(args) = &mut last.arguments
                    && let Some(GenericArgument::Type(first)) = args.args.first_mut()
                {
                    *first = syn::parse_quote!(#wire);
                }
                quote!(#path)
            }
        }
    }

    /// `value` (of the user's type) as its wire type.
    pub fn to_wire(&self, value: TokenStream) -> TokenStream {
        self.convert(value, 0, Conversion::ToWire)
    }

    /// `value` (of the wire type) as the user's type.
    pub fn back_from_wire(&self, value: TokenStream) -> TokenStream {
        self.convert(value, 0, Conversion::BackFromWire)
    }

    /// A borrowed view of `value` (a reference to the user's type) that encodes as the
    /// wire type does.
    pub fn view(&self, value: TokenStream) -> TokenStream {
        self.convert(value, 0, Conversion::View)
    }

    /// `value` converted `how`, through `Option`s and `Result`s (`.map`, on a reference
    /// for a view); `depth` names the closures' variables apart.
    fn convert(&self, value: TokenStream, depth: usize, how: Conversion) -> TokenStream {
        match (self, how) {
            (Form::Plain, _) => value,
            (Form::Raw, Conversion::ToWire) => quote!(::kt::__private::RawVec(#value)),
            (Form::Raw, Conversion::BackFromWire) => quote!((#value).0),
            (Form::Raw, Conversion::View) => {
                quote!(::kt::__private::RawSlice((#value).as_slice()))
            }
            (Form::Mapped { inner, .. }, _) => {
                let v = format_ident!("__kt_v{}", depth);
                let body = inner.1.convert(quote!(#v), depth + 1, how);
                match how {
                    Conversion::View => quote!((#value).as_ref().map(|#v| #body)),
                    _ => quote!((#value).map(|#v| #body)),
                }
            }
        }
    }
}

/// Which way [`Form::convert`] goes.
#[derive(Clone, Copy)]
enum Conversion {
    ToWire,
    BackFromWire,
    View,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(ty: &str) -> Option<String> {
        let ty: Type = syn::parse_str(ty).expect("a type");
        let form = form(&ty);
        (!form.is_plain()).then(|| form.wire_type(&ty).to_string().replace(' ', ""))
    }

    #[test]
    fn vectors_of_numbers_travel_raw_also_inside_option_and_result() {
        assert_eq!(
            wire("Vec<f32>").as_deref(),
            Some("::kt::__private::RawVec<f32>")
        );
        assert_eq!(
            wire("Option<Vec<u8>>").as_deref(),
            Some("Option<::kt::__private::RawVec<u8>>")
        );
        assert_eq!(
            wire("Result<Vec<i64>, String>").as_deref(),
            Some("Result<::kt::__private::RawVec<i64>,String>")
        );
        assert_eq!(
            wire("kt::Result<Option<Vec<f64>>>").as_deref(),
            Some("kt::Result<Option<::kt::__private::RawVec<f64>>>")
        );
        assert_eq!(
            wire("std::vec::Vec<u16>").as_deref(),
            Some("::kt::__private::RawVec<u16>")
        );
    }

    #[test]
    fn everything_else_travels_as_itself() {
        for ty in [
            "Vec<String>",
            "Vec<Vec<u8>>",
            "u8",
            "Option<u32>",
            "Result<(), String>",
            "HashMap<u8, Vec<u8>>",
            "Vec<my::f32>",
            "(Vec<u8>, u8)",
        ] {
            assert_eq!(wire(ty), None, "{ty}");
        }
    }
}
