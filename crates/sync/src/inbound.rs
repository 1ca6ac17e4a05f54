//! Applying what a partner sent: authenticate the message, then for each entry check its
//! place in the channel and its chain, decide what the domain makes of it, and record
//! the result (events, or a quarantine) with the channel checkpoint in one transaction.
//! Independent of the transport, so it is exercised in memory as well as over NATS.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};
use ticketsync_app::{now_ms, Instance, MAX_CONFLICT_RETRIES};
use ticketsync_domain::sync::{receive, Incoming, SYSTEM_USER};
use ticketsync_domain::{self as domain, Actor, EventMeta, InstanceId, TicketId, Timestamp};
use ticketsync_store::{
    ChannelEntry, ChannelHead, Inbound, Partner, PartnerState, StoreError, StreamAppend,
};
use ticketsync_wire::channel::{ChannelBody, Message, ReplicatedEvent};
use ticketsync_wire::{decode_event, encode_event, NewEntry, SCHEMA_VERSION};
use ulid::Ulid;

/// What one message did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Entries applied (events recorded, hello taken, blob chunk stored).
    pub applied: u64,
    /// Entries refused and quarantined (they still advance the channel).
    pub quarantined: u64,
    /// Entries already applied before.
    pub duplicates: u64,
    /// Messages refused as a whole (undecodable, wrong channel, bad MAC, broken chain).
    pub rejected_messages: u64,
    /// A gap: the first missing seq, to ask the sender for.
    pub gap: Option<u64>,
    /// Tickets on which an applied event completed a link, each once (the partner then
    /// issues its invoice).
    pub completed: Vec<TicketId>,
}

impl Outcome {
    fn completed_by(&mut self, t: TicketId, event_type: &str) {
        if completes_link(event_type) {
            self.completed_on(t);
        }
    }

    /// Notes a ticket on which an applied event completed a link (once).
    fn completed_on(&mut self, t: TicketId) {
        if !self.completed.contains(&t) {
            self.completed.push(t);
        }
    }

    /// Notes the ticket of an applied entry whose event completes a link.
    fn completed_by_entry(&mut self, entry: &ChannelEntry) {
        if let Ok(ChannelBody::Event(re)) = ChannelBody::decode(&entry.body) {
            self.completed_by(TicketId(re.ticket_ulid()), &re.event_type);
        }
    }
}

/// Whether an event of this type completes a link (the partner then issues its invoice).
fn completes_link(event_type: &str) -> bool {
    domain::Event::LINK_COMPLETING_TYPE_NAMES.contains(&event_type)
}

/// Applies one raw message received on the channel from `partner` to this instance.
pub async fn apply_message(inst: &Instance, partner: &Partner, raw: &[u8]) -> Result<Outcome> {
    apply_messages(inst, partner, &[raw]).await
}

/// Applies consecutive raw messages received on the channel from `partner`, in order, as
/// `apply_message` applies each, but with the plain events of all of them committed in
/// as few transactions as [`MAX_RUN_ENTRIES`] allows: fewer commits (and fsyncs) per entry
/// when messages queue up. Everything they did is committed when it returns, so the caller
/// may acknowledge every one of them then (and none before).
pub async fn apply_messages(inst: &Instance, partner: &Partner, raws: &[&[u8]]) -> Result<Outcome> {
    let mut out = Outcome::default();
    let mut run = Run::default();
    // Where the channel is once the prepared run is written; `None`: read it from the store.
    let mut head: Option<ChannelHead> = None;
    for raw in raws {
        apply_one(inst, partner, raw, &mut run, &mut head, &mut out).await?;
    }
    run.flush(inst, partner, &mut out).await?;
    if let Some(g) = out.gap {
        // A later message of the same batch may have filled the gap (a redelivery in
        // order behind one that ran ahead): ask for nothing then.
        if inst.store.inbound_head(&partner.name).await?.seq >= g {
            out.gap = None;
        }
    }
    Ok(out)
}

