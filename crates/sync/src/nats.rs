//! The daemon over NATS JetStream: one stream per channel direction, a durable pull
//! consumer for each inbound channel, publishes with `Nats-Msg-Id` and a bounded window of
//! unacknowledged publishes, and control messages (resend requests, head announcements)
//! over core NATS.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream};
use futures::{FutureExt as _, StreamExt};
use ticketsync_app::{now_ms, Instance};
use ticketsync_store::Partner;
use ticketsync_wire::channel::{
    control_subject, data_subject, stream_name, Control, ControlMessage, Message,
};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::inbound::{apply_messages, Outcome, Pipeline, Settled};
use crate::outbound::pack;

/// Publishes awaiting their broker acknowledgement, per channel.
pub const MAX_INFLIGHT_PUBLISHES: usize = 64;
/// Inbound messages pulled per request (the client asks for more when half are taken).
pub const PULL_BATCH: usize = 32;
/// Bytes of inbound messages pulled per request: with `PULL_BATCH`, what bounds the
/// messages buffered in the daemon.
pub const PULL_MAX_BYTES: usize = 4 << 20;
/// Inbound messages already received that are applied together (one commit, one
/// projection catch-up, then their acks): at most this many...
pub const INBOUND_COALESCE: usize = 16;
/// ...and no more once they hold this many bytes (about 750 events of notes; at most
/// `MAX_RUN_ENTRIES` in one commit). 256 KiB rather than 128 halved the commits when one
/// batch was applied at a time (23.5k -> 25.8k events/s over 1M replicated events). 192
/// KiB since the pipeline holds two batches at once (one written, one prepared): at 256
/// KiB the daemon's peak RSS over 1M events was 63.1-68.0 MiB in six runs, at 192 KiB
/// 59.6 and 57.7 at the same speed (23.0k and 23.1k events/s against 21.1k and 24.6k).
pub const INBOUND_COALESCE_BYTES: usize = 192 << 10;
/// How often a relay looks for outbox entries written by other processes (the CLI)
/// while entries keep coming...
pub const OUTBOX_POLL: Duration = Duration::from_millis(1);
/// ...for this long after it last found some...
pub const OUTBOX_BUSY: Duration = Duration::from_millis(500);
/// ...and then less and less often, down to this. The daemon's own commits wake the
/// relay at once.
pub const OUTBOX_POLL_IDLE: Duration = Duration::from_millis(20);
/// How often a relay announces its channel head to the receiver.
pub const HEAD_INTERVAL: Duration = Duration::from_secs(1);
/// How often the partner list is re-read (new pairings) and deadlines are checked.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(500);
/// How long a JetStream API request or publish ack may take before it is retried.
pub const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// A resend of the same seq is asked for at most this often.
pub const RESEND_DEBOUNCE: Duration = Duration::from_millis(500);
/// Longest wait between retries after an error.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Bytes a channel's JetStream stream may hold (older messages are dropped: the sender's
/// outbox can always publish them again).
pub const STREAM_MAX_BYTES: i64 = 1 << 30;

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Drain: publish everything pending, apply everything available, then return.
    pub once: bool,
}

/// Counters over one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    pub published_entries: u64,
    pub applied_entries: u64,
    pub quarantined: u64,
    pub duplicates: u64,
    pub resend_requests: u64,
}

