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
    read_states(inst, events.iter().flatten(), &mut run.states).await?;
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

/// Adds to `states` those of the tickets `events` touch that it does not hold yet, read in
/// one go: each would otherwise be a store read of its own (a snapshot miss on most
/// tickets).
async fn read_states<'e>(
    inst: &Instance,
    events: impl IntoIterator<Item = &'e ReplicatedEvent>,
    states: &mut HashMap<TicketId, (Option<domain::Ticket>, u64)>,
) -> Result<()> {
    let mut missing: Vec<TicketId> = Vec::new();
    for re in events {
        let t = TicketId(re.ticket_ulid());
        if !states.contains_key(&t) && !missing.contains(&t) {
            missing.push(t);
        }
    }
    if !missing.is_empty() {
        let read = inst.take_states(&missing).await?;
        states.extend(missing.into_iter().zip(read));
    }
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

/// Where the channel and the tickets stand once every batch prepared so far is written as
/// prepared: what the next batch is prepared against while the one before it is still
/// being written ([`Pipeline`]).
pub(crate) struct Carry {
    /// The channel head after the prepared batches.
    pub(crate) head: ChannelHead,
    /// Per ticket touched: the state after the prepared batches and its stream version.
    states: HashMap<TicketId, (Option<domain::Ticket>, u64)>,
}

impl Carry {
    /// Starting from what the store holds: its channel head, and ticket states from the
    /// snapshot cache or the store as each is needed.
    pub(crate) async fn from_store(inst: &Instance, partner: &Partner) -> Result<Carry> {
        Ok(Carry {
            head: inst.store.inbound_head(&partner.name).await?,
            states: HashMap::new(),
        })
    }

    /// Every batch prepared is written, each exactly as prepared: the states are the
    /// streams' folds, kept for the next use.
    pub(crate) fn remember(self, inst: &Instance) {
        for (id, (state, version)) in self.states {
            inst.remember(id, version, state);
        }
    }

    /// Hands back to the snapshot cache the states that the batch `keep` does not touch:
    /// their last change is in batches already written as prepared. What is carried stays
    /// bounded by one batch's tickets.
    fn remember_all_but(&mut self, inst: &Instance, keep: &[(ChannelEntry, Vec<StreamAppend>)]) {
        let touched: std::collections::HashSet<Ulid> = keep
            .iter()
            .flat_map(|(_, parts)| parts.iter().map(|p| p.stream_id))
            .collect();
        self.states.retain(|id, (state, version)| {
            if touched.contains(&id.0) {
                return true;
            }
            inst.remember(*id, *version, state.take());
            false
        });
    }
}

/// A batch of plain events prepared by [`prepare_batch`], not yet written.
pub(crate) struct Prepared {
    items: Vec<(ChannelEntry, Vec<StreamAppend>)>,
}

/// Prepares consecutive raw messages from `partner` against `carry`, which it moves on,
/// when every entry of every message is a plain event that continues the channel, in
/// order, within one run (`MAX_RUN_ENTRIES`): the common case, which the pipeline writes
/// in the background. `None` when anything needs `apply_messages` (a message to refuse, a
/// duplicate, a gap, a broken link, an entry that is not a plain event or that the rules
/// refuse); `carry` is then spoiled, as on an error, and must be dropped.
pub(crate) async fn prepare_batch(
    inst: &Instance,
    partner: &Partner,
    raws: &[&[u8]],
    carry: &mut Carry,
) -> Result<Option<Prepared>> {
    let me = inst.name().to_string();
    let mut items = Vec::new();
    for raw in raws {
        let msg = match Message::decode(raw) {
            Ok(m) if m.from == partner.name && m.to == me && m.authentic(&partner.secret) => m,
            _ => return Ok(None),
        };
        if items.len() + msg.entries.len() > MAX_RUN_ENTRIES {
            return Ok(None);
        }
        let mut events = Vec::with_capacity(msg.entries.len());
        let (mut seq, mut hash) = (carry.head.seq, carry.head.hash);
        for w in &msg.entries {
            if w.seq != seq + 1 || w.prev_hash != hash {
                return Ok(None);
            }
            (seq, hash) = (w.seq, w.hash);
            match ChannelBody::decode(&w.body) {
                Ok(ChannelBody::Event(re)) => events.push(re),
                _ => return Ok(None),
            }
        }
        read_states(inst, &events, &mut carry.states).await?;
        for (w, re) in msg.entries.into_iter().zip(events) {
            let Some(batch) = prepare(inst, partner, Some(re), &mut carry.states).await? else {
                return Ok(None);
            };
            carry.head = ChannelHead {
                seq: w.seq,
                hash: w.hash,
            };
            let entry = ChannelEntry {
                seq: w.seq,
                prev_hash: w.prev_hash,
                hash: w.hash,
                body: w.body,
            };
            items.push((entry, batch));
        }
    }
    Ok(Some(Prepared { items }))
}

/// A prepared batch being written on a task of its own.
pub(crate) struct Writing {
    task: tokio::task::JoinHandle<Result<Vec<Inbound>, StoreError>>,
    meta: RunMeta,
}

impl Writing {
    /// Starts writing `prepared` in one transaction; the states `carry` holds for tickets
    /// it does not touch go back to the snapshot cache (every batch before it is written).
    pub(crate) fn start(
        inst: &Instance,
        partner: &Partner,
        prepared: Prepared,
        carry: &mut Carry,
    ) -> Writing {
        carry.remember_all_but(inst, &prepared.items);
        let meta = RunMeta::of(&prepared.items);
        let store = inst.store.clone();
        let (from, me) = (partner.name.clone(), inst.name().to_string());
        let task = tokio::spawn(async move {
            store
                .apply_inbound_many(&from, &me, now_ms(), prepared.items)
                .await
        });
        Writing { task, meta }
    }

    /// Waits for the write to end (cancel-safe: nothing is lost if the wait is dropped).
    pub(crate) async fn done(&mut self) -> WriteResult {
        (&mut self.task).await
    }

    /// Counts what the write did (the result of [`Writing::done`]), as `apply_messages`
    /// would have (an entry the store did not take as prepared is decided again on its
    /// own). The bool says whether every entry went in exactly as prepared: otherwise
    /// whatever was prepared against this batch is void.
    pub(crate) async fn finish(
        self,
        result: WriteResult,
        inst: &Instance,
        partner: &Partner,
    ) -> Result<(Outcome, bool)> {
        let result = match result {
            Ok(r) => r,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => return Err(anyhow::anyhow!("the inbound write was cancelled: {e}")),
            },
        };
        let mut out = Outcome::default();
        let (_, exact) = self.meta.finish(inst, partner, result, &mut out).await?;
        Ok((out, exact))
    }
}

