//! The options of `#[cached(...)]`: parsed, each at most once, checked for
//! combinations that make no sense.

use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token, Type};

use crate::MAX_NAME_LEN;

/// The attribute's options, each at most once.
#[derive(Default)]
pub(crate) struct Options {
    pub(crate) cache: Option<Expr>,
    pub(crate) name: Option<LitStr>,
    pub(crate) ttl: Option<Expr>,
    pub(crate) key: Option<Expr>,
    pub(crate) key_type: Option<Type>,
    pub(crate) unless: Option<Expr>,
    pub(crate) max_entries: Option<Expr>,
    pub(crate) tags: Option<Vec<LitStr>>,
    pub(crate) options: Option<Expr>,
}

const OPTION_NAMES: &str =
    "cache, name (or namespace), ttl, key, key_type, unless, max_entries, tags and options";

impl Parse for Options {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut o = Options::default();
        let mut seen: Vec<String> = Vec::new();
        while !input.is_empty() {
            let ident: Ident = input.parse()?;
            let mut name = ident.to_string();
            if name == "namespace" {
                name = "name".to_owned();
            }
            if seen.contains(&name) {
                return Err(syn::Error::new(
                    ident.span(),
                    format!("`{ident}` is given twice"),
                ));
            }
            input
                .parse::<Token![=]>()
                .map_err(|e| syn::Error::new(e.span(), format!("expected `{ident} = ...`")))?;
            match name.as_str() {
                "cache" => o.cache = Some(input.parse()?),
                "name" => {
                    let lit: LitStr = input.parse().map_err(|e| {
                        syn::Error::new(e.span(), format!("`{ident}` takes a string literal"))
                    })?;
                    check_name(&lit)?;
                    o.name = Some(lit);
                }
                "ttl" => {
                    let ttl: Expr = input.parse()?;
                    check_ttl(&ttl)?;
                    o.ttl = Some(ttl);
                }
                "key" => o.key = Some(input.parse()?),
                "key_type" => o.key_type = Some(input.parse()?),
                "unless" => o.unless = Some(input.parse()?),
                "max_entries" => o.max_entries = Some(input.parse()?),
                "tags" => o.tags = Some(parse_tags(input)?),
                "options" => o.options = Some(input.parse()?),
                "stampede_protection" | "sync_writes" => {
                    return Err(syn::Error::new(
                        ident.span(),
                        "concurrent calls always share one run of the body; remove this option",
                    ));
                }
                _ => {
                    return Err(syn::Error::new(
                        ident.span(),
                        format!("unknown option `{ident}`; #[cached] takes {OPTION_NAMES}"),
                    ));
                }
            }
            seen.push(name);
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        o.check()?;
        Ok(o)
    }
}

impl Options {
    /// Combinations that make no sense.
    fn check(&self) -> syn::Result<()> {
        if self.cache.is_some() {
            let own = "a cache given with `cache = ...` brings its own";
            if let Some(name) = &self.name {
                return Err(syn::Error::new(
                    name.span(),
                    format!(
                        "`name` names the implicit cache; {own} name (its namespace, set in `Cache::builder`)"
                    ),
                ));
            }
            if let Some(max) = &self.max_entries {
                return Err(syn::Error::new(
                    max.span(),
                    format!("`max_entries` sizes the implicit cache; {own} bounds"),
                ));
            }
            if let Some(ty) = &self.key_type {
                return Err(syn::Error::new(
                    ty.span(),
                    format!("`key_type` types the implicit cache's key; {own} key type"),
                ));
            }
        }
        if let (Some(ty), None) = (&self.key_type, &self.key) {
            return Err(syn::Error::new(
                ty.span(),
                "`key_type` is the type of `key = ...`; give the key expression too",
            ));
        }
        Ok(())
    }
}

/// `tags = ["user:{id}", "users"]`: format strings over the fn's arguments.
fn parse_tags(input: ParseStream<'_>) -> syn::Result<Vec<LitStr>> {
    let array: syn::ExprArray = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            "`tags` takes an array of string literals, e.g. `tags = [\"user:{id}\"]`",
        )
    })?;
    let mut tags = Vec::new();
    for elem in array.elems {
        let syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(lit),
            ..
        }) = elem
        else {
            return Err(syn::Error::new(
                elem.span(),
                "each tag is a string literal (a format string over the arguments, e.g. \"user:{id}\")",
            ));
        };
        let text = lit.value();
        if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(syn::Error::new(
                lit.span(),
                "a tag is not empty and has no whitespace or control characters",
            ));
        }
        tags.push(lit);
    }
    if tags.is_empty() {
        return Err(syn::Error::new(
            array.bracket_token.span.join(),
            "`tags = []` tags nothing; remove it",
        ));
    }
    Ok(tags)
}

/// A name the cache (and its Redis namespace) accepts: 1 to 64 of `[A-Za-z0-9_.-]`.
fn check_name(lit: &LitStr) -> syn::Result<()> {
    let name = lit.value();
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(syn::Error::new(
            lit.span(),
            format!(
                "a cache name is 1 to {MAX_NAME_LEN} characters from [A-Za-z0-9_.-]; `{name}` is not"
            ),
        ))
    }
}

/// An integer literal TTL is whole seconds and must be at least one.
fn check_ttl(ttl: &Expr) -> syn::Result<()> {
    if let Expr::Lit(ExprLit {
        lit: Lit::Int(int), ..
    }) = ttl
    {
        let secs: u64 = int.base10_parse()?;
        if secs == 0 {
            return Err(syn::Error::new(
                int.span(),
                "`ttl = 0` would cache nothing; the TTL is at least 1 second",
            ));
        }
    }
    Ok(())
}