struct Shared {
    inst: Arc<Instance>,
    js: jetstream::Context,
    client: async_nats::Client,
    stats: Mutex<RunStats>,
    /// Per partner: the seq the relay must publish again from (set by resend requests).
    resend_from: Mutex<HashMap<String, u64>>,
    /// Per partner: how many resends the relay has made; part of a republished message's
    /// id, so JetStream's duplicate window does not swallow a batch the receiver asked for.
    resend_epoch: Mutex<HashMap<String, u64>>,
    /// Per partner: the last resend asked for and when (to ask once per gap, not per message).
    last_resend: Mutex<HashMap<String, (u64, Instant)>>,
    /// Tickets that may hold an offer to expire.
    offers: Mutex<OfferWatch>,
    /// Partners whose inbound task holds received messages it has not settled (applied and
    /// acknowledged) yet: their channel head, if it does not move, is busy, not stalled.
    holding: std::sync::Mutex<HashSet<String>>,
    /// Bumped after this daemon wrote to an outbox itself (an expiry, an invoice), another
    /// process said so on the wake socket, or a resend was asked for: wakes the relays
    /// without waiting for their next poll.
    outbox_changed: tokio::sync::watch::Sender<u64>,
    /// Wakes the projection task after inbound events were committed (`None` with
    /// `--once`, which catches the projections up itself after each batch).
    projection_wake: Option<tokio::sync::Notify>,
}

impl Shared {
    fn wake_relays(&self) {
        self.outbox_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn holding(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.holding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Says whether the inbound task holds unsettled messages of `partner`'s channel.
    fn hold(&self, partner: &str, holds: bool) {
        if holds {
            self.holding().insert(partner.to_string());
        } else {
            self.holding().remove(partner);
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.min(7))).min(MAX_BACKOFF)
}

/// Runs the daemon until `shutdown` is cancelled (or, with `once`, until drained).
pub async fn run(
    inst: Arc<Instance>,
    url: &str,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunStats> {
    // Before anything else: a second daemon of this instance stops here, having done nothing.
    let _lock = crate::lock::DaemonLock::acquire(&inst.dir)?;
    let client = async_nats::ConnectOptions::new()
        .name(format!("ticketsync-{}", inst.name()))
        .retry_on_initial_connect()
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to NATS at {url}"))?;
    let mut js = jetstream::new(client.clone());
    // Short request timeouts: after a broker restart, a lost request is retried soon
    // rather than after the client's default.
    js.set_timeout(JETSTREAM_TIMEOUT);
    let shared = Arc::new(Shared {
        inst,
        js,
        client,
        stats: Mutex::new(RunStats::default()),
        resend_from: Mutex::new(HashMap::new()),
        resend_epoch: Mutex::new(HashMap::new()),
        last_resend: Mutex::new(HashMap::new()),
        offers: Mutex::new(OfferWatch::default()),
        holding: std::sync::Mutex::new(HashSet::new()),
        outbox_changed: tokio::sync::watch::Sender::new(0),
        projection_wake: (!opts.once).then(tokio::sync::Notify::new),
    });
    if opts.once {
        drain(&shared).await?;
        let s = shared.stats.lock().await.clone();
        return Ok(s);
    }
    let mut started: HashMap<String, ()> = HashMap::new();
    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(projection_loop(shared.clone(), shutdown.clone()));
    // Commands of other processes on this instance (the CLI) say when they queued entries,
    // so the relays publish them now instead of at their next poll.
    if let Some(sock) = crate::wake::WakeSocket::bind(&shared.inst.dir) {
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = sock.recv() => match r {
                        Ok(()) => shared.wake_relays(),
                        Err(e) => {
                            tracing::warn!("the wake socket failed ({e}); finding commits by polling only");
                            break;
                        }
                    },
                }
            }
        });
    }
    loop {
        for p in shared.inst.store.list_partners().await? {
            if started.insert(p.name.clone(), ()).is_none() {
                tracing::info!(partner = %p.name, state = p.state.as_str(), "starting channels");
                tasks.spawn(relay_loop(shared.clone(), p.name.clone(), shutdown.clone()));
                tasks.spawn(inbound_loop(
                    shared.clone(),
                    p.name.clone(),
                    shutdown.clone(),
                ));
                tasks.spawn(control_loop(
                    shared.clone(),
                    p.name.clone(),
                    shutdown.clone(),
                ));
            }
        }
        match housekeeping(&shared.inst, &shared.offers).await {
            Ok(true) => shared.wake_relays(),
            Ok(false) => {}
            Err(e) => tracing::warn!("housekeeping (respond-by deadlines, invoices) failed: {e:#}"),
        }
        match shared
            .inst
            .store
            .reclaim_projections(HOUSEKEEPING_RECLAIM)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::debug!(documents = n, "deleted documents of retired projections"),
            Err(e) => tracing::warn!("deleting documents of retired projections failed: {e:#}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(HOUSEKEEPING_INTERVAL) => {}
        }
    }
    tasks.close();
    tasks.wait().await;
    let s = shared.stats.lock().await.clone();
    Ok(s)
}

