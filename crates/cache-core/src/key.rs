//! Keys: the [`CacheKey`] encoding, validated [`Namespace`]s and the [`KeySpace`] that
//! turns a typed key into `{prefix}:{namespace}:{key}`.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use crate::error::InvalidInput;

/// The longest namespace or prefix accepted, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 64;

/// The default maximum length of a full backend key, in bytes.
pub const DEFAULT_MAX_KEY_LEN: usize = 1024;

/// A key type that can write itself as a string, without ambiguity.
///
/// The in-memory tier looks entries up by the key value itself (hash + eq) and never
/// calls this on a hit; the Redis tier and prefix invalidation use the string form.
///
/// **Contract:** for one key type, distinct keys must encode to distinct strings.
/// The provided implementations guarantee it: strings are written verbatim at the top
/// level; inside tuples each component is escaped (`\` → `\\`, `:` → `\:`) and the
/// components are joined by `:`, so `("a:b", "c")` encodes as `a\:b:c` and
/// `("a", "b:c")` as `a:b\:c`.
///
/// ```
/// use cache_core::CacheKey;
///
/// assert_eq!(42u64.to_key_string(), "42");
/// assert_eq!(("user", 7u32).to_key_string(), "user:7");
/// assert_ne!(("a:b", "c").to_key_string(), ("a", "b:c").to_key_string());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a cache key",
    label = "not a cache key",
    note = "derive it with `#[derive(resilient_cache::CacheKey)]` (a newtype or a struct of key fields), use a string, an integer or a tuple, or implement `CacheKey` and `DecodeKey` by hand"
)]
pub trait CacheKey {
    /// Appends the key's top-level encoding to `out`.
    fn encode_key(&self, out: &mut String);

    /// Appends the key's encoding as one component of a composite key: the
    /// encoding must not contain an unescaped `:`. The default escapes
    /// [`CacheKey::encode_key`].
    fn encode_component(&self, out: &mut String) {
        let mut plain = String::new();
        self.encode_key(&mut plain);
        escape_component(&plain, out);
    }

    /// The top-level encoding as a new string.
    fn to_key_string(&self) -> String {
        let mut s = String::new();
        self.encode_key(&mut s);
        s
    }
}

/// Appends `s` with `\` and `:` escaped, so it can be joined with `:` unambiguously.
pub fn escape_component(s: &str, out: &mut String) {
    for c in s.chars() {
        if c == '\\' || c == ':' {
            out.push('\\');
        }
        out.push(c);
    }
}

impl<T: CacheKey + ?Sized> CacheKey for &T {
    fn encode_key(&self, out: &mut String) {
        (**self).encode_key(out);
    }
    fn encode_component(&self, out: &mut String) {
        (**self).encode_component(out);
    }
}

macro_rules! string_keys {
    ($($t:ty),*) => {$(
        impl CacheKey for $t {
            fn encode_key(&self, out: &mut String) {
                out.push_str(self);
            }
            fn encode_component(&self, out: &mut String) {
                escape_component(self, out);
            }
        }
    )*};
}
string_keys!(str, String, Box<str>, Arc<str>);

macro_rules! display_keys {
    ($($t:ty),*) => {$(
        impl CacheKey for $t {
            fn encode_key(&self, out: &mut String) {
                // Writing to a String cannot fail.
                let _ = write!(out, "{self}");
            }
            // Digits, `-`, `true`/`false` contain no `:` or `\`.
            fn encode_component(&self, out: &mut String) {
                self.encode_key(out);
            }
        }
    )*};
}
display_keys!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, bool
);

/// The one key of a function without arguments: the empty string.
impl CacheKey for () {
    fn encode_key(&self, _out: &mut String) {}
}

impl CacheKey for char {
    fn encode_key(&self, out: &mut String) {
        out.push(*self);
    }
    fn encode_component(&self, out: &mut String) {
        let mut buf = [0u8; 4];
        escape_component(self.encode_utf8(&mut buf), out);
    }
}

macro_rules! tuple_keys {
    ($( ( $($name:ident),+ ) )+) => {$(
        impl<$($name: CacheKey),+> CacheKey for ($($name,)+) {
            #[allow(non_snake_case)]
            fn encode_key(&self, out: &mut String) {
                let ($($name,)+) = self;
                let mut first = true;
                $(
                    if !first { out.push(':'); }
                    first = false;
                    $name.encode_component(out);
                )+
                let _ = first;
            }
        }
    )+};
}
tuple_keys! {
    (A)
    (A, B)
    (A, B, C)
    (A, B, C, D)
    (A, B, C, D, E)
    (A, B, C, D, E, F)
}

