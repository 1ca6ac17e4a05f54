//! Log entries and the SHA-256 chain that commits each entry to everything before it.

use serde::Serialize;
use sha2::{Digest, Sha256};
use ulid::Ulid;

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// An event as the caller hands it to the log, before it has a position or a hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry {
    pub event_id: Ulid,
    /// The ticket (or other stream) the event belongs to.
    pub stream_id: Ulid,
    pub schema_version: u16,
    pub event_type: String,
    /// When the actor did it, ms since the epoch, on the instance that authored it.
    pub occurred_at: i64,
    pub actor_instance: String,
    pub actor_user: String,
    /// Outsourcing transitions of the ticket its author knew when deciding (0: none).
    /// Orders concurrent transitions and tells whether an item was authored on a live link.
    pub link_seq: u32,
    pub payload: Vec<u8>,
}

/// One entry of the append-only log, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// 1-based, contiguous position in this instance's log.
    pub position: u64,
    pub event_id: Ulid,
    pub stream_id: Ulid,
    /// 1-based version of the event within its stream.
    pub version: u64,
    pub schema_version: u16,
    pub event_type: String,
    pub occurred_at: i64,
    /// When this instance appended it, ms since the epoch.
    pub recorded_at: i64,
    pub actor_instance: String,
    pub actor_user: String,
    pub link_seq: u32,
    pub payload: Vec<u8>,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

impl LogEntry {
    /// Builds the entry that follows `prev_hash` at `position`, computing its hash.
    pub fn seal(
        new: NewEntry,
        position: u64,
        version: u64,
        recorded_at: i64,
        prev_hash: [u8; 32],
    ) -> Self {
        let mut e = LogEntry {
            position,
            event_id: new.event_id,
            stream_id: new.stream_id,
            version,
            schema_version: new.schema_version,
            event_type: new.event_type,
            occurred_at: new.occurred_at,
            recorded_at,
            actor_instance: new.actor_instance,
            actor_user: new.actor_user,
            link_seq: new.link_seq,
            payload: new.payload,
            prev_hash,
            hash: [0; 32],
        };
        e.hash = e.compute_hash();
        e
    }

    /// SHA-256 over `prev_hash` and every field of the entry. Because the position is part
    /// of it, swapping two entries breaks the chain even when their contents are intact.
    /// See [`EntryFields`] for the bytes hashed.
    pub fn compute_hash(&self) -> [u8; 32] {
        EntryHasher::default().hash(&self.fields())
    }

    /// The entry's hashed fields, borrowed.
    pub fn fields(&self) -> EntryFields<'_> {
        EntryFields {
            prev_hash: &self.prev_hash,
            position: self.position,
            event_id: self.event_id.0,
            stream_id: self.stream_id.0,
            version: self.version,
            schema_version: self.schema_version,
            event_type: &self.event_type,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            actor_instance: &self.actor_instance,
            actor_user: &self.actor_user,
            link_seq: self.link_seq,
            payload: &self.payload,
        }
    }
}

/// What an entry's hash commits to, borrowed from wherever the entry is: a [`LogEntry`], or
/// the column values of a database row, which `verify` hashes in place rather than copying
/// every string and payload into a `LogEntry` first.
///
/// The bytes hashed are the postcard encoding of the tuple
/// `(prev_hash: [u8; 32], position: u64, event_id: u128, stream_id: u128, version: u64,
/// schema_version: u16, event_type: &str, occurred_at: i64, recorded_at: i64,
/// actor_instance: &str, actor_user: &str, link_seq: u32, payload: &[u8])`, written out
/// here rather than through serde so that `verify` spends its time in SHA-256 and not in
/// encoding (tests check it against postcard, and the golden chain pins the hashes):
/// the 32 hash bytes as they are, unsigned integers as LEB128 varints, signed ones
/// zigzagged first, strings and bytes as a varint length and the bytes.
#[derive(Clone, Copy, Debug)]
pub struct EntryFields<'a> {
    pub prev_hash: &'a [u8; 32],
    pub position: u64,
    pub event_id: u128,
    pub stream_id: u128,
    pub version: u64,
    pub schema_version: u16,
    pub event_type: &'a str,
    pub occurred_at: i64,
    pub recorded_at: i64,
    pub actor_instance: &'a str,
    pub actor_user: &'a str,
    pub link_seq: u32,
    pub payload: &'a [u8],
}

