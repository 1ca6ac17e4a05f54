//! Turning a partner's outbox into signed messages, independent of the transport.

use anyhow::Result;
use ticketsync_app::Instance;
use ticketsync_store::{ChannelEntry, Partner};
use ticketsync_wire::channel::{Message, WireEntry, MAX_ENTRIES_PER_MESSAGE, MAX_MESSAGE_BYTES};

/// Groups outbox entries into messages within the size and count limits.
pub fn pack(entries: Vec<ticketsync_store::ChannelEntry>) -> Vec<Vec<WireEntry>> {
    let mut out: Vec<Vec<WireEntry>> = vec![];
    let mut cur: Vec<WireEntry> = vec![];
    let mut bytes = 0usize;
    for e in entries {
        let size = e.body.len() + 80;
        if !cur.is_empty()
            && (cur.len() >= MAX_ENTRIES_PER_MESSAGE || bytes + size > MAX_MESSAGE_BYTES)
        {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += size;
        cur.push(WireEntry {
            seq: e.seq,
            prev_hash: e.prev_hash,
            hash: e.hash,
            body: e.body,
        });
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The signed messages carrying the outbox entries to `partner` after seq `after`
/// (at most `limit` entries), with the last seq each carries.
pub async fn outbound_messages(
    inst: &Instance,
    partner: &Partner,
    after: u64,
    limit: u32,
) -> Result<Vec<(u64, Vec<u8>)>> {
    let me = inst.name().to_string();
    let entries: Vec<ChannelEntry> = inst.store.read_outbox(&partner.name, after, limit).await?;
    Ok(pack(entries)
        .into_iter()
        .map(|chunk| {
            let last = chunk[chunk.len() - 1].seq;
            (
                last,
                Message::sealed(&me, &partner.name, chunk, &partner.secret).encode(),
            )
        })
        .collect())
}