/// A key type whose [`CacheKey`] encoding can be turned back into the key.
///
/// Used where only the encoded form travels, e.g. an invalidation message from another
/// instance that must find the typed key in an in-process cache. Implemented for the
/// same types as [`CacheKey`]; `decode_key(&k.to_key_string()) == Some(k)`.
///
/// ```
/// use cache_core::{CacheKey, DecodeKey};
/// let key = ("a:b".to_owned(), 7u32);
/// assert_eq!(<(String, u32)>::decode_key(&key.to_key_string()), Some(key));
/// assert_eq!(<(String, u32)>::decode_key("only-one-part"), None);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be decoded from a cache key",
    label = "no `DecodeKey`",
    note = "`#[derive(resilient_cache::CacheKey)]` implements both `CacheKey` and `DecodeKey`; by hand, `decode_key(&k.to_key_string())` must give `k` back"
)]
pub trait DecodeKey: CacheKey + Sized {
    /// The key whose encoding is `encoded`, or `None` if no key encodes to it.
    fn decode_key(encoded: &str) -> Option<Self>;
}

/// Splits a tuple encoding at unescaped `:` and unescapes each part.
fn split_components(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(p)) = (chars.next(), parts.last_mut()) {
                    p.push(next);
                }
            }
            ':' => parts.push(String::new()),
            c => {
                if let Some(p) = parts.last_mut() {
                    p.push(c);
                }
            }
        }
    }
    parts
}

macro_rules! decode_string_keys {
    ($($t:ty),*) => {$(
        impl DecodeKey for $t {
            fn decode_key(encoded: &str) -> Option<Self> {
                Some(encoded.into())
            }
        }
    )*};
}
decode_string_keys!(String, Box<str>, Arc<str>);

macro_rules! decode_parsed_keys {
    ($($t:ty),*) => {$(
        impl DecodeKey for $t {
            fn decode_key(encoded: &str) -> Option<Self> {
                encoded.parse().ok()
            }
        }
    )*};
}
decode_parsed_keys!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, bool
);

impl DecodeKey for () {
    fn decode_key(encoded: &str) -> Option<Self> {
        encoded.is_empty().then_some(())
    }
}

impl DecodeKey for char {
    fn decode_key(encoded: &str) -> Option<Self> {
        let mut chars = encoded.chars();
        let c = chars.next()?;
        chars.next().is_none().then_some(c)
    }
}

macro_rules! decode_tuple_keys {
    ($( ($n:expr; $($name:ident),+ ) )+) => {$(
        impl<$($name: DecodeKey),+> DecodeKey for ($($name,)+) {
            fn decode_key(encoded: &str) -> Option<Self> {
                let parts = split_components(encoded);
                if parts.len() != $n {
                    return None;
                }
                let mut parts = parts.into_iter();
                Some(($($name::decode_key(&parts.next()?)?,)+))
            }
        }
    )+};
}
decode_tuple_keys! {
    (1; A)
    (2; A, B)
    (3; A, B, C)
    (4; A, B, C, D)
    (5; A, B, C, D, E)
    (6; A, B, C, D, E, F)
}

/// A validated namespace (or key prefix): 1 to [`MAX_NAMESPACE_LEN`] characters
/// from `[A-Za-z0-9_.-]`.
///
/// Because `:` can never appear in a namespace, two namespaces can never produce the
/// same backend key.
///
/// ```
/// use cache_core::Namespace;
/// assert!(Namespace::new("predictions.v2").is_ok());
/// assert!(Namespace::new("bad:ns").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(Arc<str>);

impl Namespace {
    /// Validates `name`.
    pub fn new(name: impl AsRef<str>) -> Result<Self, InvalidInput> {
        let name = name.as_ref();
        validate_name(name)?;
        Ok(Namespace(Arc::from(name)))
    }