/// The tickets that may hold an unanswered offer with a deadline or a completed link whose
/// invoice is not issued yet, kept from the log so that the twice-a-second housekeeping does
/// not parse every ticket's document: a ticket is a candidate from its first outsourcing
/// event on, and stops being one once its view shows neither; only another outsourcing
/// event makes it one again. The first pass (cursor 0) walks the whole log, so a daemon
/// started after a crash finds every invoice still to issue.
#[derive(Default)]
pub struct OfferWatch {
    /// Log position up to which outsourcing events have been looked for.
    cursor: u64,
    candidates: std::collections::BTreeSet<ticketsync_domain::TicketId>,
}

/// Documents of retired projection generations (left by a store schema upgrade that changed
/// a projection's layout, or by projections found ahead of a restored log) that each
/// housekeeping round deletes: about 10k a second, in transactions short enough that the
/// projection commits between them are not held up for long. `ticketsync rebuild` deletes
/// them all at once.
pub const HOUSEKEEPING_RECLAIM: u32 = 5_000;

/// Ticket heads housekeeping reads together.
pub const HOUSEKEEPING_PAGE: usize = 200;

/// Lead: expires links whose respond-by deadline passed unanswered. Partner: issues the
/// invoice of every completed link that has none yet (after a crash between the
/// completion and its invoice, or a completion that arrived while issuing failed).
/// Returns whether it executed a command (which may have written to an outbox).
async fn housekeeping(inst: &Instance, watch: &Mutex<OfferWatch>) -> Result<bool> {
    use ticketsync_domain::{Actor, Command, Event, OutsourceCommand, TicketId};
    use ticketsync_projections::TicketProjection;
    // Up to where the projection is: a candidate's view then shows every event that made it one.
    inst.refresh().await?;
    let upto = inst
        .store
        .projection_checkpoint(ticketsync_projections::TICKETS)
        .await?;
    let candidates: Vec<TicketId> = {
        let mut w = watch.lock().await;
        if upto > w.cursor {
            let found = inst
                .store
                .streams_with_types(w.cursor, upto, &Event::OUTSOURCE_TYPE_NAMES)
                .await?;
            w.candidates.extend(found.into_iter().map(TicketId));
            w.cursor = upto;
        }
        w.candidates.iter().copied().collect()
    };
    // A page of heads at a time (a whole projection's views at once would set the daemon's
    // peak memory; one read per ticket made a first pass over many tickets slow): issue
    // pending invoices, keep the overdue offers, drop candidates with nothing left to do.
    // The head holds the outsourcing and the invoices; items and history are not needed.
    let now = now_ms();
    let mut wrote = false;
    let mut due: Vec<(u64, TicketId)> = Vec::new();
    let ids: Vec<_> = candidates.iter().map(|t| t.0).collect();
    for page in ids.chunks(HOUSEKEEPING_PAGE) {
        for (id, view) in TicketProjection::heads(inst.store.as_ref(), page).await? {
            let id = TicketId(id);
            let Some(t) = view else {
                watch.lock().await.candidates.remove(&id);
                continue;
            };
            if t.invoices.iter().any(|i| i.stated.is_none()) {
                // Stays a candidate until the statement is in the log (a failure is retried).
                wrote = true;
                if let Err(e) = inst.issue_pending_invoices(id).await {
                    tracing::warn!(ticket = %id, "issuing the invoice failed: {e:#}");
                }
                continue;
            }
            let Some(o) = t.outsource.as_ref().filter(|o| {
                o.role == "lead"
                    && o.status == "Assigned"
                    && o.terms.as_ref().is_some_and(|x| x.respond_by_ms.is_some())
            }) else {
                watch.lock().await.candidates.remove(&id);
                continue;
            };
            if o.terms
                .as_ref()
                .and_then(|x| x.respond_by_ms)
                .is_some_and(|rb| rb < now)
            {
                due.push((t.number, id));
            }
        }
    }
    // In ticket number order, as a walk over the whole projection would go.
    due.sort();
    let system = Actor {
        instance: inst.name().clone(),
        user: ticketsync_domain::sync::SYSTEM_USER.into(),
    };
    for (_, id) in due {
        wrote = true;
        match inst
            .execute_as(&system, id, Command::Outsource(OutsourceCommand::Expire))
            .await
        {
            Ok(_) => tracing::info!(ticket = %id, "offer expired"),
            Err(e) => tracing::warn!(ticket = %id, "expiring failed: {e:#}"),
        }
    }
    Ok(wrote)
}