/// One message of `apply_messages`: its plain events join `run` (written when it is full,
/// or before anything that is written on its own), `head` follows what is prepared.
async fn apply_one(
    inst: &Instance,
    partner: &Partner,
    raw: &[u8],
    run: &mut Run,
    head_slot: &mut Option<ChannelHead>,
    out: &mut Outcome,
) -> Result<()> {
    let me = inst.name().to_string();
    let reject = |kind: &'static str, detail: String| async move {
        tracing::warn!(partner = %partner.name, kind, %detail, "message quarantined");
        inst.store
            .quarantine_message(&partner.name, kind, &detail, raw, now_ms())
            .await
    };
    let checked = match Message::decode(raw) {
        Err(e) => Err(("undecodable", e)),
        Ok(m) if m.from != partner.name || m.to != me => Err((
            "wrong_channel",
            format!(
                "a message from {} to {} arrived on the channel from {} to {me}",
                m.from, m.to, partner.name
            ),
        )),
        Ok(m) if !m.authentic(&partner.secret) => Err((
            "bad_mac",
            format!(
                "the message is not signed with the secret shared with {}",
                partner.name
            ),
        )),
        Ok(m) => Ok(m),
    };
    let msg = match checked {
        Ok(m) => m,
        Err((kind, detail)) => {
            // Refused as a whole. What the messages before it prepared is written first,
            // so the records keep the order of the messages.
            run.flush(inst, partner, out).await?;
            *head_slot = None;
            reject(kind, detail).await?;
            out.rejected_messages += 1;
            return Ok(());
        }
    };
    // Plain events are prepared in memory and committed together, one transaction for a
    // run of them (with the channel checkpoint); anything else (hello, attachment content,
    // a refusal) goes through `apply_entry` on its own after the run before it is written.
    // The head is the store's unless a prepared run continues it.
    let mut head = match head_slot.take() {
        Some(h) if !run.items.is_empty() => h,
        _ => inst.store.inbound_head(&partner.name).await?,
    };
    // The states of the tickets this message's new events touch, read in one go: each
    // would otherwise be a store read of its own (a snapshot miss on most tickets).
    let events: Vec<Option<ReplicatedEvent>> = msg
        .entries
        .iter()
        .map(|w| match ChannelBody::decode(&w.body) {
            Ok(ChannelBody::Event(re)) if w.seq > head.seq => Some(re),
            _ => None,
        })
        .collect();
    let mut missing: Vec<TicketId> = Vec::new();
    for re in events.iter().flatten() {
        let t = TicketId(re.ticket_ulid());
        if !run.states.contains_key(&t) && !missing.contains(&t) {
            missing.push(t);
        }
    }
    if !missing.is_empty() {
        let states = inst.take_states(&missing).await?;
        run.states.extend(missing.into_iter().zip(states));
    }
    for (w, re) in msg.entries.into_iter().zip(events) {
        let entry = ChannelEntry {
            seq: w.seq,
            prev_hash: w.prev_hash,
            hash: w.hash,
            body: w.body,
        };
        if entry.seq == head.seq && entry.hash != head.hash {
            if !run.flush(inst, partner, out).await? {
                break;
            }
            // Another entry already took this seq: the sender's channel forked (someone
            // holding the pair's secret published behind its daemon). Say so loudly.
            reject(
                "channel_fork",
                format!(
                    "entry {} differs from the one already applied at that seq; the channel from {} has forked",
                    entry.seq, partner.name
                ),
            )
            .await?;
            out.rejected_messages += 1;
            break;
        }
        if entry.seq <= head.seq {
            out.duplicates += 1;
            continue;
        }
        if entry.seq > head.seq + 1 {
            if run.flush(inst, partner, out).await? {
                out.gap = Some(head.seq + 1);
            }
            break;
        }
        if let Some(batch) = prepare(inst, partner, re, &mut run.states).await? {
            head = ChannelHead {
                seq: entry.seq,
                hash: entry.hash,
            };
            run.items.push((entry, batch));
            if run.items.len() >= MAX_RUN_ENTRIES && !run.flush(inst, partner, out).await? {
                break;
            }
            continue;
        }
        if !run.flush(inst, partner, out).await? {
            break;
        }
        let stop = match apply_entry(inst, partner, &entry).await? {
            (Inbound::Applied { .. }, quarantined) => {
                if quarantined {
                    out.quarantined += 1;
                } else {
                    out.applied += 1;
                    out.completed_by_entry(&entry);
                }
                false
            }
            (Inbound::Duplicate, _) => {
                out.duplicates += 1;
                false
            }
            (Inbound::Gap { expected }, _) => {
                out.gap = Some(expected);
                true
            }
            (Inbound::BrokenChain, _) => {
                reject(
                    "broken_chain",
                    format!(
                        "entry {} does not continue the channel's hash chain",
                        entry.seq
                    ),
                )
                .await?;
                out.rejected_messages += 1;
                true
            }
        };
        if stop {
            break;
        }
        head = inst.store.inbound_head(&partner.name).await?;
    }
    *head_slot = Some(head);
    Ok(())
}