    /// The namespace as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Namespace({:?})", &*self.0)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn validate_name(name: &str) -> Result<(), InvalidInput> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAMESPACE_LEN {
        Some("it is too long")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("it contains a character outside [A-Za-z0-9_.-]")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(InvalidInput::InvalidNamespace {
            name: name.chars().take(MAX_NAMESPACE_LEN + 8).collect(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Where a cache's keys live in a shared backend: `{prefix}:{namespace}:{key}`,
/// with a maximum full-key length checked before anything is written.
///
/// ```
/// use cache_core::{KeySpace, Namespace};
///
/// let space = KeySpace::new(Namespace::new("app")?, Namespace::new("users")?);
/// assert_eq!(space.full_key(&("profile", 7u64))?, "app:users:profile:7");
/// assert_eq!(space.namespace_prefix(), "app:users:");
/// # Ok::<(), cache_core::InvalidInput>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    prefix: Namespace,
    namespace: Namespace,
    /// `{prefix}:{namespace}:`, computed once.
    head: Arc<str>,
    max_key_len: usize,
}

impl KeySpace {
    /// A key space with the default maximum key length ([`DEFAULT_MAX_KEY_LEN`]).
    #[must_use]
    pub fn new(prefix: Namespace, namespace: Namespace) -> Self {
        let head: Arc<str> = Arc::from(format!("{prefix}:{namespace}:"));
        KeySpace {
            prefix,
            namespace,
            head,
            max_key_len: DEFAULT_MAX_KEY_LEN,
        }
    }

    /// Sets the maximum length of a full key in bytes (prefix and namespace included).
    #[must_use]
    pub fn with_max_key_len(mut self, max: usize) -> Self {
        self.max_key_len = max;
        self
    }

    /// The prefix.
    #[must_use]
    pub fn prefix(&self) -> &Namespace {
        &self.prefix
    }

    /// The namespace.
    #[must_use]
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The maximum full-key length.
    #[must_use]
    pub fn max_key_len(&self) -> usize {
        self.max_key_len
    }

    /// `{prefix}:{namespace}:` — every key of this space starts with it.
    #[must_use]
    pub fn namespace_prefix(&self) -> &str {
        &self.head
    }

    /// The full backend key for `key`, or [`InvalidInput::KeyTooLong`].
    pub fn full_key<K: CacheKey + ?Sized>(&self, key: &K) -> Result<String, InvalidInput> {
        let mut out = String::with_capacity(self.head.len() + 32);
        self.push_full_key(&mut out, key)?;
        Ok(out)
    }

    /// Appends the full backend key for `key` to `out` and returns where it is, so
    /// a batch can build all its keys in one buffer. On
    /// [`InvalidInput::KeyTooLong`], `out` is left as it was.
    ///
    /// ```
    /// use cache_core::{KeySpace, Namespace};
    ///
    /// let space = KeySpace::new(Namespace::new("app")?, Namespace::new("users")?);
    /// let mut buf = String::new();
    /// let a = space.push_full_key(&mut buf, &7u64)?;
    /// let b = space.push_full_key(&mut buf, "bob")?;
    /// assert_eq!(&buf[a], space.full_key(&7u64)?);
    /// assert_eq!(&buf[b], space.full_key("bob")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_full_key<K: CacheKey + ?Sized>(
        &self,
        out: &mut String,
        key: &K,
    ) -> Result<std::ops::Range<usize>, InvalidInput> {
        let start = out.len();
        out.push_str(&self.head);
        key.encode_key(out);
        if let Err(e) = self.check_len(out.len() - start) {
            out.truncate(start);
            return Err(e);
        }
        Ok(start..out.len())
    }

    /// The full backend key for an already encoded key string (used for prefixes).
    pub fn full_key_raw(&self, encoded: &str) -> Result<String, InvalidInput> {
        let mut out = String::with_capacity(self.head.len() + encoded.len());
        out.push_str(&self.head);
        out.push_str(encoded);
        self.check_len(out.len())?;
        Ok(out)
    }

    /// Removes `{prefix}:{namespace}:` from a full key, if it belongs to this space.
    #[must_use]
    pub fn strip<'a>(&self, full: &'a str) -> Option<&'a str> {
        full.strip_prefix(&*self.head)
    }