async fn partner(shared: &Shared, name: &str) -> Result<Partner> {
    shared
        .inst
        .store
        .get_partner(name)
        .await?
        .ok_or_else(|| anyhow!("partner {name} is gone"))
}

async fn ensure_stream(js: &jetstream::Context, from: &str, to: &str) -> Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: stream_name(from, to),
        subjects: vec![data_subject(from, to)],
        max_bytes: STREAM_MAX_BYTES,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow!("cannot create stream {}: {e}", stream_name(from, to)))
}

/// Publishes outbox entries after `cursor` until none are left; returns the new cursor.
/// Waits for every broker ack before returning and records each as acknowledged.
async fn publish_pending(shared: &Shared, p: &Partner, mut cursor: u64) -> Result<u64> {
    let me = shared.inst.name().to_string();
    let subject = data_subject(&me, &p.name);
    let epoch = shared
        .resend_epoch
        .lock()
        .await
        .get(&p.name)
        .copied()
        .unwrap_or(0);
    let mut inflight: VecDeque<(u64, jetstream::context::PublishAckFuture)> = VecDeque::new();
    loop {
        let entries = shared.inst.store.read_outbox(&p.name, cursor, 1024).await?;
        if entries.is_empty() {
            break;
        }
        for chunk in pack(entries) {
            let (first, last) = (chunk[0].seq, chunk[chunk.len() - 1].seq);
            let n = chunk.len() as u64;
            let msg = Message::sealed(&me, &p.name, chunk, &p.secret);
            let mut headers = async_nats::HeaderMap::new();
            // A first publish and its retries share an id (the broker drops the copy); a
            // republish asked for by the receiver gets a new one.
            let id = if epoch == 0 {
                format!("{me}.{}.{first}.{last}", p.name)
            } else {
                format!("{me}.{}.{first}.{last}.r{epoch}", p.name)
            };
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
            let fut = shared
                .js
                .publish_with_headers(subject.clone(), headers, msg.encode().into())
                .await
                .map_err(|e| anyhow!("publish to {subject}: {e}"))?;
            inflight.push_back((last, fut));
            cursor = last;
            shared.stats.lock().await.published_entries += n;
            if inflight.len() >= MAX_INFLIGHT_PUBLISHES {
                settle_one(shared, p, &mut inflight).await?;
            }
        }
    }
    while !inflight.is_empty() {
        settle_one(shared, p, &mut inflight).await?;
    }
    Ok(cursor)
}

