//! `#[derive(CacheKey)]`: a struct as a cache key, encoded like the tuple of its
//! fields (a newtype like its one field), and decoded back.

use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

/// Tuples of up to this many fields decode (the `DecodeKey` impls of cache-core).
const MAX_FIELDS: usize = 6;

pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream2> {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "`#[derive(CacheKey)]` is for structs (a newtype or a struct of key fields); for an enum, implement `CacheKey` by hand",
        ));
    };
    let fields: Vec<_> = data.fields.iter().collect();
    if fields.is_empty() {
        return Err(syn::Error::new(
            input.ident.span(),
            "a key needs at least one field",
        ));
    }
    if fields.len() > MAX_FIELDS {
        return Err(syn::Error::new(
            data.fields.span(),
            format!(
                "a derived key has at most {MAX_FIELDS} fields; group some into a struct of their own"
            ),
        ));
    }
    let access: Vec<TokenStream2> = match &data.fields {
        Fields::Named(named) => named
            .named
            .iter()
            .map(|f| {
                let ident = &f.ident;
                quote!(#ident)
            })
            .collect(),
        _ => (0..fields.len())
            .map(|i| {
                let index = syn::Index::from(i);
                quote!(#index)
            })
            .collect(),
    };
    let types: Vec<_> = fields.iter().map(|f| &f.ty).collect();
    let vars: Vec<_> = (0..fields.len())
        .map(|i| format_ident!("__key_{}", i))
        .collect();
    let build = match &data.fields {
        Fields::Named(_) => quote!(#name { #(#access: #vars),* }),
        _ => quote!(#name ( #(#vars),* )),
    };
    let (encode, decode) = if fields.len() == 1 {
        let only = &access[0];
        let ty = types[0];
        let var = &vars[0];
        (
            quote!(::resilient_cache::CacheKey::encode_key(&self.#only, out)),
            quote! {
                let #var = <#ty as ::resilient_cache::DecodeKey>::decode_key(encoded)?;
                ::core::option::Option::Some(#build)
            },
        )
    } else {
        (
            quote!(::resilient_cache::CacheKey::encode_key(&( #(&self.#access,)* ), out)),
            quote! {
                let ( #(#vars,)* ) = <( #(#types,)* ) as ::resilient_cache::DecodeKey>::decode_key(encoded)?;
                ::core::option::Option::Some(#build)
            },
        )
    };
    Ok(quote! {
        impl #impl_generics ::resilient_cache::CacheKey for #name #ty_generics #where_clause {
            fn encode_key(&self, out: &mut ::std::string::String) {
                #encode
            }
        }
        impl #impl_generics ::resilient_cache::DecodeKey for #name #ty_generics #where_clause {
            fn decode_key(encoded: &str) -> ::core::option::Option<Self> {
                #decode
            }
        }
    })
}
