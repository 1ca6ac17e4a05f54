//! Serde adapters that write ids and digests compactly in postcard and readably in JSON.
//!
//! Postcard is not human-readable, so a ULID goes out as a `u128` and a digest as 32 raw
//! bytes; JSON gets the 26-character ULID string and lowercase hex.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

/// `#[serde(with = "crate::serde_bytes::ulid")]`
pub mod ulid_id {
    use super::*;

    pub fn serialize<S: Serializer>(u: &Ulid, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&u.to_string())
        } else {
            s.serialize_u128(u.0)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Ulid::from_string(&s).map_err(|e| D::Error::custom(format!("bad ULID {s:?}: {e}")))
        } else {
            u128::deserialize(d).map(Ulid)
        }
    }
}

/// `#[serde(with = "crate::serde_bytes::digest")]` for `[u8; 32]`.
pub mod digest {
    use super::*;

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(h))
        } else {
            h.serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            let mut out = [0u8; 32];
            hex::decode_to_slice(&s, &mut out)
                .map_err(|e| D::Error::custom(format!("bad SHA-256 hex {s:?}: {e}")))?;
            Ok(out)
        } else {
            <[u8; 32]>::deserialize(d)
        }
    }
}
