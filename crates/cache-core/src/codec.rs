//! [`Codec`]: how values become bytes at the L2 boundary.
//!
//! The in-memory tier stores typed values and never encodes; only stores that keep
//! bytes (Redis) use a codec. [`Postcard`] is the default; [`Json`] (feature `json`)
//! trades size and speed for interop with caches written in other languages.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CacheError;

/// Serializes values to bytes and back.
///
/// A decode failure must come back as [`CacheError::Decode`], never as a panic:
/// the bytes may have been written by another version of the service or by
/// something else entirely.
pub trait Codec: Send + Sync + fmt::Debug + 'static {
    /// A stable one-byte identifier written into the L2 envelope, so bytes written
    /// with one codec are never decoded with another.
    const ID: u8;

    /// A short name (`"postcard"`, `"json"`).
    const NAME: &'static str;

    /// Appends the encoding of `value` to `out`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T, out: &mut Vec<u8>)
    -> Result<(), CacheError>;

    /// Decodes a whole value from `bytes`; trailing bytes are an error.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CacheError>;
}

/// The default codec: [postcard](https://docs.rs/postcard), compact and fast.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl Codec for Postcard {
    const ID: u8 = 1;
    const NAME: &'static str = "postcard";

    fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CacheError> {
        let buf = std::mem::take(out);
        match postcard::to_extend(value, buf) {
            Ok(buf) => {
                *out = buf;
                Ok(())
            }
            Err(e) => Err(CacheError::Encode(e.to_string())),
        }
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CacheError> {
        let (value, rest) =
            postcard::take_from_bytes(bytes).map_err(|e| CacheError::Decode(e.to_string()))?;
        if rest.is_empty() {
            Ok(value)
        } else {
            Err(CacheError::Decode(format!(
                "{} unexpected trailing bytes",
                rest.len()
            )))
        }
    }
}

/// JSON via `serde_json`, for interop with other languages.
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

#[cfg(feature = "json")]
impl Codec for Json {
    const ID: u8 = 2;
    const NAME: &'static str = "json";

    fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CacheError> {
        serde_json::to_writer(out, value).map_err(|e| CacheError::Encode(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CacheError> {
        serde_json::from_slice(bytes).map_err(|e| CacheError::Decode(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Dto {
        id: u64,
        name: String,
        scores: Vec<f32>,
    }

    fn round_trip<C: Codec>(c: &C) {
        let v = Dto {
            id: 7,
            name: "seven".into(),
            scores: vec![0.5, 1.5],
        };
        let mut out = vec![0xAA]; // encode appends
        c.encode(&v, &mut out).expect("encodes");
        assert_eq!(out[0], 0xAA);
        assert_eq!(c.decode::<Dto>(&out[1..]).expect("decodes"), v);
    }

    #[test]
    fn postcard_round_trips() {
        round_trip(&Postcard);
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_round_trips() {
        round_trip(&Json);
        assert!(Json.decode::<Dto>(b"{\"id\":1}").is_err());
    }

    #[test]
    fn postcard_rejects_truncation_and_trailing_bytes() {
        let mut out = Vec::new();
        Postcard
            .encode(&("hello".to_string(), 300u32), &mut out)
            .expect("encodes");
        let e = Postcard
            .decode::<(String, u32)>(&out[..out.len() - 1])
            .expect_err("truncated");
        assert_eq!(e.kind(), ErrorKind::Decode);
        out.push(0);
        let e = Postcard
            .decode::<(String, u32)>(&out)
            .expect_err("trailing");
        assert_eq!(e.kind(), ErrorKind::Decode);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Postcard.decode::<Dto>(&bytes);
            let _ = Postcard.decode::<(String, Vec<u64>, Option<bool>)>(&bytes);
        }
    }
}
