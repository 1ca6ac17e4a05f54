//! The replication protocol's bytes: what a channel entry carries, the message that
//! carries entries over NATS, and the HMAC that authenticates it with the pair's secret.
//!
//! A channel is one direction between two instances (`from` → `to`). Each entry has a
//! 1-based `seq`, the previous entry's hash and its own (`chain::channel_hash`), so the
//! receiver detects gaps, duplicates and forgeries. A message carries consecutive entries
//! and an HMAC-SHA256 over everything else in it, keyed by the secret the two instances
//! share since pairing: a client that does not hold it cannot make a message the receiver
//! accepts.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use ulid::Ulid;

use crate::chain::NewEntry;

/// Protocol version written into every message.
pub const PROTOCOL_VERSION: u8 = 1;
/// Attachment content travels in chunks of at most this many bytes.
pub const BLOB_CHUNK_BYTES: usize = 256 * 1024;
/// Largest message accepted or built, in bytes (NATS' default max payload is 1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 900 * 1024;
/// Most entries carried by one message.
pub const MAX_ENTRIES_PER_MESSAGE: usize = 256;

/// What one channel entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelBody {
    /// The partner joined with an invitation: pairing completes when the lead gets this.
    Hello { organization: Option<String> },
    /// One event of the sender's log.
    Event(ReplicatedEvent),
    /// A piece of an attachment's content; the event that refers to it follows.
    Blob {
        sha256: [u8; 32],
        offset: u64,
        total: u64,
        bytes: Vec<u8>,
    },
}

/// An event as it crosses instances: its id, ticket, author and payload, as logged by the
/// sender (the author's instance is the channel's sender).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicatedEvent {
    pub event_id: u128,
    pub ticket_id: u128,
    pub schema_version: u16,
    pub event_type: String,
    pub occurred_at: i64,
    pub actor_user: String,
    pub link_seq: u32,
    pub payload: Vec<u8>,
}

impl ReplicatedEvent {
    pub fn of(e: &NewEntry) -> Self {
        ReplicatedEvent {
            event_id: e.event_id.0,
            ticket_id: e.stream_id.0,
            schema_version: e.schema_version,
            event_type: e.event_type.clone(),
            occurred_at: e.occurred_at,
            actor_user: e.actor_user.clone(),
            link_seq: e.link_seq,
            payload: e.payload.clone(),
        }
    }
    pub fn event_ulid(&self) -> Ulid {
        Ulid(self.event_id)
    }
    pub fn ticket_ulid(&self) -> Ulid {
        Ulid(self.ticket_id)
    }
}

impl ChannelBody {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        match postcard::take_from_bytes::<ChannelBody>(bytes) {
            Ok((b, [])) => Ok(b),
            Ok((_, rest)) => Err(format!("{} trailing bytes", rest.len())),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// One entry as carried in a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    pub seq: u64,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    pub body: Vec<u8>,
}

/// What is published on a channel's subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub v: u8,
    pub from: String,
    pub to: String,
    pub entries: Vec<WireEntry>,
    pub mac: [u8; 32],
}

/// Control messages (not part of the chain): sent over core NATS, authenticated the same way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Receiver → sender: publish again from this seq (a gap was seen).
    Resend { from_seq: u64 },
    /// Sender → receiver: the head of the channel, so a receiver that missed the tail
    /// (a wiped broker) notices and asks for a resend.
    Head { seq: u64, hash: [u8; 32] },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlMessage {
    pub v: u8,
    pub from: String,
    pub to: String,
    pub control: Control,
    pub mac: [u8; 32],
}