    fn check_len(&self, len: usize) -> Result<(), InvalidInput> {
        if len > self.max_key_len {
            Err(InvalidInput::KeyTooLong {
                len,
                max: self.max_key_len,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn namespace_rules() {
        for ok in ["a", "A-z_0.9", &"x".repeat(MAX_NAMESPACE_LEN)] {
            assert!(Namespace::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a:b",
            "a b",
            "ü",
            "a*",
            &"x".repeat(MAX_NAMESPACE_LEN + 1),
        ] {
            let err = Namespace::new(bad).expect_err(bad);
            assert!(matches!(err, InvalidInput::InvalidNamespace { .. }));
        }
    }

    #[test]
    fn key_length_is_checked() {
        let space = KeySpace::new(
            Namespace::new("p").expect("ns"),
            Namespace::new("n").expect("ns"),
        )
        .with_max_key_len(8);
        assert_eq!(space.full_key("abcd").expect("fits"), "p:n:abcd");
        assert_eq!(
            space.full_key("abcde"),
            Err(InvalidInput::KeyTooLong { len: 9, max: 8 })
        );
        assert_eq!(space.strip("p:n:abcd"), Some("abcd"));
        assert_eq!(space.strip("p:m:abcd"), None);
        // In a shared buffer, a refused key leaves what was there untouched.
        let mut buf = String::new();
        let a = space.push_full_key(&mut buf, "ab").expect("fits");
        assert_eq!(
            space.push_full_key(&mut buf, "abcde"),
            Err(InvalidInput::KeyTooLong { len: 9, max: 8 })
        );
        let b = space.push_full_key(&mut buf, "cd").expect("fits");
        assert_eq!((&buf[a], &buf[b]), ("p:n:ab", "p:n:cd"));
        assert_eq!(buf, "p:n:abp:n:cd");
    }

    #[test]
    fn nested_tuples_escape_twice() {
        let k = (("a:b", 1u8), "c").to_key_string();
        assert_eq!(k, r"a\\\:b\:1:c");
        assert_ne!(k, (("a", "b:1"), "c").to_key_string());
        assert_eq!(('x', ':').to_key_string(), r"x:\:");
    }

    #[test]
    fn unit_is_the_one_empty_key() {
        assert_eq!(().to_key_string(), "");
        assert_eq!(<()>::decode_key(""), Some(()));
        assert_eq!(<()>::decode_key("x"), None);
    }

    /// Splits a tuple encoding on unescaped `:` and unescapes each part.
    fn decode_parts(s: &str) -> Vec<String> {
        let mut parts = vec![String::new()];
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => parts.last_mut().expect("one part").extend(chars.next()),
                ':' => parts.push(String::new()),
                c => parts.last_mut().expect("one part").push(c),
            }
        }
        parts
    }

    proptest! {
        #[test]
        fn pairs_of_strings_encode_injectively(
            a in ".{0,8}", b in ".{0,8}", c in ".{0,8}", d in ".{0,8}"
        ) {
            let x = (a.as_str(), b.as_str()).to_key_string();
            let y = (c.as_str(), d.as_str()).to_key_string();
            prop_assert_eq!(x == y, a == c && b == d);
        }

        #[test]
        fn decode_inverts_encode(
            a in ".{0,8}",
            n in any::<i64>(),
            inner in (".{0,6}", any::<u8>()),
            c in any::<char>(),
        ) {
            let key = (a.clone(), n, inner.clone(), c);
            let decoded = <(String, i64, (String, u8), char)>::decode_key(&key.to_key_string());
            prop_assert_eq!(decoded, Some(key));
            prop_assert_eq!(String::decode_key(&a.to_key_string()), Some(a));
            prop_assert_eq!(i64::decode_key(&n.to_key_string()), Some(n));
        }

        #[test]
        fn tuple_encoding_round_trips(a in "[a-z:\\\\]{0,8}", n in any::<i64>(), b in ".{0,8}") {
            let s = (a.as_str(), n, b.as_str()).to_key_string();
            prop_assert_eq!(decode_parts(&s), vec![a, n.to_string(), b]);
        }

        #[test]
        fn full_keys_of_distinct_namespaces_never_collide(
            ns1 in "[a-z]{1,4}", ns2 in "[a-z]{1,4}", k1 in ".{0,8}", k2 in ".{0,8}"
        ) {
            let p = Namespace::new("p").expect("ns");
            let s1 = KeySpace::new(p.clone(), Namespace::new(&ns1).expect("ns"));
            let s2 = KeySpace::new(p, Namespace::new(&ns2).expect("ns"));
            let f1 = s1.full_key(k1.as_str()).expect("short");
            let f2 = s2.full_key(k2.as_str()).expect("short");
            prop_assert_eq!(f1 == f2, ns1 == ns2 && k1 == k2);
        }
    }
}