/// Most entries committed in one inbound transaction.
pub const MAX_RUN_ENTRIES: usize = 1_024;

/// Consecutive plain events prepared in memory, not yet written; with the ticket states
/// they leave (taken out of the instance's snapshot cache, handed back after the commit).
#[derive(Default)]
struct Run {
    items: Vec<(ChannelEntry, Vec<StreamAppend>)>,
    /// Per ticket: the state after the prepared events and the stream version it is at.
    states: HashMap<TicketId, (Option<domain::Ticket>, u64)>,
}

impl Run {
    /// Writes the prepared entries in one transaction and counts them into `out`. Returns
    /// false when the message must not be read further (a broken chain or a gap).
    async fn flush(
        &mut self,
        inst: &Instance,
        partner: &Partner,
        out: &mut Outcome,
    ) -> Result<bool> {
        if self.items.is_empty() {
            // Nothing prepared: the states are plain folds of what the store holds (read
            // ahead for entries that were not prepared after all), kept for the next use.
            for (id, (state, version)) in self.states.drain() {
                inst.remember(id, version, state);
            }
            return Ok(true);
        }
        let me = inst.name().to_string();
        let items = std::mem::take(&mut self.items);
        let states = std::mem::take(&mut self.states);
        let meta = RunMeta::of(&items);
        let result = inst
            .store
            .apply_inbound_many(&partner.name, &me, now_ms(), items)
            .await;
        let (go_on, exact) = meta.finish(inst, partner, result, out).await?;
        // The states are the streams' exact folds only if every event went in as prepared
        // (none already held, none left out); otherwise fold again later.
        if exact {
            for (id, (state, version)) in states {
                inst.remember(id, version, state);
            }
        }
        Ok(go_on)
    }
}

/// What a run's outcome is told from once its commit is done (the prepared events
/// themselves went to the store).
struct RunMeta {
    /// The run's channel entries, for a quarantine record or to apply them one by one.
    entries: Vec<ChannelEntry>,
    /// Per entry: how many events it was prepared to append.
    expected: Vec<usize>,
    /// Per entry that carries one, the ticket of an event completing a link.
    completing: Vec<(usize, TicketId)>,
}

impl RunMeta {
    fn of(items: &[(ChannelEntry, Vec<StreamAppend>)]) -> RunMeta {
        let mut completing = Vec::new();
        for (i, (_, parts)) in items.iter().enumerate() {
            for b in parts {
                if b.entries.iter().any(|e| completes_link(&e.event_type)) {
                    completing.push((i, TicketId(b.stream_id)));
                }
            }
        }
        RunMeta {
            entries: items.iter().map(|(e, _)| e.clone()).collect(),
            expected: items
                .iter()
                .map(|(_, b)| b.iter().map(|p| p.entries.len()).sum())
                .collect(),
            completing,
        }
    }