fn mac_of(secret: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length; a 32-byte key cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    for p in parts {
        m.update(&(p.len() as u64).to_le_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn unsigned(v: u8, from: &str, to: &str, payload: &[u8]) -> Vec<Vec<u8>> {
    vec![
        vec![v],
        from.as_bytes().to_vec(),
        to.as_bytes().to_vec(),
        payload.to_vec(),
    ]
}

impl Message {
    /// Builds and signs a message.
    pub fn sealed(from: &str, to: &str, entries: Vec<WireEntry>, secret: &[u8; 32]) -> Message {
        let mut m = Message {
            v: PROTOCOL_VERSION,
            from: from.into(),
            to: to.into(),
            entries,
            mac: [0; 32],
        };
        m.mac = m.expected_mac(secret);
        m
    }
    fn expected_mac(&self, secret: &[u8; 32]) -> [u8; 32] {
        let entries = postcard::to_stdvec(&self.entries).unwrap_or_default();
        let parts = unsigned(self.v, &self.from, &self.to, &entries);
        mac_of(secret, &parts.iter().map(Vec::as_slice).collect::<Vec<_>>())
    }
    /// True when the MAC was made with `secret` over this very content.
    pub fn authentic(&self, secret: &[u8; 32]) -> bool {
        use subtle_eq::ct_eq;
        ct_eq(&self.expected_mac(secret), &self.mac)
    }
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
    pub fn decode(bytes: &[u8]) -> Result<Message, String> {
        match postcard::take_from_bytes::<Message>(bytes) {
            Ok((m, [])) if m.v == PROTOCOL_VERSION => Ok(m),
            Ok((m, [])) => Err(format!(
                "protocol version {} is not {PROTOCOL_VERSION}",
                m.v
            )),
            Ok((_, rest)) => Err(format!("{} trailing bytes", rest.len())),
            Err(e) => Err(format!("not a ticketsync message: {e}")),
        }
    }
}

impl ControlMessage {
    pub fn sealed(from: &str, to: &str, control: Control, secret: &[u8; 32]) -> ControlMessage {
        let mut m = ControlMessage {
            v: PROTOCOL_VERSION,
            from: from.into(),
            to: to.into(),
            control,
            mac: [0; 32],
        };
        m.mac = m.expected_mac(secret);
        m
    }
    fn expected_mac(&self, secret: &[u8; 32]) -> [u8; 32] {
        let c = postcard::to_stdvec(&self.control).unwrap_or_default();
        let parts = unsigned(self.v, &self.from, &self.to, &c);
        mac_of(secret, &parts.iter().map(Vec::as_slice).collect::<Vec<_>>())
    }
    pub fn authentic(&self, secret: &[u8; 32]) -> bool {
        subtle_eq::ct_eq(&self.expected_mac(secret), &self.mac)
    }
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
    pub fn decode(bytes: &[u8]) -> Result<ControlMessage, String> {
        match postcard::take_from_bytes::<ControlMessage>(bytes) {
            Ok((m, [])) => Ok(m),
            Ok((_, rest)) => Err(format!("{} trailing bytes", rest.len())),
            Err(e) => Err(e.to_string()),
        }
    }
}

mod subtle_eq {
    /// Compares two MACs in time independent of where they differ.
    pub fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The invitation a lead gives a partner: who invites whom, the pair's secret, and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub lead: String,
    pub partner: String,
    pub secret: [u8; 32],
    /// ms since the epoch.
    pub expires_at: i64,
}

/// Prefix of an invitation code.
pub const INVITATION_PREFIX: &str = "tsinv1-";

impl Invitation {
    /// The code printed by `partner invite`: prefix and lowercase hex.
    pub fn code(&self) -> String {
        format!(
            "{INVITATION_PREFIX}{}",
            hex::encode(postcard::to_stdvec(self).unwrap_or_default())
        )
    }
    pub fn parse(code: &str) -> Result<Invitation, String> {
        let hexpart = code
            .trim()
            .strip_prefix(INVITATION_PREFIX)
            .ok_or_else(|| format!("an invitation code starts with {INVITATION_PREFIX:?}"))?;
        let bytes = hex::decode(hexpart)
            .map_err(|_| "the invitation code is damaged (not hex)".to_string())?;
        match postcard::take_from_bytes::<Invitation>(&bytes) {
            Ok((i, [])) => Ok(i),
            _ => Err("the invitation code is damaged".into()),
        }
    }
}

/// NATS subject of the data channel `from` → `to`.
pub fn data_subject(from: &str, to: &str) -> String {
    format!("ticketsync.data.{from}.{to}")
}

/// NATS subject of control messages for the channel `from` → `to`, addressed to `to`.
pub fn control_subject(from: &str, to: &str) -> String {
    format!("ticketsync.ctl.{from}.{to}")
}

/// JetStream stream holding the data channel `from` → `to`.
pub fn stream_name(from: &str, to: &str) -> String {
    format!("TICKETSYNC_{from}_{to}")
}