async fn settle_one(
    shared: &Shared,
    p: &Partner,
    inflight: &mut VecDeque<(u64, jetstream::context::PublishAckFuture)>,
) -> Result<()> {
    if let Some((seq, fut)) = inflight.pop_front() {
        fut.await.map_err(|e| {
            anyhow!(
                "no broker ack for channel to {} up to seq {seq}: {e}",
                p.name
            )
        })?;
        shared.inst.store.set_outbox_acked(&p.name, seq).await?;
    }
    Ok(())
}

async fn relay_loop(shared: Arc<Shared>, name: String, shutdown: CancellationToken) {
    let me = shared.inst.name().to_string();
    let mut cursor: Option<u64> = None;
    let mut attempt = 0u32;
    let mut last_head = Instant::now() - HEAD_INTERVAL;
    // The partner, once its stream is known to exist (again after any error): a poll
    // then costs one outbox read, not a JetStream API round trip.
    let mut ready: Option<Partner> = None;
    let mut wake = shared.outbox_changed.subscribe();
    let mut last_found = Instant::now();
    let mut idle_wait = OUTBOX_POLL;
    while !shutdown.is_cancelled() {
        let step = async {
            let p = match ready.take() {
                Some(p) if last_head.elapsed() < HEAD_INTERVAL => p,
                // Read again with each head announcement (a changed partner is seen
                // within HEAD_INTERVAL).
                Some(_) => partner(&shared, &name).await?,
                None => {
                    let p = partner(&shared, &name).await?;
                    ensure_stream(&shared.js, &me, &p.name).await?;
                    p
                }
            };
            let mut from = match cursor {
                Some(c) => c,
                None => shared.inst.store.outbox_acked(&p.name).await?,
            };
            if let Some(r) = shared.resend_from.lock().await.remove(&p.name) {
                tracing::info!(partner = %p.name, from_seq = r, "publishing again on request");
                from = from.min(r.saturating_sub(1));
                *shared
                    .resend_epoch
                    .lock()
                    .await
                    .entry(p.name.clone())
                    .or_insert(0) += 1;
            }
            let c = publish_pending(&shared, &p, from).await?;
            if last_head.elapsed() >= HEAD_INTERVAL {
                let head = shared.inst.store.outbox_head(&p.name).await?;
                let m = ControlMessage::sealed(
                    &me,
                    &p.name,
                    Control::Head {
                        seq: head.seq,
                        hash: head.hash,
                    },
                    &p.secret,
                );
                shared
                    .client
                    .publish(control_subject(&me, &p.name), m.encode().into())
                    .await?;
                last_head = Instant::now();
            }
            Ok::<(u64, bool, Partner), anyhow::Error>((c, c != from, p))
        };
        match step.await {
            Ok((c, found, p)) => {
                cursor = Some(c);
                ready = Some(p);
                attempt = 0;
                // Other processes' commits wake the relay through the wake socket; polling
                // stays the guarantee (a lost datagram, no socket): often while entries
                // keep coming, less and less often once the channel is idle.
                if found {
                    last_found = Instant::now();
                    idle_wait = OUTBOX_POLL;
                } else if last_found.elapsed() >= OUTBOX_BUSY {
                    idle_wait = (idle_wait * 2).min(OUTBOX_POLL_IDLE);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(idle_wait) => {}
                    _ = wake.changed() => {
                        last_found = Instant::now();
                        idle_wait = OUTBOX_POLL;
                    }
                }
            }
            Err(e) => {
                // Unacknowledged publishes are published again from the last acked seq.
                cursor = None;
                ready = None;
                tracing::warn!(partner = %name, "relay: {e:#}; retrying");
                record_error(&shared, &name, "relay", &e).await;
                attempt += 1;
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                }
            }
        }
    }
}

async fn consumer_for(
    shared: &Shared,
    from: &str,
) -> Result<jetstream::consumer::Consumer<pull::Config>> {
    let me = shared.inst.name().to_string();
    let stream = ensure_stream(&shared.js, from, &me).await?;
    let durable = format!("ticketsync-{me}");
    stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: (PULL_BATCH * 4) as i64,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow!("cannot create consumer {durable}: {e}"))
}

