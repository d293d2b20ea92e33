//! The versioned envelope an [`Entry`] is stored in.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 2 | magic `b"rc"` |
//! | 1 | format version ([`VERSION`]) |
//! | 1 | codec id ([`Codec::ID`]) |
//! | 1 | flags: bit 0 = *absent* marker, bit 1 = tags follow; other bits must be 0 |
//! | 8 | `created_at` (ms since the Unix epoch) |
//! | 8 | `fresh_until` |
//! | 8 | `stale_until` (never before `fresh_until`) |
//! | 2 + n × (2 + len) | tags, only when flag bit 1 is set: count, then length-prefixed UTF-8 |
//! | rest | the value encoded with the codec; empty for an absent marker |
//!
//! Anything else — foreign bytes, another version, another codec, truncation, trailing
//! bytes, a tag that is not valid — fails to decode, and the store treats it as a miss.

use cache_core::{Codec, Entry, Tags, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The two bytes every envelope starts with.
pub const MAGIC: [u8; 2] = *b"rc";
/// The envelope format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Size of the fixed header (magic, version, codec, flags and three timestamps).
pub const HEADER_LEN: usize = 2 + 1 + 1 + 1 + 8 * 3;

const FLAG_ABSENT: u8 = 0b01;
const FLAG_TAGS: u8 = 0b10;

/// Why bytes were not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The bytes do not start with [`MAGIC`].
    NotAnEnvelope,
    /// The format version is not [`VERSION`].
    Version(u8),
    /// The value was written with another codec.
    Codec {
        /// Codec id found in the header.
        found: u8,
        /// Codec id this store reads.
        expected: u8,
    },
    /// The header or the tag list is cut short, malformed or inconsistent.
    Malformed(&'static str),
    /// The payload did not decode with the codec.
    Payload(String),
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeError::NotAnEnvelope => f.write_str("not a cache envelope (bad magic)"),
            EnvelopeError::Version(v) => {
                write!(f, "envelope version {v} (this build reads {VERSION})")
            }
            EnvelopeError::Codec { found, expected } => {
                write!(
                    f,
                    "written with codec {found}, this store reads codec {expected}"
                )
            }
            EnvelopeError::Malformed(what) => write!(f, "malformed envelope: {what}"),
            EnvelopeError::Payload(e) => write!(f, "payload did not decode: {e}"),
        }
    }
}

/// The fixed header `entry`'s envelope starts with (codec `C`): its first
/// [`HEADER_LEN`] bytes. Two writes of a key share it only if they were made
/// with the same codec, marker, tag presence and the same three timestamps,
/// so it tells a write apart from later ones without the value.
///
/// ```
/// use cache_core::{Entry, Postcard, Timestamp};
/// use cache_store_redis::envelope::{HEADER_LEN, encode, header};
/// use std::time::Duration;
///
/// let entry = Entry::new(7u32, Timestamp::from_millis(1_000), Duration::from_secs(60));
/// let mut bytes = Vec::new();
/// encode(&Postcard, &entry, &mut bytes)?;
/// assert_eq!(&bytes[..HEADER_LEN], &header::<u32, Postcard>(&entry)[..]);
/// # Ok::<(), cache_core::CacheError>(())
/// ```
#[must_use]
pub fn header<V, C: Codec>(entry: &Entry<V>) -> [u8; HEADER_LEN] {
    let mut flags = 0;
    if entry.is_absent() {
        flags |= FLAG_ABSENT;
    }
    if !entry.tags().is_empty() {
        flags |= FLAG_TAGS;
    }
    let mut out = [0; HEADER_LEN];
    out[..5].copy_from_slice(&[MAGIC[0], MAGIC[1], VERSION, C::ID, flags]);
    let times = [entry.created_at(), entry.fresh_until(), entry.stale_until()];
    for (i, t) in times.iter().enumerate() {
        out[5 + 8 * i..13 + 8 * i].copy_from_slice(&t.as_millis().to_le_bytes());
    }
    out
}

/// Encodes `entry` into `out` (which is cleared first).
pub fn encode<V: Serialize, C: Codec>(
    codec: &C,
    entry: &Entry<V>,
    out: &mut Vec<u8>,
) -> Result<(), cache_core::CacheError> {
    out.clear();
    out.extend_from_slice(&header::<V, C>(entry));
    if !entry.tags().is_empty() {
        let tags = entry.tags();
        let count = u16::try_from(tags.len())
            .map_err(|_| cache_core::CacheError::Encode("more than 65535 tags".into()))?;
        out.extend_from_slice(&count.to_le_bytes());
        for tag in tags.iter() {
            // Tags are validated to at most MAX_TAG_LEN (256) bytes.
            let len = u16::try_from(tag.len())
                .map_err(|_| cache_core::CacheError::Encode("tag longer than 65535".into()))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(tag.as_bytes());
        }
    }
    if let Some(value) = entry.value() {
        codec.encode(value, out)?;
    }
    Ok(())
}