    /// Counts what the run's commit did into `out`. Returns whether the message may be
    /// read further (false after a broken chain or a gap) and whether every entry went in
    /// exactly as prepared (so the prepared ticket states and channel head are the store's).
    async fn finish(
        self,
        inst: &Instance,
        partner: &Partner,
        result: Result<Vec<Inbound>, StoreError>,
        out: &mut Outcome,
    ) -> Result<(bool, bool)> {
        match result {
            Ok(results) => {
                let mut exact = results.len() == self.expected.len();
                let mut go_on = true;
                for (i, r) in results.iter().enumerate() {
                    match r {
                        Inbound::Applied { appended } => {
                            exact &= *appended == self.expected[i];
                            out.applied += 1;
                            for (_, t) in self.completing.iter().filter(|(k, _)| *k == i) {
                                out.completed_on(*t);
                            }
                        }
                        Inbound::Duplicate => {
                            exact = false;
                            out.duplicates += 1;
                        }
                        Inbound::Gap { expected } => {
                            exact = false;
                            out.gap = Some(*expected);
                            go_on = false;
                        }
                        Inbound::BrokenChain => {
                            exact = false;
                            let entry = &self.entries[i];
                            tracing::warn!(partner = %partner.name, seq = entry.seq, "broken chain");
                            inst.store
                                .quarantine_message(
                                    &partner.name,
                                    "broken_chain",
                                    &format!(
                                        "entry {} does not continue the channel's hash chain",
                                        entry.seq
                                    ),
                                    &entry.body,
                                    now_ms(),
                                )
                                .await?;
                            out.rejected_messages += 1;
                            go_on = false;
                        }
                    }
                }
                Ok((go_on, exact))
            }
            Err(StoreError::Conflict { .. }) => {
                // Another writer appended to one of the tickets meanwhile: apply the
                // entries one by one, each decided again against the stored stream.
                for entry in self.entries {
                    match apply_entry(inst, partner, &entry).await? {
                        (Inbound::Applied { .. }, q) => {
                            if q {
                                out.quarantined += 1
                            } else {
                                out.applied += 1;
                                out.completed_by_entry(&entry);
                            }
                        }
                        (Inbound::Duplicate, _) => out.duplicates += 1,
                        (Inbound::Gap { expected }, _) => {
                            out.gap = Some(expected);
                            return Ok((false, false));
                        }
                        (Inbound::BrokenChain, _) => {
                            out.rejected_messages += 1;
                            return Ok((false, false));
                        }
                    }
                }
                Ok((true, false))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Prepares a plain event entry in memory: the events it appends, decided against the
/// ticket's state in `states` (taken from the snapshot cache on first use), which it moves
/// on. `None` when the entry is anything else or would be refused: `apply_entry` handles it.
async fn prepare(
    inst: &Instance,
    partner: &Partner,
    re: Option<ReplicatedEvent>,
    states: &mut HashMap<TicketId, (Option<domain::Ticket>, u64)>,
) -> Result<Option<Vec<StreamAppend>>> {
    let Some(re) = re else {
        return Ok(None);
    };
    let Ok(ev) = decode_event(re.schema_version, &re.payload) else {
        return Ok(None);
    };
    if ev.type_name() != re.event_type || matches!(ev, domain::Event::AttachmentAdded { .. }) {
        return Ok(None);
    }
    let Ok(from) = InstanceId::parse(&partner.name) else {
        return Ok(None);
    };
    let Ok(actor) = Actor::new(from.clone(), &re.actor_user) else {
        return Ok(None);
    };
    let tid = TicketId(re.ticket_ulid());
    let (state, version) = match states.entry(tid) {
        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => v.insert(inst.take_state(tid).await?),
    };
    let meta = EventMeta {
        actor,
        at: Timestamp(re.occurred_at),
        link_seq: re.link_seq,
    };
    let me_id = inst.name().clone();
    let Ok(incoming) = receive(state.as_ref(), &me_id, &from, &meta, ev, &inst.policy) else {
        return Ok(None);
    };
    let (entries, next) = stamp_incoming(inst, &re, &from, &meta, state.take(), tid, incoming)?;
    *state = next;
    let expected_version = *version;
    *version += entries.len() as u64;
    Ok(Some(vec![StreamAppend {
        stream_id: tid.0,
        expected_version,
        entries,
    }]))
}

/// The log entries of what `receive` made of a remote event, and the state after them.
fn stamp_incoming(
    inst: &Instance,
    re: &ReplicatedEvent,
    from: &InstanceId,
    meta: &EventMeta,
    mut cur: Option<domain::Ticket>,
    tid: TicketId,
    incoming: Vec<Incoming>,
) -> Result<(Vec<NewEntry>, Option<domain::Ticket>)> {
    let me_id = inst.name().clone();
    let me = me_id.to_string();
    let system = Actor {
        instance: me_id,
        user: SYSTEM_USER.to_string(),
    };
    let now = now_ms();
    let mut entries = Vec::with_capacity(incoming.len());
    for inc in incoming {
        let (e, new) = match inc {
            Incoming::Remote(e) => {
                let new = NewEntry {
                    event_id: re.event_ulid(),
                    stream_id: tid.0,
                    schema_version: SCHEMA_VERSION,
                    event_type: e.type_name().to_string(),
                    occurred_at: re.occurred_at,
                    actor_instance: from.to_string(),
                    actor_user: re.actor_user.clone(),
                    link_seq: re.link_seq,
                    payload: encode_event(&e)?,
                };
                (e, new)
            }
            Incoming::Local(e) => {
                let new = NewEntry {
                    event_id: Ulid::new(),
                    stream_id: tid.0,
                    schema_version: SCHEMA_VERSION,
                    event_type: e.type_name().to_string(),
                    occurred_at: now,
                    actor_instance: me.clone(),
                    actor_user: SYSTEM_USER.to_string(),
                    link_seq: cur.as_ref().map_or(0, domain::Ticket::known),
                    payload: encode_event(&e)?,
                };
                (e, new)
            }
        };
        let m = if new.actor_instance == me {
            EventMeta {
                actor: system.clone(),
                at: Timestamp(now),
                link_seq: new.link_seq,
            }
        } else {
            meta.clone()
        };
        cur = domain::evolve(cur, tid, &m, &e);
        entries.push(new);
    }
    Ok((entries, cur))
}

/// Applies one entry; the bool is true when it was quarantined.
async fn apply_entry(
    inst: &Instance,
    partner: &Partner,
    entry: &ChannelEntry,
) -> Result<(Inbound, bool)> {
    let me = inst.name().to_string();
    let now = now_ms();
    let body = match ChannelBody::decode(&entry.body) {
        Ok(b) => b,
        Err(e) => return quarantine_entry(inst, partner, entry, "undecodable_body", e, None).await,
    };
    match body {
        ChannelBody::Hello { .. } => {
            if partner.state == PartnerState::Invited {
                if partner.expires_at.is_some_and(|x| now > x) {
                    let detail = format!("{} joined after the invitation expired", partner.name);
                    return quarantine_entry(
                        inst,
                        partner,
                        entry,
                        "invitation_expired",
                        detail,
                        None,
                    )
                    .await;
                }
                let mut p = partner.clone();
                p.state = PartnerState::Paired;
                p.paired_at = Some(now);
                p.expires_at = None;
                inst.store.put_partner(&p).await?;
                tracing::info!(partner = %partner.name, "paired");
            }
            Ok((
                inst.store
                    .apply_inbound(&partner.name, &me, entry, now, vec![], None)
                    .await?,
                false,
            ))
        }
        ChannelBody::Blob {
            sha256,
            offset,
            total,
            bytes,
        } => {
            if let Err(detail) = stage_blob(inst, &sha256, offset, total, &bytes) {
                return quarantine_entry(
                    inst,
                    partner,
                    entry,
                    "bad_attachment_content",
                    detail,
                    None,
                )
                .await;
            }
            Ok((
                inst.store
                    .apply_inbound(&partner.name, &me, entry, now, vec![], None)
                    .await?,
                false,
            ))
        }
        ChannelBody::Event(re) => apply_event(inst, partner, entry, re).await,
    }
}

async fn apply_event(
    inst: &Instance,
    partner: &Partner,
    entry: &ChannelEntry,
    re: ReplicatedEvent,
) -> Result<(Inbound, bool)> {
    let me_id = inst.name().clone();
    let me = me_id.to_string();
    let event_id = Some(re.event_ulid().to_string());
    let quarantine = |kind: &'static str, detail: String| {
        quarantine_entry(inst, partner, entry, kind, detail, event_id.clone())
    };
    let ev = match decode_event(re.schema_version, &re.payload) {
        Ok(e) => e,
        Err(e) => return quarantine("undecodable_event", e.to_string()).await,
    };
    if ev.type_name() != re.event_type {
        return quarantine(
            "undecodable_event",
            format!(
                "type {} does not match payload {}",
                re.event_type,
                ev.type_name()
            ),
        )
        .await;
    }
    let from = InstanceId::parse(&partner.name).context("partner name")?;
    let actor = match Actor::new(from.clone(), &re.actor_user) {
        Ok(a) => a,
        Err(e) => return quarantine("undecodable_event", e.to_string()).await,
    };
    if let domain::Event::AttachmentAdded { attachment, .. } = &ev {
        if !inst.blob_path(&attachment.sha256).exists() {
            return quarantine(
                "missing_attachment_content",
                format!(
                    "content {} did not arrive before its event",
                    attachment.sha256
                ),
            )
            .await;
        }
    }
    let meta = EventMeta {
        actor: actor.clone(),
        at: Timestamp(re.occurred_at),
        link_seq: re.link_seq,
    };
    let tid = TicketId(re.ticket_ulid());
    let mut attempt = 0;
    loop {
        let (state, version) = inst.load(tid).await?;
        let incoming = match receive(
            state.as_ref(),
            &me_id,
            &from,
            &meta,
            ev.clone(),
            &inst.policy,
        ) {
            Ok(i) => i,
            Err(q) => return quarantine(q.kind.name(), q.detail).await,
        };
        let (entries, _) = stamp_incoming(inst, &re, &from, &meta, state, tid, incoming)?;
        let now = now_ms();
        let batch = vec![StreamAppend {
            stream_id: tid.0,
            expected_version: version,
            entries,
        }];
        match inst
            .store
            .apply_inbound(&partner.name, &me, entry, now, batch, None)
            .await
        {
            Ok(r) => return Ok((r, false)),
            Err(StoreError::Conflict { .. }) if attempt < MAX_CONFLICT_RETRIES => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes a chunk of attachment content into the staging file; when the content is
/// complete and its SHA-256 matches, moves it into the blob store.
fn stage_blob(
    inst: &Instance,
    sha256: &[u8; 32],
    offset: u64,
    total: u64,
    bytes: &[u8],
) -> Result<(), String> {
    let max = inst.policy.max_attachment_bytes;
    if total > max || offset.saturating_add(bytes.len() as u64) > total {
        return Err(format!("chunk {offset}+{} of {total} bytes is outside the content or over the {max}-byte limit", bytes.len()));
    }
    let digest = domain::Sha256Digest(*sha256);
    let final_path = inst.blob_path(&digest);
    if final_path.exists() {
        return Ok(());
    }
    let staging = inst.dir.join("blobs-incoming").join(digest.to_hex());
    let io = |e: std::io::Error| format!("cannot stage attachment content: {e}");
    std::fs::create_dir_all(staging.parent().unwrap_or(&inst.dir)).map_err(io)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&staging)
        .map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    if offset + bytes.len() as u64 == total {
        let content = std::fs::read(&staging).map_err(io)?;
        let got: [u8; 32] = Sha256::digest(&content).into();
        if got != *sha256 || content.len() as u64 != total {
            let _ = std::fs::remove_file(&staging);
            return Err(format!(
                "attachment content hashes to {}, not {}",
                hex::encode(got),
                digest.to_hex()
            ));
        }
        if let Some(parent) = final_path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::rename(&staging, &final_path).map_err(io)?;
    }
    Ok(())
}

/// Records entry `entry` as refused (it still advances the channel).
async fn quarantine_entry(
    inst: &Instance,
    partner: &Partner,
    entry: &ChannelEntry,
    kind: &str,
    detail: String,
    event_id: Option<String>,
) -> Result<(Inbound, bool)> {
    tracing::warn!(partner = %partner.name, seq = entry.seq, kind, %detail, "entry quarantined");
    let me = inst.name().to_string();
    let r = inst
        .store
        .apply_inbound(
            &partner.name,
            &me,
            entry,
            now_ms(),
            vec![],
            Some((kind.to_string(), detail, event_id)),
        )
        .await?;
    Ok((r, true))
}