/// How a background inbound write ended.
pub(crate) type WriteResult = Result<Result<Vec<Inbound>, StoreError>, tokio::task::JoinError>;

/// A batch of messages once committed: the caller's tokens for them (to acknowledge) and
/// what they did.
#[derive(Debug)]
pub struct Settled<T> {
    pub tokens: Vec<T>,
    pub outcome: Outcome,
    /// Whether it was prepared while the batch before it was written.
    pub pipelined: bool,
    /// From taking the batch to its commit.
    pub took: std::time::Duration,
}

/// A batch being written by the pipeline, with the caller's tokens for its messages.
struct InFlight<T> {
    write: Writing,
    tokens: Vec<T>,
    partner: Partner,
    started: std::time::Instant,
}

/// The inbound pipeline of one channel, independent of the transport. A batch of
/// messages that holds only plain events continuing the channel (the common case) is
/// prepared in memory against the ticket states and channel head the batch before it
/// leaves, while that one is still being written; its own write starts once that one is
/// committed exactly as prepared. Deciding and writing thus overlap, on two cores.
/// Anything else (a message to refuse, a gap, a duplicate, a hello, attachment content, an
/// entry the rules refuse, a batch the store did not take as prepared, say after a local
/// command on one of its tickets) waits for the write in flight and goes through
/// [`apply_messages`]. At most one batch is written at a time, and batches settle in the
/// order they were taken; a caller acknowledges a batch's messages only once it has
/// settled.
pub struct Pipeline<T> {
    /// Where the channel and tickets stand once the batch in flight is committed as
    /// prepared; `None`: as the store says.
    carry: Option<Carry>,
    writing: Option<InFlight<T>>,
}

impl<T> Default for Pipeline<T> {
    fn default() -> Self {
        Pipeline {
            carry: None,
            writing: None,
        }
    }
}