/// Applies received messages (in order, their events in as few commits as the run limit
/// allows) and acknowledges each only after everything is committed; asks for a resend on
/// a gap.
async fn handle(shared: &Shared, name: &str, msgs: &[jetstream::Message]) -> Result<()> {
    if msgs.is_empty() {
        return Ok(());
    }
    let p = partner(shared, name).await?;
    let raws: Vec<&[u8]> = msgs.iter().map(|m| m.payload.as_ref()).collect();
    let t = Instant::now();
    let o = apply_messages(&shared.inst, &p, &raws).await?;
    tracing::debug!(
        partner = %p.name,
        messages = msgs.len(),
        applied = o.applied,
        apply_us = t.elapsed().as_micros() as u64,
        "inbound batch committed"
    );
    applied(shared, &p, msgs, o).await
}

/// What follows once received messages are applied and committed: the projections are
/// woken, invoices issued for completed links, a gap asked for, and the messages acked.
async fn applied(
    shared: &Shared,
    p: &Partner,
    msgs: &[jetstream::Message],
    o: Outcome,
) -> Result<()> {
    if o.applied > 0 || o.quarantined > 0 {
        // The events are in the log: the projections follow from it on their own task,
        // while the next messages are applied (on the other core).
        match &shared.projection_wake {
            Some(w) => w.notify_one(),
            None => shared.inst.refresh().await?,
        }
    }
    for t in &o.completed {
        // A completion that arrived from the lead: the partner issues its invoice now
        // (housekeeping retries if this fails).
        if let Err(e) = shared.inst.issue_pending_invoices(*t).await {
            tracing::warn!(ticket = %t, "issuing the invoice failed: {e:#}");
        }
    }
    if !o.completed.is_empty() {
        shared.wake_relays();
    }
    {
        let mut s = shared.stats.lock().await;
        s.applied_entries += o.applied;
        s.quarantined += o.quarantined + o.rejected_messages;
        s.duplicates += o.duplicates;
    }
    if let Some(from_seq) = o.gap {
        request_resend(shared, p, from_seq).await?;
    }
    for msg in msgs {
        msg.ack().await.map_err(|e| anyhow!("ack: {e}"))?;
    }
    Ok(())
}

/// Acts on batches the pipeline settled: each is committed, so its messages are acked.
async fn settled(
    shared: &Shared,
    p: &Partner,
    batches: impl IntoIterator<Item = Settled<jetstream::Message>>,
) -> Result<()> {
    for s in batches {
        tracing::debug!(
            partner = %p.name,
            messages = s.tokens.len(),
            applied = s.outcome.applied,
            apply_us = s.took.as_micros() as u64,
            pipelined = s.pipelined,
            "inbound batch committed"
        );
        applied(shared, p, &s.tokens, s.outcome).await?;
    }
    Ok(())
}

async fn request_resend(shared: &Shared, p: &Partner, from_seq: u64) -> Result<()> {
    {
        // Every message past a gap would otherwise ask again, and each ask republishes the
        // whole tail: ask once per gap, again only if it is still open after a while.
        let mut last = shared.last_resend.lock().await;
        if let Some((seq, at)) = last.get(&p.name) {
            if *seq == from_seq && at.elapsed() < RESEND_DEBOUNCE {
                return Ok(());
            }
        }
        last.insert(p.name.clone(), (from_seq, Instant::now()));
    }
    let me = shared.inst.name().to_string();
    tracing::info!(partner = %p.name, from_seq, "gap: asking for a resend");
    let m = ControlMessage::sealed(&me, &p.name, Control::Resend { from_seq }, &p.secret);
    shared
        .client
        .publish(control_subject(&me, &p.name), m.encode().into())
        .await?;
    shared.stats.lock().await.resend_requests += 1;
    Ok(())
}