/// A cursor over the input that never panics.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EnvelopeError> {
        if self.0.len() < n {
            return Err(EnvelopeError::Malformed(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, EnvelopeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, EnvelopeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, EnvelopeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// Decodes an envelope written by [`encode`] with the same codec.
pub fn decode<V: DeserializeOwned, C: Codec>(
    codec: &C,
    bytes: &[u8],
) -> Result<Entry<V>, EnvelopeError> {
    let mut r = Reader(bytes);
    if r.take(2, "magic")
        .map_err(|_| EnvelopeError::NotAnEnvelope)?
        != MAGIC
    {
        return Err(EnvelopeError::NotAnEnvelope);
    }
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(EnvelopeError::Version(version));
    }
    let codec_id = r.u8("codec")?;
    if codec_id != C::ID {
        return Err(EnvelopeError::Codec {
            found: codec_id,
            expected: C::ID,
        });
    }
    let flags = r.u8("flags")?;
    if flags & !(FLAG_ABSENT | FLAG_TAGS) != 0 {
        return Err(EnvelopeError::Malformed("unknown flags"));
    }
    let created_at = Timestamp::from_millis(r.u64("created_at")?);
    let fresh_until = Timestamp::from_millis(r.u64("fresh_until")?);
    let stale_until = Timestamp::from_millis(r.u64("stale_until")?);
    if stale_until < fresh_until {
        return Err(EnvelopeError::Malformed("stale_until before fresh_until"));
    }
    let tags = if flags & FLAG_TAGS != 0 {
        let count = r.u16("tag count")?;
        if count == 0 {
            return Err(EnvelopeError::Malformed("empty tag list"));
        }
        let mut list = Vec::with_capacity(usize::from(count).min(64));
        for _ in 0..count {
            let len = r.u16("tag length")?;
            let raw = r.take(usize::from(len), "tag")?;
            let tag = std::str::from_utf8(raw).map_err(|_| EnvelopeError::Malformed("tag"))?;
            list.push(tag.to_owned());
        }
        Tags::new(list).map_err(|_| EnvelopeError::Malformed("invalid tag"))?
    } else {
        Tags::none()
    };
    let value = if flags & FLAG_ABSENT != 0 {
        if !r.0.is_empty() {
            return Err(EnvelopeError::Malformed("payload after an absent marker"));
        }
        None
    } else {
        Some(
            codec
                .decode(r.0)
                .map_err(|e| EnvelopeError::Payload(e.to_string()))?,
        )
    };
    Ok(Entry::from_parts(
        value,
        created_at,
        fresh_until,
        Some(stale_until),
        tags,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cache_core::Postcard;
    use proptest::prelude::*;

    use super::*;

    fn roundtrip<V>(entry: &Entry<V>) -> Entry<V>
    where
        V: Serialize + DeserializeOwned,
    {
        let mut buf = Vec::new();
        encode(&Postcard, entry, &mut buf).expect("encode");
        decode(&Postcard, &buf).expect("decode")
    }

    #[test]
    fn header_layout_is_pinned() {
        let entry = Entry::new(7u8, Timestamp::from_millis(1), Duration::from_millis(2));
        let mut buf = Vec::new();
        encode(&Postcard, &entry, &mut buf).expect("encode");
        let mut expected = vec![b'r', b'c', VERSION, 1, 0];
        expected.extend_from_slice(&1u64.to_le_bytes());
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.push(7);
        assert_eq!(buf, expected);
        assert_eq!(buf.len(), HEADER_LEN + 1);
    }

    #[test]
    fn absent_and_tagged_entries_round_trip() {
        let now = Timestamp::from_millis(1_000);
        let absent: Entry<String> = Entry::absent(now, Duration::from_secs(10));
        assert_eq!(roundtrip(&absent), absent);
        let tagged = Entry::new("v".to_owned(), now, Duration::from_secs(1))
            .with_stale_window(Duration::from_secs(5))
            .with_tags(["a", "b:c"])
            .expect("tags");
        assert_eq!(roundtrip(&tagged), tagged);
    }

    #[test]
    fn foreign_and_damaged_bytes_are_rejected() {
        let entry = Entry::new(
            vec![1u32, 2],
            Timestamp::from_millis(5),
            Duration::from_secs(1),
        )
        .with_tags(["t"])
        .expect("tags");
        let mut buf = Vec::new();
        encode(&Postcard, &entry, &mut buf).expect("encode");
        assert_eq!(
            decode::<Vec<u32>, _>(&Postcard, b"hello world"),
            Err(EnvelopeError::NotAnEnvelope)
        );
        let mut v2 = buf.clone();
        v2[2] = 2;
        assert_eq!(
            decode::<Vec<u32>, _>(&Postcard, &v2),
            Err(EnvelopeError::Version(2))
        );
        let mut other_codec = buf.clone();
        other_codec[3] = 9;
        assert!(matches!(
            decode::<Vec<u32>, _>(&Postcard, &other_codec),
            Err(EnvelopeError::Codec { found: 9, .. })
        ));
        for cut in 0..buf.len() {
            assert!(
                decode::<Vec<u32>, _>(&Postcard, &buf[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut trailing = buf.clone();
        trailing.push(0);
        assert!(decode::<Vec<u32>, _>(&Postcard, &trailing).is_err());
        // Postcard is schema-less: bytes read as a type they do not fit fail (but a
        // type with the same shape, like String for Vec<u8>, would decode).
        assert!(decode::<bool, _>(&Postcard, &buf).is_err());
    }

    proptest! {
        #[test]
        fn any_entry_round_trips(
            value in proptest::option::of(any::<Vec<u16>>()),
            created in 0u64..u64::MAX / 4,
            ttl in 0u64..1u64 << 40,
            stale in 0u64..1u64 << 40,
            tags in proptest::collection::vec("[a-z0-9:_-]{1,12}", 0..4),
        ) {
            let now = Timestamp::from_millis(created);
            let entry = Entry::from_parts(
                value,
                now,
                now.saturating_add(Duration::from_millis(ttl)),
                Some(now.saturating_add(Duration::from_millis(ttl + stale))),
                Tags::new(tags).expect("tags"),
            );
            prop_assert_eq!(roundtrip(&entry), entry);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode::<Vec<u16>, _>(&Postcard, &bytes);
            let mut with_header = MAGIC.to_vec();
            with_header.extend_from_slice(&bytes);
            let _ = decode::<String, _>(&Postcard, &with_header);
        }
    }
}
