//! Types of the replication tables: partners, channel entries, quarantine records.

use ticketsync_wire::channel_hash;

/// How far pairing with a partner has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartnerState {
    /// We invited it; its hello has not arrived yet.
    Invited,
    /// Both sides know each other.
    Paired,
}

impl PartnerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PartnerState::Invited => "invited",
            PartnerState::Paired => "paired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "invited" => Some(PartnerState::Invited),
            "paired" => Some(PartnerState::Paired),
            _ => None,
        }
    }
}

/// One partner instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partner {
    pub name: String,
    pub state: PartnerState,
    /// Shared secret from the invitation; authenticates every message of the pair.
    pub secret: [u8; 32],
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub paired_at: Option<i64>,
    /// On the partner side: this instance's organization the lead is mapped to.
    pub organization: Option<String>,
}

/// A body to send to a partner, chosen in the append transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub from: String,
    pub to: String,
    /// The log event it carries, if any.
    pub event_id: Option<String>,
    pub body: Vec<u8>,
}

/// One entry of a channel (outbound as stored, or inbound as received).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelEntry {
    pub seq: u64,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    pub body: Vec<u8>,
}

/// The last entry of a channel (seq 0 and the genesis hash when empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelHead {
    pub seq: u64,
    pub hash: [u8; 32],
}

impl ChannelHead {
    /// Why inbound `entry` of the channel `from` → `to` cannot be applied after this head,
    /// if it cannot: already applied, past a gap, or not continuing the chain.
    pub(crate) fn refuses(&self, entry: &ChannelEntry, from: &str, to: &str) -> Option<Inbound> {
        if entry.seq <= self.seq {
            return Some(Inbound::Duplicate);
        }
        if entry.seq > self.seq + 1 {
            return Some(Inbound::Gap {
                expected: self.seq + 1,
            });
        }
        if entry.prev_hash != self.hash
            || channel_hash(&entry.prev_hash, entry.seq, from, to, &entry.body) != entry.hash
        {
            return Some(Inbound::BrokenChain);
        }
        None
    }
}

/// A refused inbound message or entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantineRecord {
    pub id: i64,
    pub partner: String,
    pub seq: Option<u64>,
    pub event_id: Option<String>,
    pub kind: String,
    pub detail: String,
    pub body: Option<Vec<u8>>,
    pub received_at: i64,
}

/// What `apply_inbound` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// The entry was the next one: its events (minus any already held) were appended,
    /// or its quarantine recorded, and the channel checkpoint moved to it.
    Applied { appended: usize },
    /// The entry was already applied (seq at or below the checkpoint).
    Duplicate,
    /// The entry is ahead of the checkpoint: the entries in between are missing.
    Gap { expected: u64 },
    /// The entry's prev_hash is not the checkpoint's hash (or its own hash is wrong).
    BrokenChain,
}