/// The longest LEB128 varint of a `u128`: 128 bits, seven per byte.
const MAX_VARINT: usize = 19;
/// The longest preimage of an entry apart from its strings and payload: the previous
/// hash and at most eleven varints (eight numbers and three lengths, counted generously).
const MAX_FIXED: usize = 32 + 11 * MAX_VARINT + MAX_VARINT;

/// Computes entry hashes one after another: each entry's preimage is laid out in one
/// buffer, kept from entry to entry, and hashed in one call. Hashing a contiguous
/// preimage is what the bare chain `make bench` compares `verify` with does; feeding the
/// hasher piece by piece cost a copy into its block buffer per piece and a call per field.
#[derive(Debug, Default)]
pub struct EntryHasher {
    buf: Vec<u8>,
}

impl EntryHasher {
    /// The hash of the entry with these fields.
    pub fn hash(&mut self, f: &EntryFields<'_>) -> [u8; 32] {
        let most = MAX_FIXED
            + f.event_type.len()
            + f.actor_instance.len()
            + f.actor_user.len()
            + f.payload.len();
        // Grown to the longest entry seen and never shrunk, and not cleared: every byte
        // hashed is written first.
        if self.buf.len() < most {
            self.buf.resize(most, 0);
        }
        let mut w = Writer {
            buf: &mut self.buf,
            len: 0,
        };
        w.bytes(f.prev_hash);
        w.varint(f.position);
        w.varint128(f.event_id);
        w.varint128(f.stream_id);
        w.varint(f.version);
        w.varint(u64::from(f.schema_version));
        w.len_bytes(f.event_type.as_bytes());
        w.zigzag(f.occurred_at);
        w.zigzag(f.recorded_at);
        w.len_bytes(f.actor_instance.as_bytes());
        w.len_bytes(f.actor_user.as_bytes());
        w.varint(u64::from(f.link_seq));
        w.len_bytes(f.payload);
        let len = w.len;
        Sha256::digest(&self.buf[..len]).into()
    }
}

/// Writes a preimage into a buffer long enough for it. Varints are written a byte at a
/// time in place: appending each from a scratch array cost a call to `memcpy` apiece.
struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    /// LEB128: seven bits at a time, low first, the high bit set on all but the last byte.
    /// While more than 63 bits are left, nine whole groups are written from the low 64
    /// bits: a `u128` shifted seven bits at a time was half of the hasher's own time.
    fn varint128(&mut self, mut v: u128) {
        while v >> 63 != 0 {
            let low = v as u64;
            for (k, out) in self.buf[self.len..self.len + 9].iter_mut().enumerate() {
                *out = (low >> (7 * k)) as u8 | 0x80;
            }
            self.len += 9;
            v >>= 63;
        }
        self.varint(v as u64);
    }

    /// [`Writer::varint128`] for the narrower integers, in 64-bit arithmetic.
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf[self.len] = (v as u8) | 0x80;
            v >>= 7;
            self.len += 1;
        }
        self.buf[self.len] = v as u8;
        self.len += 1;
    }

    fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn len_bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.bytes(b);
    }
}

#[derive(Serialize)]
struct ChannelInput<'a> {
    prev_hash: &'a [u8; 32],
    seq: u64,
    from: &'a str,
    to: &'a str,
    body: &'a [u8],
}