async fn inbound_loop(shared: Arc<Shared>, name: String, shutdown: CancellationToken) {
    let mut attempt = 0u32;
    while !shutdown.is_cancelled() {
        let step = async {
            let consumer = consumer_for(&shared, &name).await?;
            // Bounded by count and bytes: the buffered messages are part of the daemon's
            // memory. The heartbeat lets a silent broker (restarted, partitioned) be noticed.
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(PULL_BATCH)
                .max_bytes_per_batch(PULL_MAX_BYTES)
                .heartbeat(Duration::from_secs(15))
                .messages()
                .await
                .map_err(|e| anyhow!("pull: {e}"))?;
            // Connected: the next error starts its backoff from the beginning again.
            attempt = 0;
            let mut pipe: Pipeline<jetstream::Message> = Pipeline::default();
            loop {
                let first = tokio::select! {
                    _ = shutdown.cancelled() => {
                        let p = partner(&shared, &name).await?;
                        settled(&shared, &p, pipe.settle(&shared.inst).await?).await?;
                        return Ok(());
                    }
                    r = pipe.done() => {
                        let p = partner(&shared, &name).await?;
                        settled(&shared, &p, pipe.idle(&shared.inst, r).await?).await?;
                        shared.hold(&name, false);
                        continue;
                    }
                    next = messages.next() => next,
                };
                let mut batch: Vec<jetstream::Message> = Vec::with_capacity(INBOUND_COALESCE);
                let mut ended = match first {
                    None => Some(anyhow!("the message stream ended")),
                    Some(Err(e)) => Some(anyhow!("receive: {e}")),
                    Some(Ok(msg)) => {
                        batch.push(msg);
                        None
                    }
                };
                // Whatever has arrived behind it already goes into the same commit.
                while ended.is_none()
                    && batch.len() < INBOUND_COALESCE
                    && batch.iter().map(|m| m.payload.len()).sum::<usize>() < INBOUND_COALESCE_BYTES
                {
                    match messages.next().now_or_never() {
                        None => break,
                        Some(Some(Ok(msg))) => batch.push(msg),
                        Some(Some(Err(e))) => ended = Some(anyhow!("receive: {e}")),
                        Some(None) => ended = Some(anyhow!("the message stream ended")),
                    }
                }
                shared.hold(&name, true);
                let p = partner(&shared, &name).await?;
                let done = pipe
                    .take(&shared.inst, &p, batch, |m| m.payload.as_ref())
                    .await?;
                settled(&shared, &p, done).await?;
                if let Some(e) = ended {
                    settled(&shared, &p, pipe.settle(&shared.inst).await?).await?;
                    return Err(e);
                }
                shared.hold(&name, pipe.is_writing());
            }
        };
        let r = step.await;
        // What it held unsettled comes again from the broker.
        shared.hold(&name, false);
        match r {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(partner = %name, "inbound: {e:#}; retrying");
                record_error(&shared, &name, "inbound", &e).await;
                attempt += 1;
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                }
            }
        }
    }
}

/// Keeps the projections caught up with the log, woken after each inbound commit. Apart
/// from the inbound task, so applying the next messages and projecting the last ones
/// overlap; the acknowledgement waits only for the log commit (projections are derived
/// from it, and a restart catches them up).
async fn projection_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    let Some(wake) = shared.projection_wake.as_ref() else {
        return;
    };
    let mut attempt = 0u32;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
        }
        let t = Instant::now();
        match shared.inst.refresh().await {
            Ok(()) => {
                attempt = 0;
                tracing::debug!(
                    projection_us = t.elapsed().as_micros() as u64,
                    "projections caught up"
                );
            }
            Err(e) => {
                tracing::warn!("projections did not catch up: {e:#}; retrying");
                attempt += 1;
                // Try again after a pause even if nothing new arrives.
                wake.notify_one();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                }
            }
        }
    }
}

