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
    ///
    /// The bytes hashed are the postcard encoding of the tuple
    /// `(prev_hash: [u8; 32], position: u64, event_id: u128, stream_id: u128, version: u64,
    /// schema_version: u16, event_type: &str, occurred_at: i64, recorded_at: i64,
    /// actor_instance: &str, actor_user: &str, link_seq: u32, payload: &[u8])`, written out
    /// here rather than through serde so that `verify` spends its time in SHA-256 and not in
    /// encoding (tests check it against postcard, and the golden chain pins the hashes):
    /// the 32 hash bytes as they are, unsigned integers as LEB128 varints, signed ones
    /// zigzagged first, strings and bytes as a varint length and the bytes.
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut p = Preimage::new();
        p.bytes(&self.prev_hash);
        p.varint(self.position);
        p.varint128(self.event_id.0);
        p.varint128(self.stream_id.0);
        p.varint(self.version);
        p.varint(u64::from(self.schema_version));
        p.len_bytes(self.event_type.as_bytes());
        p.zigzag(self.occurred_at);
        p.zigzag(self.recorded_at);
        p.len_bytes(self.actor_instance.as_bytes());
        p.len_bytes(self.actor_user.as_bytes());
        p.varint(u64::from(self.link_seq));
        p.len_bytes(&self.payload);
        p.finish()
    }
}

/// The longest LEB128 varint of a `u128`: 128 bits, seven per byte.
const MAX_VARINT: usize = 19;

/// Feeds SHA-256 an entry's preimage: short pieces gather in `buf` and reach the hasher a
/// block at a time, long ones (a payload) go straight through.
struct Preimage {
    hasher: Sha256,
    buf: [u8; 128],
    len: usize,
}

impl Preimage {
    fn new() -> Self {
        Preimage {
            hasher: Sha256::new(),
            buf: [0; 128],
            len: 0,
        }
    }

    fn flush(&mut self) {
        self.hasher.update(&self.buf[..self.len]);
        self.len = 0;
    }

    fn bytes(&mut self, b: &[u8]) {
        if b.len() > self.buf.len() - self.len {
            self.flush();
            if b.len() >= self.buf.len() {
                self.hasher.update(b);
                return;
            }
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    /// LEB128: seven bits at a time, low first, the high bit set on all but the last byte.
    /// Written straight into `buf` (a varint is at most `MAX_VARINT` bytes): going through
    /// `bytes` cost a call to `memcpy` for each one (3.6% of `verify`'s profile).
    fn varint128(&mut self, mut v: u128) {
        if self.buf.len() - self.len < MAX_VARINT {
            self.flush();
        }
        let out = &mut self.buf[self.len..self.len + MAX_VARINT];
        let mut n = 0;
        while v >= 0x80 {
            out[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        out[n] = v as u8;
        self.len += n + 1;
    }

    fn varint(&mut self, v: u64) {
        self.varint128(u128::from(v));
    }

    fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn len_bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.bytes(b);
    }

    fn finish(mut self) -> [u8; 32] {
        self.flush();
        self.hasher.finalize().into()
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
    }
}
