//! `#[cached]`: memoize an `async fn` through a resilient cache.
//!
//! Use it through `resilient-cache`, which re-exports it and which the expansion names
//! (`resilient_cache::cached`); the full documentation lives there.
//!
//! ```
//! use resilient_cache::cached;
//!
//! #[cached(ttl = 300, name = "squares")]
//! async fn square(n: u64) -> u64 {
//!     n * n
//! }
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! assert_eq!(square(12).await, 144); // computed
//! assert_eq!(square(12).await, 144); // from the cache
//! # });
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod derive_key;
mod options;

use options::Options;

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};

use syn::spanned::Spanned;
use syn::{
    Expr, ExprLit, FnArg, GenericArgument, ItemFn, Lit, LitStr, Pat, PathArguments, ReturnType,
    Type,
};

/// The longest argument list keyed without `key = ...` (the longest tuple key).
const MAX_KEY_ARGS: usize = 6;
/// The longest cache name (the namespace rule of `cache-core`).
const MAX_NAME_LEN: usize = 64;

/// Memoizes an `async fn` through a [`Cache`]: the first call with some arguments
/// runs the body and stores its result; later calls with the same arguments get the
/// stored value, and concurrent calls share one run of the body (stampede
/// protection is always on).
///
/// ```
/// use std::sync::LazyLock;
/// use std::time::Duration;
/// use resilient_cache::{cached, Cache};
///
/// // A cache built once, with Redis as L2 if you like (`.redis_url(..)`).
/// static PREDICTIONS: LazyLock<Cache<u64, String>> = LazyLock::new(|| {
///     Cache::builder("predictions").build().expect("valid config")
/// });
///
/// #[cached(cache = PREDICTIONS, ttl = 300)]
/// async fn predict(id: u64) -> Option<String> {
///     // A slow model call; `None` (no such id) is cached for the negative TTL.
///     (id < 1_000).then(|| format!("prediction {id}"))
/// }
///
/// struct Pricing { prices: Cache<(String, u32), u64> }
///
/// impl Pricing {
///     // Methods are keyed by their arguments (never by `self`), borrowed ones too.
///     #[cached(cache = self.prices, ttl = Duration::from_secs(30))]
///     async fn price(&self, sku: &str, quantity: u32) -> Result<u64, String> {
///         if quantity == 0 {
///             return Err("empty order".into()); // errors are never cached
///         }
///         Ok(u64::from(quantity) * sku.len() as u64)
///     }
/// }
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// assert_eq!(predict(7).await.as_deref(), Some("prediction 7"));
/// assert_eq!(PREDICTIONS.get(&7).await?.as_deref(), Some("prediction 7"));
///
/// let pricing = Pricing { prices: Cache::builder("prices").build()? };
/// assert_eq!(pricing.price("abc", 2).await, Ok(6));
/// assert_eq!(pricing.price("abc", 0).await, Err("empty order".to_owned()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Options
///
/// | option | meaning |
/// |---|---|
/// | `cache = expr` | The [`Cache`] to use: anything that dereferences to one (a `static` `LazyLock`, `self.field`, an `Arc`). Its name is the namespace; its settings (L2, TTLs, stale window, fail mode) apply. |
/// | `name = "ns"` (or `namespace`) | Without `cache`: the name (namespace) of the fn's own memory-only cache. Default: the fn's name. |
/// | `ttl = 300` / `ttl = expr` | TTL of stored values: whole seconds, or a `Duration` expression. Still jittered; *absent* results keep the negative TTL. |
/// | `key = expr` | The key, computed from the arguments before the body runs. Default: all arguments but `self`, owned (`&str` → `String`, `&T` → `T::Owned`), as one value or a tuple. |
/// | `key_type = Type` | Without `cache`: the type of `key = ...` (default `String`). |
/// | `unless = pred` | `pred(&value) == true` keeps the value out of the cache (it is still returned). `value` is the return value, or the `Ok` value of a `Result`. |
/// | `max_entries = n` | Without `cache`: the bound of the fn's own cache. |
/// | `tags = ["user:{id}", "users"]` | Tags of the stored entry (L1 and L2 copies), for `invalidate_tag`: format strings over the arguments, built before the body runs. |
/// | `options = expr` | A `MemoOptions` expression, evaluated per call (it may use the arguments): negative TTL, stale window, skipping L1 or L2 (`MemoOptions::new().skip_l2(Skip::Write)`). `ttl` and `tags` given too apply on top of it. |
///
/// # Return types
///
/// - `T`: always cached.
/// - `Option<T>`: `None` is cached as *absent* (negative caching).
/// - `Result<T, E>` (any `E`, also `io::Result<T>`): only `Ok` is cached; the error
///   goes unchanged to the caller whose run produced it (callers coalesced with a
///   failed run then run the body themselves).
/// - `Result<Option<T>, E>`: both of the above.
///
/// # Semantics
///
/// - **Distinct arguments never share an entry**: the default key uses the
///   escaping tuple encoding of [`CacheKey`](../resilient_cache/trait.CacheKey.html).
/// - **The body is the truth**: a cache fault (Redis down, even fail-closed) never
///   changes the result, it only costs a run of the body. A value within the
///   cache's stale window stands in for a failed run.
/// - The body runs inline in the caller's task (it may borrow), so the cache's
///   load timeouts and refresh-ahead do not apply (see `Cache::memoize`).
/// - Without `cache`, the fn gets a memory-only cache of its own (a `static`), so
///   the fn must not be generic and the key and value types must not name `Self`.
///
/// Misuse (not an `async fn`, an unknown option, a pattern argument without `key`,
/// …) is a compile error that says what to write instead.
///
/// [`Cache`]: ../resilient_cache/struct.Cache.html
#[proc_macro_attribute]
pub fn cached(attr: TokenStream, item: TokenStream) -> TokenStream {
    let options = match syn::parse::<Options>(attr) {
        Ok(o) => o,
        Err(e) => return e.to_compile_error().into(),
    };
    let func = match syn::parse::<ItemFn>(item) {
        Ok(f) => f,
        Err(e) => {
            let mut err = syn::Error::new(
                e.span(),
                "#[cached] goes on an `async fn` with a body (a free fn or a method in an `impl` block)",
            );
            err.combine(e);
            return err.to_compile_error().into();
        }
    };
    match expand(&options, func) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// The `Duration` a `ttl = ...` option stands for.
fn ttl_tokens(ttl: &Expr) -> TokenStream2 {
    match ttl {
        Expr::Lit(ExprLit {
            lit: Lit::Int(_), ..
        }) => quote!(::std::time::Duration::from_secs(#ttl)),
        _ => quote!(#ttl),
    }
}

/// How the return type maps onto the cache.
enum Mode {
    /// `T`: always a value.
    Plain,
    /// `Option<T>`: `None` is cached as absent.
    Option,
    /// `Result<T, E>`: only `Ok` is cached.
    Result,
    /// `Result<Option<T>, E>`: `Ok(None)` is cached as absent, errors never.
    ResultOption,
}

/// The single type argument of `Name<T, ..>` if the path's last segment is `name`.
fn first_arg<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(p) = strip_group(ty) else {
        return None;
    };
    if p.qself.is_some() {
        return None;
    }
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}

fn strip_group(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => strip_group(&g.elem),
        Type::Paren(p) => strip_group(&p.elem),
        other => other,
    }
}

/// The mode and the cached value type of a return type.
fn mode_of(ret: &Type) -> (Mode, &Type) {
    if let Some(ok) = first_arg(ret, "Result") {
        match first_arg(ok, "Option") {
            Some(v) => (Mode::ResultOption, v),
            None => (Mode::Result, ok),
        }
    } else if let Some(v) = first_arg(ret, "Option") {
        (Mode::Option, v)
    } else {
        (Mode::Plain, ret)
    }
}

/// Whether tokens mention `Self` (which a `static` inside a method cannot name).
fn mentions_self(tokens: TokenStream2) -> bool {
    tokens.into_iter().any(|t| match t {
        TokenTree::Ident(i) => i == "Self",
        TokenTree::Group(g) => mentions_self(g.stream()),
        _ => false,
    })
}

/// One keyed argument: its name and the owned key part it becomes.
struct KeyArg {
    /// The owned type (for the implicit cache's key type).
    owned: TokenStream2,
    /// An expression producing the owned key part without consuming the argument.
    expr: TokenStream2,
}

/// The default key: every argument but the receiver, owned.
fn key_args(func: &ItemFn) -> syn::Result<Vec<KeyArg>> {
    let mut out = Vec::new();
    for arg in &func.sig.inputs {
        let FnArg::Typed(pt) = arg else { continue };
        let Pat::Ident(pi) = &*pt.pat else {
            return Err(syn::Error::new(
                pt.pat.span(),
                "#[cached] keys by the arguments, so each needs a plain name; give `key = ...` to key this fn",
            ));
        };
        let ident = pi.ident.clone();
        let ty = strip_group(&pt.ty);
        let (owned, expr) = match ty {
            Type::Reference(r) => {
                let elem = &r.elem;
                (
                    quote!(<#elem as ::std::borrow::ToOwned>::Owned),
                    quote!(::std::borrow::ToOwned::to_owned(&*#ident)),
                )
            }
            Type::ImplTrait(_) => {
                return Err(syn::Error::new(
                    pt.ty.span(),
                    "an `impl Trait` argument has no key type; give `key = ...` to key this fn",
                ));
            }
            _ => (
                ty.to_token_stream(),
                quote!(::core::clone::Clone::clone(&#ident)),
            ),
        };
        out.push(KeyArg { owned, expr });
    }
    if out.len() > MAX_KEY_ARGS {
        return Err(syn::Error::new(
            func.sig.inputs.span(),
            format!(
                "#[cached] keys by up to {MAX_KEY_ARGS} arguments; give `key = ...` to key this fn"
            ),
        ));
    }
    Ok(out)
}

fn expand(o: &Options, func: ItemFn) -> syn::Result<TokenStream2> {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "#[cached] memoizes an `async fn`; this fn is not async",
        ));
    }
    let ret = match &sig.output {
        ReturnType::Type(_, ty) if !matches!(strip_group(ty), Type::Tuple(t) if t.elems.is_empty()) => {
            &**ty
        }
        _ => {
            return Err(syn::Error::new(
                sig.ident.span(),
                "#[cached] caches what the fn returns, and this fn returns `()`",
            ));
        }
    };
    if let Type::ImplTrait(_) = strip_group(ret) {
        return Err(syn::Error::new(
            ret.span(),
            "an `impl Trait` return type cannot be cached; return a concrete type",
        ));
    }
    let (mode, value_ty) = mode_of(ret);

    // The key, computed before the body takes the arguments.
    let (key_expr, key_ty) = match &o.key {
        Some(k) => (
            quote!(#k),
            o.key_type
                .as_ref()
                .map_or_else(|| quote!(::std::string::String), ToTokens::to_token_stream),
        ),
        None => {
            let args = key_args(&func)?;
            let exprs = args.iter().map(|a| &a.expr);
            let owned = args.iter().map(|a| &a.owned);
            match args.len() {
                0 => (quote!(()), quote!(())),
                1 => (quote!(#(#exprs)*), quote!(#(#owned)*)),
                _ => (quote!((#(#exprs,)*)), quote!((#(#owned,)*))),
            }
        }
    };
    let skip = match &o.unless {
        Some(pred) => quote!(::resilient_cache::__private::unless(#pred, &__cached_value)),
        None => quote!(false),
    };
    let compute = match mode {
        Mode::Plain | Mode::Option => quote! {
            async move {
                let __cached_value = __cached_body.await;
                let __cached_skip = #skip;
                ::core::result::Result::Ok::<_, ::core::convert::Infallible>(
                    ::resilient_cache::__private::computed(__cached_value, __cached_skip),
                )
            }
        },
        Mode::Result | Mode::ResultOption => quote! {
            async move {
                match __cached_body.await {
                    ::core::result::Result::Ok(__cached_value) => {
                        let __cached_skip = #skip;
                        ::core::result::Result::Ok(
                            ::resilient_cache::__private::computed(__cached_value, __cached_skip),
                        )
                    }
                    ::core::result::Result::Err(__cached_error) => {
                        ::core::result::Result::Err(__cached_error)
                    }
                }
            }
        },
    };
    let method = match mode {
        Mode::Plain | Mode::Result => format_ident!("memoize"),
        Mode::Option | Mode::ResultOption => format_ident!("memoize_option"),
    };
    let finish = |call: TokenStream2| match mode {
        Mode::Plain | Mode::Option => quote! {
            match #call {
                ::core::result::Result::Ok(__cached_value) => __cached_value,
                ::core::result::Result::Err(__cached_never) => match __cached_never {},
            }
        },
        Mode::Result | Mode::ResultOption => call,
    };
    let direct = finish(quote!(
        ::resilient_cache::__private::uncached(__cached_compute).await
    ));

    // `options = expr` is the base (typed, so a wrong expression says so);
    // `ttl` and `tags` given as well are applied on top of it.
    let base = match &o.options {
        Some(expr) => quote!({
            let __cached_base: ::resilient_cache::MemoOptions = #expr;
            __cached_base
        }),
        None => quote!(::resilient_cache::MemoOptions::new()),
    };
    let options = match (&o.ttl, &o.cache) {
        (Some(ttl), Some(_)) => {
            let d = ttl_tokens(ttl);
            quote!(#base.ttl(#d))
        }
        _ => base,
    };
    // Tags are built from the arguments before the body takes them.
    let (tags_let, options) = match &o.tags {
        Some(tags) => (
            quote!(let __cached_tags: ::std::vec::Vec<::std::string::String> =
                ::std::vec![#(::std::format!(#tags)),*];),
            quote!(#options.tags(__cached_tags)),
        ),
        None => (quote!(), options),
    };

    let block = &func.block;
    let lookup = match &o.cache {
        Some(cache) => {
            let call = finish(quote!(
                (#cache).#method(__cached_key, &__cached_options, __cached_compute).await
            ));
            quote! {
                let __cached_options = #options;
                #call
            }
        }
        None => {
            if let Some(g) = sig
                .generics
                .params
                .iter()
                .find(|p| !matches!(p, syn::GenericParam::Lifetime(_)))
            {
                return Err(syn::Error::new(
                    g.span(),
                    "a generic fn has no single cache type for the implicit cache; pass one with `cache = ...`",
                ));
            }
            for ty in [&key_ty, &value_ty.to_token_stream()] {
                if mentions_self(ty.clone()) {
                    return Err(syn::Error::new(
                        ret.span(),
                        "the implicit cache is a `static`, which cannot name `Self`; spell the type out or pass a cache with `cache = ...`",
                    ));
                }
            }
            let name = o.name.as_ref().map_or_else(
                || LitStr::new(&sig.ident.to_string(), Span::call_site()),
                Clone::clone,
            );
            let ttl = o.ttl.as_ref().map_or_else(
                || quote!(::core::option::Option::None),
                |t| {
                    let d = ttl_tokens(t);
                    quote!(::core::option::Option::Some(#d))
                },
            );
            let max = o.max_entries.as_ref().map_or_else(
                || quote!(::core::option::Option::None),
                |m| quote!(::core::option::Option::Some(#m)),
            );
            let span = sig.ident.span();
            let call = finish(quote!(
                __cached_cache.#method(__cached_key, &__cached_options, __cached_compute).await
            ));
            quote_spanned! {span=>
                #[allow(clippy::type_complexity)]
                static __CACHED_CACHE: ::std::sync::LazyLock<
                    ::core::option::Option<::resilient_cache::Cache<#key_ty, #value_ty>>,
                > = ::std::sync::LazyLock::new(|| {
                    ::resilient_cache::__private::implicit_cache(#name, #ttl, #max)
                });
                let __cached_options = #options;
                match &*__CACHED_CACHE {
                    ::core::option::Option::Some(__cached_cache) => { #call }
                    ::core::option::Option::None => { #direct }
                }
            }
        }
    };

    let attrs = &func.attrs;
    let vis = &func.vis;
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let __cached_key = #key_expr;
            #tags_let
            let __cached_body = ::resilient_cache::__private::typed::<#ret, _>(async move #block);
            let __cached_compute = #compute;
            #lookup
        }
    })
}

/// Makes a struct a cache key: implements `CacheKey` and `DecodeKey` (both
/// re-exported by `resilient_cache`). A newtype (`struct UserId(u64)`) encodes like
/// its field (`UserId(7)` → `7`, so it shares keys with plain `7u64`); a struct of
/// 2 to 6 fields encodes like the tuple of its fields, in order (`"org:7"` for
/// `OrgUser { org: "org", user: 7 }`, components escaped).
///
/// ```
/// use resilient_cache::{Cache, CacheKey};
///
/// #[derive(CacheKey, Clone, Hash, PartialEq, Eq)]
/// struct UserId(u64);
///
/// #[derive(CacheKey, Clone, Hash, PartialEq, Eq)]
/// struct OrgUser {
///     org: String,
///     user: u64,
/// }
///
/// assert_eq!(UserId(7).to_key_string(), "7");
/// let key = OrgUser { org: "org".into(), user: 7 };
/// assert_eq!(key.to_key_string(), "org:7");
/// let users: Cache<UserId, String> = Cache::builder("users").build()?;
/// # drop(users);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[proc_macro_derive(CacheKey)]
pub fn derive_cache_key(item: TokenStream) -> TokenStream {
    match syn::parse::<syn::DeriveInput>(item).and_then(derive_key::expand) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}