/// Listens for the partner's control messages: resend requests for our outbound channel,
/// and head announcements of its channel to us (to notice a lost tail).
async fn control_loop(shared: Arc<Shared>, name: String, shutdown: CancellationToken) {
    let me = shared.inst.name().to_string();
    let mut attempt = 0u32;
    while !shutdown.is_cancelled() {
        let step = async {
            let mut sub = shared.client.subscribe(control_subject(&name, &me)).await?;
            attempt = 0;
            let mut behind_since: Option<u64> = None;
            loop {
                let raw = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    m = sub.next() => match m { Some(m) => m, None => return Err(anyhow!("subscription ended")) },
                };
                let p = partner(&shared, &name).await?;
                let Ok(cm) = ControlMessage::decode(&raw.payload) else {
                    continue;
                };
                if cm.from != p.name || cm.to != me || !cm.authentic(&p.secret) {
                    tracing::warn!(partner = %name, "ignoring an unauthenticated control message");
                    continue;
                }
                match cm.control {
                    Control::Resend { from_seq } => {
                        let mut r = shared.resend_from.lock().await;
                        let e = r.entry(p.name.clone()).or_insert(from_seq);
                        *e = (*e).min(from_seq);
                        drop(r);
                        shared.wake_relays();
                    }
                    Control::Head { seq, .. } => {
                        let mine = shared.inst.store.inbound_head(&p.name).await?;
                        // Behind on two announcements in a row without moving, with no
                        // message of the channel being applied: what is missing is not on its
                        // way (a broker lost it); ask for it. A head held back while received
                        // messages wait for the write lock is busy, not stalled: asking would
                        // bring the whole tail again. This holds for a partner still `invited`
                        // too: its lost hello must come again.
                        let stalled =
                            behind_since == Some(mine.seq) && !shared.holding().contains(&p.name);
                        if seq > mine.seq {
                            if stalled {
                                request_resend(&shared, &p, mine.seq + 1).await?;
                            }
                            behind_since = Some(mine.seq);
                        } else {
                            behind_since = None;
                        }
                    }
                }
            }
        };
        match step.await {
            Ok(()) => return,
            Err(e) => {
                let e: anyhow::Error = e;
                tracing::warn!(partner = %name, "control: {e:#}; retrying");
                record_error(&shared, &name, "control", &e).await;
                attempt += 1;
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                }
            }
        }
    }
}

/// `--once`: publish every pending outbox entry, then apply every inbound message
/// available now, for every partner.
async fn drain(shared: &Shared) -> Result<()> {
    let me = shared.inst.name().to_string();
    // First, so an expiry or invoice recorded now is published in this same drain.
    housekeeping(&shared.inst, &shared.offers).await?;
    for p in shared.inst.store.list_partners().await? {
        ensure_stream(&shared.js, &me, &p.name).await?;
        let acked = shared.inst.store.outbox_acked(&p.name).await?;
        publish_pending(shared, &p, acked).await?;
        let consumer = consumer_for(shared, &p.name).await?;
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(PULL_BATCH)
                .messages()
                .await
                .map_err(|e| anyhow!("fetch: {e}"))?;
            let mut got = Vec::new();
            while let Some(m) = batch.next().await {
                got.push(m.map_err(|e| anyhow!("receive: {e}"))?);
            }
            if got.is_empty() {
                break;
            }
            for msgs in got.chunks(INBOUND_COALESCE) {
                handle(shared, &p.name, msgs).await?;
            }
        }
    }
    Ok(())
}

/// Keeps the last error of a partner's channels where `sync status` shows it.
async fn record_error(shared: &Shared, partner: &str, what: &str, e: &anyhow::Error) {
    let text = format!("{} {what}: {e:#}", ticketsync_domain::Timestamp(now_ms()));
    if let Err(err) = shared
        .inst
        .store
        .set_meta(&format!("sync.last_error.{partner}"), &text)
        .await
    {
        tracing::warn!(partner, "cannot record the error: {err}");
    }
}