/// The hash of entry `seq` of the channel from `from` to `to`: SHA-256 over the previous
/// entry's hash, the seq, both instance names and the body. Naming the channel in the hash
/// means an entry cannot be replayed onto another channel.
pub fn channel_hash(prev_hash: &[u8; 32], seq: u64, from: &str, to: &str, body: &[u8]) -> [u8; 32] {
    let input = ChannelInput {
        prev_hash,
        seq,
        from,
        to,
        body,
    };
    let bytes = postcard::to_stdvec(&input).unwrap_or_default();
    Sha256::digest(&bytes).into()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The layout `compute_hash` writes by hand, as serde types: postcard of this is the
    /// definition of the preimage.
    #[derive(Serialize)]
    struct ChainInput<'a> {
        prev_hash: &'a [u8; 32],
        position: u64,
        event_id: u128,
        stream_id: u128,
        version: u64,
        schema_version: u16,
        event_type: &'a str,
        occurred_at: i64,
        recorded_at: i64,
        actor_instance: &'a str,
        actor_user: &'a str,
        link_seq: u32,
        payload: &'a [u8],
    }

    fn postcard_hash(e: &LogEntry) -> [u8; 32] {
        let input = ChainInput {
            prev_hash: &e.prev_hash,
            position: e.position,
            event_id: e.event_id.0,
            stream_id: e.stream_id.0,
            version: e.version,
            schema_version: e.schema_version,
            event_type: &e.event_type,
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            actor_instance: &e.actor_instance,
            actor_user: &e.actor_user,
            link_seq: e.link_seq,
            payload: &e.payload,
        };
        Sha256::digest(postcard::to_stdvec(&input).expect("encodes")).into()
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        position: u64,
        ids: (u128, u128),
        version: u64,
        schema_version: u16,
        event_type: String,
        times: (i64, i64),
        actors: (String, String),
        link_seq: u32,
        payload: Vec<u8>,
        prev_hash: [u8; 32],
    ) -> LogEntry {
        LogEntry {
            position,
            event_id: Ulid(ids.0),
            stream_id: Ulid(ids.1),
            version,
            schema_version,
            event_type,
            occurred_at: times.0,
            recorded_at: times.1,
            actor_instance: actors.0,
            actor_user: actors.1,
            link_seq,
            payload,
            prev_hash,
            hash: [0; 32],
        }
    }

    #[test]
    fn the_hash_is_postcards_at_the_edges_of_every_varint() {
        for (u, i) in [
            (0u64, 0i64),
            (127, -64),
            (128, 64),
            (u64::MAX, i64::MIN),
            (u64::MAX >> 1, i64::MAX),
        ] {
            for id in [0u128, 127, 128, u128::MAX] {
                let e = entry(
                    u,
                    (id, u128::MAX - id),
                    u,
                    u as u16,
                    "t".repeat((u % 300) as usize),
                    (i, !i),
                    ("acme".into(), String::new()),
                    u as u32,
                    vec![0xab; (u % 1000) as usize],
                    [0xff; 32],
                );
                assert_eq!(e.compute_hash(), postcard_hash(&e), "{u} {i} {id}");
            }
        }
    }

    proptest! {
        /// The preimage written by hand is byte for byte the postcard encoding, whatever the
        /// values and lengths (short pieces gathered, long ones passed through).
        #[test]
        fn the_hash_is_sha256_of_the_postcard_bytes(
            position in any::<u64>(),
            ids in any::<(u128, u128)>(),
            version in any::<u64>(),
            schema_version in any::<u16>(),
            event_type in ".{0,80}",
            times in any::<(i64, i64)>(),
            actor_instance in ".{0,70}",
            actor_user in ".{0,70}",
            link_seq in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            prev_hash in any::<[u8; 32]>(),
        ) {
            let e = entry(
                position,
                ids,
                version,
                schema_version,
                event_type,
                times,
                (actor_instance, actor_user),
                link_seq,
                payload,
                prev_hash,
            );
            let want = postcard_hash(&e);
            prop_assert_eq!(e.compute_hash(), want);
        }

        /// One hasher kept across entries (as `verify` keeps it) hashes each as a fresh
        /// one would: nothing of a longer entry before shows through.
        #[test]
        fn a_reused_hasher_hashes_each_entry_as_a_fresh_one(
            entries in proptest::collection::vec(
                (any::<u64>(), any::<(u128, u128)>(), ".{0,40}", ".{0,20}",
                 proptest::collection::vec(any::<u8>(), 0..400), any::<[u8; 32]>()),
                1..8,
            ),
        ) {
            let mut hasher = EntryHasher::default();
            for (n, ids, event_type, actor_user, payload, prev_hash) in entries {
                let e = entry(
                    n,
                    ids,
                    n / 3,
                    n as u16,
                    event_type,
                    (n as i64, -(n as i64)),
                    ("acme".into(), actor_user),
                    n as u32,
                    payload,
                    prev_hash,
                );
                prop_assert_eq!(hasher.hash(&e.fields()), postcard_hash(&e));
            }
        }
    }
}