impl<T: Send> Pipeline<T> {
    /// Whether a batch is being written (its messages are not settled yet).
    pub fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// Takes the next batch of messages from `partner` (`payload` gives a token's raw
    /// message). Returns the batches settled meanwhile, in order: the one that was in
    /// flight, and this one if it was applied on its own rather than left in flight.
    pub async fn take(
        &mut self,
        inst: &Instance,
        partner: &Partner,
        tokens: Vec<T>,
        payload: impl Fn(&T) -> &[u8],
    ) -> Result<Vec<Settled<T>>> {
        let mut settled = Vec::new();
        if tokens.is_empty() {
            return Ok(settled);
        }
        let started = std::time::Instant::now();
        let mut carry = match self.carry.take() {
            Some(c) => c,
            None => {
                // Nothing to prepare against while a batch is written: it goes in first.
                settled.extend(self.settle(inst).await?);
                Carry::from_store(inst, partner).await?
            }
        };
        let raws: Vec<&[u8]> = tokens.iter().map(&payload).collect();
        let prepared = prepare_batch(inst, partner, &raws, &mut carry).await;
        // The batch before is committed before this one's write starts.
        let exact = match self.settle_exact(inst).await? {
            Some((s, exact)) => {
                settled.push(s);
                exact
            }
            None => true,
        };
        match prepared? {
            Some(prepared) if exact => {
                let write = Writing::start(inst, partner, prepared, &mut carry);
                self.carry = Some(carry);
                self.writing = Some(InFlight {
                    write,
                    tokens,
                    partner: partner.clone(),
                    started,
                });
            }
            // Prepared against a batch the store did not take as prepared, or not a
            // batch for the pipeline: what was carried is void.
            _ => {
                let outcome = apply_messages(inst, partner, &raws).await?;
                drop(raws);
                settled.push(Settled {
                    tokens,
                    outcome,
                    pipelined: false,
                    took: started.elapsed(),
                });
            }
        }
        Ok(settled)
    }

    /// Waits for the batch in flight, if any, and settles it; the next batch starts from
    /// the store (the caller may apply messages by other means meanwhile).
    pub async fn settle(&mut self, inst: &Instance) -> Result<Option<Settled<T>>> {
        let settled = self.settle_exact(inst).await?;
        self.forget(inst, settled.as_ref().is_none_or(|(_, exact)| *exact));
        Ok(settled.map(|(s, _)| s))
    }

    /// Drops what was carried, handing the states back to the snapshot cache when every
    /// batch went in as prepared (`exact`).
    fn forget(&mut self, inst: &Instance, exact: bool) {
        if let Some(carry) = self.carry.take() {
            if exact {
                carry.remember(inst);
            }
        }
    }

    /// A cancel-safe wait for the batch in flight to be written (pending forever when
    /// there is none); hand what it returns to [`Pipeline::idle`].
    pub async fn done(&mut self) -> WriteResult {
        match self.writing.as_mut() {
            Some(f) => f.write.done().await,
            None => std::future::pending().await,
        }
    }

    /// Nothing more came while the batch in flight was written, which ended with `r`
    /// ([`Pipeline::done`]): settles it; the carried states go back to the snapshot cache
    /// and the next batch starts from the store.
    pub async fn idle(&mut self, inst: &Instance, r: WriteResult) -> Result<Option<Settled<T>>> {
        if self.writing.is_none() {
            return Ok(None);
        }
        let (s, exact) = self.written(inst, r).await?;
        self.forget(inst, exact);
        Ok(Some(s))
    }

    /// What a crash right after the batch in flight was committed leaves: waits for its
    /// write to end, forgets it and what was carried, and returns its tokens, not
    /// acknowledged (the transport delivers them again). For simulations.
    pub async fn abandon(&mut self) -> Vec<T> {
        self.carry = None;
        match self.writing.take() {
            Some(mut f) => {
                let _ = f.write.done().await;
                f.tokens
            }
            None => Vec::new(),
        }
    }

    /// [`Pipeline::settle`], saying also whether the batch went in exactly as prepared.
    async fn settle_exact(&mut self, inst: &Instance) -> Result<Option<(Settled<T>, bool)>> {
        let Some(f) = self.writing.as_mut() else {
            return Ok(None);
        };
        let r = f.write.done().await;
        self.written(inst, r).await.map(Some)
    }

    /// The batch in flight ended with `r`: counts what it did. What was prepared against
    /// it is void unless it went in exactly as prepared.
    async fn written(&mut self, inst: &Instance, r: WriteResult) -> Result<(Settled<T>, bool)> {
        let Some(f) = self.writing.take() else {
            anyhow::bail!("no inbound batch is being written");
        };
        let (outcome, exact) = f.write.finish(r, inst, &f.partner).await?;
        if !exact {
            self.carry = None;
        }
        let s = Settled {
            tokens: f.tokens,
            outcome,
            pipelined: true,
            took: f.started.elapsed(),
        };
        Ok((s, exact))
    }
}
