//! One instance on disk: its data directory, config file, store, blob store, pairing
//! with partners, and the command path (load, decide, route to the link's counterparty,
//! append with the outbox under optimistic concurrency, update projections).

pub mod pairing;
pub mod portal;
pub mod wake;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ticketsync_domain::{
    self as domain, decide, Actor, Command, EventMeta, InstanceId, Policy, StatusSet, Ticket,
    TicketId, Timestamp,
};
use ticketsync_projections::{catch_up, TicketProjection, TicketView};
use ticketsync_store::{
    is_postgres_url, postgres, Outgoing, PartnerState, PgStore, SqliteStore, Store, StoreError,
    StreamAppend,
};
use ticketsync_wire::channel::{ChannelBody, ReplicatedEvent, BLOB_CHUNK_BYTES};
use ticketsync_wire::{decode_event, encode_event, LogEntry, NewEntry, SCHEMA_VERSION};
use ulid::Ulid;

/// Errors the application raises itself, by what the caller can tell the user.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad command line or input value.
    #[error("{0}")]
    Usage(String),
    /// Refused by the workflow, permissions or pairing state.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
}

/// Name of the config file inside the data directory.
pub const CONFIG_FILE: &str = "ticketsync.toml";
/// Default SQLite file name inside the data directory.
pub const DB_FILE: &str = "ticketsync.db";
/// How many times a command is decided again after losing a race with another writer.
pub const MAX_CONFLICT_RETRIES: u32 = 5;

/// The instance's config file, `ticketsync.toml`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Short instance name.
    pub instance: String,
    /// Database URL; a relative SQLite path is relative to the data directory.
    pub database: String,
    /// NATS server the sync daemon connects to (`TICKETSYNC_NATS_URL` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<String>,
    #[serde(default)]
    pub tickets: TicketConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketConfig {
    /// Ticket statuses in display order; the first is the initial one; must contain "Complete".
    pub statuses: Vec<String>,
    /// Largest attachment accepted, in bytes.
    pub max_attachment_bytes: u64,
}

impl Default for TicketConfig {
    fn default() -> Self {
        let p = Policy::default();
        TicketConfig {
            statuses: p.statuses.names().to_vec(),
            max_attachment_bytes: p.max_attachment_bytes,
        }
    }
}

/// Folded ticket states kept between commands (at most this many tickets): a command on a
/// ticket with a long history reads and folds only the events after its snapshot.
pub const MAX_SNAPSHOTS: usize = 64;

pub struct Instance {
    pub dir: PathBuf,
    pub config: Config,
    pub policy: Policy,
    pub store: Arc<dyn Store>,
    pub actor: Actor,
    /// Set when the user works for a portal company (see [`Instance::act_for_portal`]).
    pub portal: Option<InstanceId>,
    /// Per ticket: the state folded up to a stream version. Only ever a prefix of the
    /// stream (the log is append-only), so catching up from it with the events after that
    /// version gives the same state as folding the whole stream.
    snapshots: std::sync::Mutex<Snapshots>,
    /// Held while this process catches its projections up: two tasks that both want them
    /// current (the daemon's projection task, a command) take turns instead of computing
    /// the same batch twice and racing for its checkpoint.
    refreshing: tokio::sync::Mutex<()>,
}

/// A small cache of folded ticket states, keyed by ticket, each with its stream version.
#[derive(Default)]
struct Snapshots {
    states: std::collections::HashMap<TicketId, (u64, Option<Ticket>)>,
    /// Least recently stored first, for eviction.
    order: std::collections::VecDeque<TicketId>,
}

impl Snapshots {
    fn take(&mut self, id: TicketId) -> Option<(u64, Option<Ticket>)> {
        let s = self.states.remove(&id)?;
        self.order.retain(|t| *t != id);
        Some(s)
    }

    fn put(&mut self, id: TicketId, version: u64, state: Option<Ticket>) {
        if self.states.insert(id, (version, state)).is_some() {
            self.order.retain(|t| *t != id);
        }
        self.order.push_back(id);
        while self.order.len() > MAX_SNAPSHOTS {
            if let Some(old) = self.order.pop_front() {
                self.states.remove(&old);
            }
        }
    }
}

/// Where a database URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (a relative path is resolved against the data directory).
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its `postgres://` URL.
    Postgres(String),
}

impl Database {
    /// Parses a `database` setting: `sqlite:PATH` / `sqlite://PATH`, or a
    /// `postgres://` / `postgresql://` URL.
    pub fn parse(dir: &Path, url: &str) -> Result<Database> {
        if is_postgres_url(url) {
            return Ok(Database::Postgres(url.to_string()));
        }
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "unsupported database URL {:?}; expected sqlite:PATH or postgres://HOST/DB",
                    postgres::redacted(url)
                ))
            })?;
        let p = PathBuf::from(rest);
        Ok(Database::Sqlite(if p.is_absolute() {
            p
        } else {
            dir.join(p)
        }))
    }

    /// Creates (or opens) the database and brings its schema up to date.
    pub async fn create(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            Database::Sqlite(p) => Arc::new(SqliteStore::create(p).await?),
            Database::Postgres(url) => Arc::new(PgStore::create(url).await?),
        })
    }

    /// Opens an initialized database.
    pub async fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            Database::Sqlite(p) => Arc::new(SqliteStore::open(p).await?),
            Database::Postgres(url) => Arc::new(PgStore::open(url).await?),
        })
    }
}

impl std::fmt::Display for Database {
    /// The file, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres(url) => f.write_str(&postgres::redacted(url)),
        }
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn default_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "operator".into())
}

impl Instance {
    /// Creates the data directory, config and database.
    pub async fn init(
        dir: &Path,
        name: &str,
        database: Option<String>,
        nats: Option<String>,
    ) -> Result<PathBuf> {
        let id = InstanceId::parse(name)?;
        let cfg_path = dir.join(CONFIG_FILE);
        if cfg_path.exists() {
            return Err(Failure::Refused(format!(
                "{} already holds an instance; choose another --data-dir",
                dir.display()
            ))
            .into());
        }
        let database = database.unwrap_or_else(|| format!("sqlite:{DB_FILE}"));
        let db = Database::parse(dir, &database)?;
        // A SQLite file needs the directory first; for a server, connect first so that an
        // unreachable one leaves nothing behind.
        if matches!(db, Database::Sqlite(_)) {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let store = db.create().await?;
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        match store.get_meta("instance").await? {
            Some(existing) if existing != id.as_str() => {
                return Err(Failure::Refused(format!(
                    "database {db} belongs to instance {existing:?}"
                ))
                .into())
            }
            _ => store.set_meta("instance", id.as_str()).await?,
        }
        let cfg = Config {
            instance: id.to_string(),
            database,
            nats,
            tickets: TicketConfig::default(),
        };
        let text = toml::to_string_pretty(&cfg).context("cannot render config")?;
        write_atomic(&cfg_path, text.as_bytes())?;
        Ok(cfg_path)
    }

    /// Opens an initialized instance.
    pub async fn open(dir: &Path, user: Option<String>) -> Result<Instance> {
        let cfg_path = dir.join(CONFIG_FILE);
        let text = match fs::read_to_string(&cfg_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotInitialized(format!(
                    "no instance in {} (no {CONFIG_FILE}); run `ticketsync init --instance NAME` first",
                    dir.display()
                ))
                .into())
            }
            Err(e) => return Err(anyhow!(e).context(format!("cannot read {}", cfg_path.display()))),
        };
        let cfg: Config = toml::from_str(&text)
            .map_err(|e| Failure::Usage(format!("{}: {}", cfg_path.display(), e.message())))?;
        let id = InstanceId::parse(&cfg.instance)?;
        let policy = Policy {
            statuses: StatusSet::new(&cfg.tickets.statuses)?,
            max_attachment_bytes: cfg.tickets.max_attachment_bytes,
        };
        let store = Database::parse(dir, &cfg.database)?.open().await?;
        match store.get_meta("instance").await? {
            Some(n) if n == id.as_str() => {}
            other => bail!(
                "the database belongs to instance {:?}, but {} says {:?}",
                other.unwrap_or_default(),
                cfg_path.display(),
                id.as_str()
            ),
        }
        let actor = Actor::new(id, &user.unwrap_or_else(default_user))?;
        Ok(Instance {
            dir: dir.to_path_buf(),
            config: cfg,
            policy,
            store,
            actor,
            portal: None,
            snapshots: Default::default(),
            refreshing: Default::default(),
        })
    }

    /// Loads a ticket's state by folding its stream; returns it with the stream version.
    pub async fn load(&self, id: TicketId) -> Result<(Option<Ticket>, u64)> {
        let (state, version) = self.take_state(id).await?;
        self.remember(id, version, state.clone());
        Ok((state, version))
    }

    /// The ticket's current state and version, taken out of the snapshot cache (and caught
    /// up with the events after the snapshot) or folded from the whole stream. The caller
    /// hands the state back with [`Instance::remember`] once it knows the version it is at.
    pub async fn take_state(&self, id: TicketId) -> Result<(Option<Ticket>, u64)> {
        let cached = self.lock_snapshots().take(id);
        let (state, version) = match cached {
            Some((v, s)) => (s, v),
            None => (None, 0),
        };
        let tail = self.store.read_stream_after(id.0, version).await?;
        catch_up_state(id, state, version, tail)
    }

    /// [`Instance::take_state`] for several tickets at once, in the order given, with every
    /// tail read in one store call: one round trip for a run of snapshot misses instead of
    /// one per ticket. A ticket given twice gets its whole fold the second time.
    pub async fn take_states(&self, ids: &[TicketId]) -> Result<Vec<(Option<Ticket>, u64)>> {
        let cached: Vec<(Option<Ticket>, u64)> = {
            let mut snapshots = self.lock_snapshots();
            ids.iter()
                .map(|id| snapshots.take(*id).map_or((None, 0), |(v, s)| (s, v)))
                .collect()
        };
        let asked: Vec<(Ulid, u64)> = ids.iter().zip(&cached).map(|(id, c)| (id.0, c.1)).collect();
        let tails = self.store.read_streams_after(&asked).await?;
        if tails.len() != ids.len() {
            bail!(
                "the store answered {} of {} stream reads",
                tails.len(),
                ids.len()
            );
        }
        ids.iter()
            .zip(cached)
            .zip(tails)
            .map(|((id, (state, version)), tail)| catch_up_state(*id, state, version, tail))
            .collect()
    }

    /// Appends through the store and, when something was queued for a partner, wakes this
    /// instance's daemon so the relay publishes it now rather than at its next poll.
    async fn append_routed(
        &self,
        now: i64,
        batch: Vec<StreamAppend>,
        outgoing: Vec<Outgoing>,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let queued = !outgoing.is_empty();
        let written = self.store.append_routed(now, batch, outgoing).await?;
        if queued {
            wake::notify(&self.dir);
        }
        Ok(written)
    }

    /// Keeps `state` as the ticket's state at stream `version`, for the next command.
    /// It must be the fold of exactly the stream's first `version` events.
    pub fn remember(&self, id: TicketId, version: u64, state: Option<Ticket>) {
        self.lock_snapshots().put(id, version, state);
    }

    fn lock_snapshots(&self) -> std::sync::MutexGuard<'_, Snapshots> {
        // The cache holds no invariant a panic elsewhere could break halfway: a poisoned
        // lock is still a usable cache.
        self.snapshots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The ticket's state as of log position `to` (all of it with `None`), and its version.
    pub async fn load_at(&self, id: TicketId, to: Option<u64>) -> Result<(Option<Ticket>, u64)> {
        let entries = self.store.read_stream(id.0, to).await?;
        let mut state = None;
        for e in &entries {
            let ev = decode_event(e.schema_version, &e.payload)
                .with_context(|| format!("log position {}", e.position))?;
            state = domain::evolve(state, id, &meta_of(e)?, &ev);
        }
        Ok((state, entries.last().map_or(0, |e| e.version)))
    }

    /// Decides `cmd` against the ticket and appends the resulting events, with whatever
    /// goes to the link's counterparty in the same transaction (the outbox). Decides again
    /// if another writer appended first. Brings the projections up to date afterwards.
    pub async fn execute(&self, id: TicketId, cmd: Command) -> Result<Vec<LogEntry>> {
        self.execute_as(&self.command_actor(), id, cmd).await
    }

    /// `execute` on behalf of another actor of this instance (the system user, for expiry).
    pub async fn execute_as(
        &self,
        actor: &Actor,
        id: TicketId,
        cmd: Command,
    ) -> Result<Vec<LogEntry>> {
        let written = self.execute_once(actor, id, cmd).await?;
        let wrote = |types: &[&str]| {
            written
                .iter()
                .any(|e| types.contains(&e.event_type.as_str()))
        };
        // Only a command that completed a link can leave an invoice to issue; reading the
        // ticket's view after every command would cost each command a document parse.
        if wrote(&domain::Event::LINK_COMPLETING_TYPE_NAMES) {
            // A command that completed a link this instance works as the partner issues
            // its invoice now. The command itself succeeded either way: a failure here is
            // retried by the daemon's housekeeping, so say so and go on.
            if let Err(e) = self.issue_pending_invoices(id).await {
                tracing::warn!(ticket = %id, "issuing the invoice failed: {e:#}");
                eprintln!(
                    "warning: the invoice was not issued yet (the sync daemon retries): {e:#}"
                );
            }
        }
        // A portal company's acceptance: the lead records its transaction fee.
        if actor.instance != *self.name() && wrote(&["outsource_accepted"]) {
            if let Err(e) = self.record_transaction_fees(id).await {
                tracing::warn!(ticket = %id, "recording the transaction fee failed: {e:#}");
                eprintln!("warning: the transaction fee was not recorded: {e:#}");
            }
        }
        Ok(written)
    }

    /// Partner: appends the `invoice_issued` event of every invoice of ticket `id` that
    /// the projection numbered but whose event is not in the log yet, so that it goes to
    /// the lead. Idempotent: returns how many it issued now.
    pub async fn issue_pending_invoices(&self, id: TicketId) -> Result<usize> {
        // The invoices are numbered by the projection: it must be current.
        self.refresh().await?;
        let Some(view) = TicketProjection::head(self.store.as_ref(), id.0).await? else {
            return Ok(0);
        };
        let system = Actor {
            instance: self.name().clone(),
            user: domain::sync::SYSTEM_USER.into(),
        };
        let mut issued = 0;
        for i in view.invoices.iter().filter(|i| i.stated.is_none()) {
            // On the lead every invoice record comes from the partner's event, so only
            // the partner's own numbered-but-unstated invoices are found here.
            let link: domain::LinkId = i
                .link_id
                .parse()
                .with_context(|| format!("link id {:?} of ticket {id}", i.link_id))?;
            let cmd = Command::IssueInvoice {
                link,
                number: i.number,
            };
            if !self.execute_once(&system, id, cmd).await?.is_empty() {
                tracing::info!(ticket = %id, number = i.number, "invoice issued");
                issued += 1;
            }
        }
        Ok(issued)
    }

    /// One command, decided and appended (again on a write conflict), without the
    /// follow-up of [`Instance::execute_as`].
    async fn execute_once(
        &self,
        actor: &Actor,
        id: TicketId,
        cmd: Command,
    ) -> Result<Vec<LogEntry>> {
        // Catch up first: a log this build cannot read (a newer event schema, a damaged
        // entry) must stop the command before anything is appended.
        self.refresh().await?;
        if let Command::Outsource(domain::OutsourceCommand::Send { partner, .. }) = &cmd {
            self.require_paired(partner.as_str()).await?;
        }
        let local = self.unreplicated().await?;
        let mut attempt = 0;
        loop {
            let (state, version) = self.take_state(id).await?;
            let now = now_ms();
            let ctx = domain::Context {
                actor,
                policy: &self.policy,
                now: Timestamp(now),
            };
            let events = match decide(state.as_ref(), id, ctx, cmd.clone()) {
                Ok(ev) => ev,
                Err(e) => {
                    self.remember(id, version, state);
                    return Err(e.into());
                }
            };
            if events.is_empty() {
                self.remember(id, version, state);
                return Ok(vec![]);
            }
            let (entries, mut outgoing, after) =
                self.stamp_and_route(state, id, actor, now, &events)?;
            outgoing.retain(|o| !local.contains(&o.to));
            let batch = vec![StreamAppend {
                stream_id: id.0,
                expected_version: version,
                entries,
            }];
            match self.append_routed(now, batch, outgoing).await {
                Ok(written) => {
                    if let Some(last) = written.last() {
                        self.remember(id, last.version, after);
                    }
                    // The events are committed: the command succeeded. A projection that
                    // cannot catch up now will on the next command; say so, do not fail.
                    if let Err(e) = self.refresh().await {
                        tracing::warn!("projections did not catch up after the append: {e:#}");
                        eprintln!("warning: projections did not catch up: {e:#}");
                    }
                    return Ok(written);
                }
                Err(StoreError::Conflict { .. }) if attempt < MAX_CONFLICT_RETRIES => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Decides several commands, each against the state the ones before it left (commands
    /// on different tickets may be mixed), and appends all their events with their outbox
    /// entries in one transaction: all are written or none is. A refused command refuses
    /// the whole batch. Decides again if another writer appended first. This is the
    /// batched write path (imports, generated load): one transaction and one durable commit
    /// for the lot. It returns right after the commit; unlike `execute` it leaves the
    /// projections to the caller (`refresh`), so a loader can catch them up once per many
    /// batches, and the follow-ups of `execute_as` (a partner's invoice, a portal
    /// company's transaction fee) to the daemon's housekeeping or a later command.
    pub async fn execute_many(&self, cmds: &[(TicketId, Command)]) -> Result<Vec<LogEntry>> {
        self.refresh().await?;
        for (_, cmd) in cmds {
            if let Command::Outsource(domain::OutsourceCommand::Send { partner, .. }) = cmd {
                self.require_paired(partner.as_str()).await?;
            }
        }
        let actor = &self.command_actor();
        let local = self.unreplicated().await?;
        let mut attempt = 0;
        loop {
            let now = now_ms();
            // Per ticket, in first-seen order: state, the version decided against, entries
            // and outgoing bodies (kept per ticket so the outbox follows the log's order).
            type Slot = (Option<Ticket>, u64, Vec<NewEntry>, Vec<Outgoing>);
            let mut order: Vec<TicketId> = Vec::new();
            let mut slots: std::collections::HashMap<TicketId, Slot> =
                std::collections::HashMap::new();
            for (id, _) in cmds {
                if !slots.contains_key(id) {
                    slots.insert(*id, (None, 0, vec![], vec![]));
                    order.push(*id);
                }
            }
            for (id, (state, version)) in order.iter().zip(self.take_states(&order).await?) {
                if let Some(slot) = slots.get_mut(id) {
                    (slot.0, slot.1) = (state, version);
                }
            }
            for (id, cmd) in cmds {
                let Some(slot) = slots.get_mut(id) else {
                    continue;
                };
                let ctx = domain::Context {
                    actor,
                    policy: &self.policy,
                    now: Timestamp(now),
                };
                // On a refusal the taken states are dropped; the next load folds again.
                let events = decide(slot.0.as_ref(), *id, ctx, cmd.clone())?;
                let (entries, outgoing, state) =
                    self.stamp_and_route(slot.0.take(), *id, actor, now, &events)?;
                slot.0 = state;
                slot.2.extend(entries);
                slot.3.extend(outgoing);
            }
            let mut batch = Vec::with_capacity(order.len());
            let mut outgoing = Vec::new();
            let mut after = Vec::with_capacity(order.len());
            for id in &order {
                if let Some((state, version, entries, out)) = slots.remove(id) {
                    let v = version + entries.len() as u64;
                    if !entries.is_empty() {
                        batch.push(StreamAppend {
                            stream_id: id.0,
                            expected_version: version,
                            entries,
                        });
                        outgoing.extend(out.into_iter().filter(|o| !local.contains(&o.to)));
                    }
                    after.push((*id, v, state));
                }
            }
            if batch.is_empty() {
                for (id, v, state) in after {
                    self.remember(id, v, state);
                }
                return Ok(vec![]);
            }
            match self.append_routed(now, batch, outgoing).await {
                Ok(written) => {
                    // Each stream got exactly its entries, so it is at version + their count.
                    for (id, v, state) in after {
                        self.remember(id, v, state);
                    }
                    return Ok(written);
                }
                Err(StoreError::Conflict { .. }) if attempt < MAX_CONFLICT_RETRIES => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Where nothing is replicated to: the portal companies (their users work here) and
    /// this instance itself (a portal user's events have it as the counterparty).
    async fn unreplicated(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .portal_companies()
            .await?
            .into_keys()
            .chain([self.name().to_string()])
            .collect())
    }

    /// Gives each event the `link_seq` its author knew (the ticket as folded up to the
    /// event) and picks what goes to the counterparty, as channel bodies (attachment
    /// content first, in chunks, then the event). Returns the state after the events too.
    fn stamp_and_route(
        &self,
        mut state: Option<Ticket>,
        id: TicketId,
        actor: &Actor,
        now: i64,
        events: &[domain::Event],
    ) -> Result<(Vec<NewEntry>, Vec<Outgoing>, Option<Ticket>)> {
        let mut entries = Vec::with_capacity(events.len());
        let mut outgoing = Vec::new();
        for ev in events {
            let link_seq = state.as_ref().map_or(0, Ticket::known);
            let to = state
                .as_ref()
                .and_then(|t| domain::sync::route(t, &actor.instance, ev));
            let entry = NewEntry {
                event_id: Ulid::new(),
                stream_id: id.0,
                schema_version: SCHEMA_VERSION,
                event_type: ev.type_name().to_string(),
                occurred_at: now,
                actor_instance: actor.instance.to_string(),
                actor_user: actor.user.clone(),
                link_seq,
                payload: encode_event(ev)?,
            };
            if let Some(to) = to {
                if let domain::Event::AttachmentAdded { attachment, .. } = ev {
                    for body in self.blob_chunks(&attachment.sha256)? {
                        outgoing.push(Outgoing {
                            from: actor.instance.to_string(),
                            to: to.to_string(),
                            event_id: None,
                            body,
                        });
                    }
                }
                outgoing.push(Outgoing {
                    from: actor.instance.to_string(),
                    to: to.to_string(),
                    event_id: Some(entry.event_id.to_string()),
                    body: ChannelBody::Event(ReplicatedEvent::of(&entry)).encode(),
                });
            }
            let meta = EventMeta {
                actor: actor.clone(),
                at: Timestamp(now),
                link_seq,
            };
            state = domain::evolve(state, id, &meta, ev);
            entries.push(entry);
        }
        Ok((entries, outgoing, state))
    }

    /// An attachment's content as channel bodies of at most `BLOB_CHUNK_BYTES` each.
    fn blob_chunks(&self, d: &domain::Sha256Digest) -> Result<Vec<Vec<u8>>> {
        let bytes = fs::read(self.blob_path(d))
            .with_context(|| format!("attachment content {d} is missing from the blob store"))?;
        let total = bytes.len() as u64;
        let mut out = Vec::new();
        let mut offset = 0usize;
        loop {
            let end = (offset + BLOB_CHUNK_BYTES).min(bytes.len());
            out.push(
                ChannelBody::Blob {
                    sha256: d.0,
                    offset: offset as u64,
                    total,
                    bytes: bytes[offset..end].to_vec(),
                }
                .encode(),
            );
            offset = end;
            if offset >= bytes.len() {
                return Ok(out);
            }
        }
    }

    /// Refuses unless `partner` is paired with this instance.
    pub async fn require_paired(&self, partner: &str) -> Result<()> {
        if self.portal_companies().await?.contains_key(partner) {
            return Ok(());
        }
        match self.store.get_partner(partner).await? {
            Some(p) if p.state == PartnerState::Paired => Ok(()),
            Some(_) => Err(Failure::Refused(format!(
                "partner {partner} has not joined yet (invited; it must run `ticketsync partner join` with the code, and both sync daemons must run)"
            ))
            .into()),
            None => Err(Failure::Refused(format!(
                "{partner} is not a partner of this instance; invite it with `ticketsync partner invite {partner}`"
            ))
            .into()),
        }
    }

    /// The NATS URL: `TICKETSYNC_NATS_URL`, else the config file's `nats`.
    pub fn nats_url(&self) -> Option<String> {
        std::env::var("TICKETSYNC_NATS_URL")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| self.config.nats.clone())
    }

    /// This instance's name.
    pub fn name(&self) -> &InstanceId {
        &self.actor.instance
    }

    /// Applies any new log entries to the projections.
    pub async fn refresh(&self) -> Result<()> {
        let _turn = self.refreshing.lock().await;
        catch_up(self.store.as_ref(), &TicketProjection).await?;
        Ok(())
    }

    /// Resolves a ticket reference: a ULID, or this instance's number (`42` or `#42`).
    pub async fn resolve(&self, reference: &str) -> Result<(TicketId, TicketView)> {
        self.refresh().await?;
        let r = reference.trim();
        let by_number = r.strip_prefix('#').unwrap_or(r);
        if !by_number.is_empty()
            && by_number.len() < 20
            && by_number.chars().all(|c| c.is_ascii_digit())
        {
            let n: u64 = by_number
                .parse()
                .map_err(|_| Failure::Usage(format!("bad ticket number {r:?}")))?;
            return match TicketProjection::get_by_number(self.store.as_ref(), n).await? {
                Some(t) => Ok((t.id.parse::<TicketId>()?, t)),
                None => Err(Failure::NotFound(format!("ticket #{n} not found")).into()),
            };
        }
        let id: TicketId = r.parse()?;
        match TicketProjection::get(self.store.as_ref(), id.0).await? {
            Some(v) => Ok((id, v)),
            None => Err(domain::DomainError::TicketNotFound(id).into()),
        }
    }

    /// Stores a file in the content-addressed blob store and returns its digest and size.
    pub fn store_blob(&self, file: &Path) -> Result<(domain::Sha256Digest, u64)> {
        let meta = fs::metadata(file)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
        if !meta.is_file() {
            return Err(Failure::Usage(format!("{} is not a file", file.display())).into());
        }
        if meta.len() > self.policy.max_attachment_bytes {
            return Err(domain::DomainError::Invalid {
                field: "attachment",
                reason: format!(
                    "{} is {} bytes, more than the limit of {} bytes",
                    file.display(),
                    meta.len(),
                    self.policy.max_attachment_bytes
                ),
            }
            .into());
        }
        let bytes = fs::read(file)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let digest = domain::Sha256Digest(digest);
        let path = self.blob_path(&digest);
        if !path.exists() {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            write_atomic(&path, &bytes)?;
        }
        Ok((digest, bytes.len() as u64))
    }

    /// Where the content with this digest is kept.
    pub fn blob_path(&self, d: &domain::Sha256Digest) -> PathBuf {
        let hex = d.to_hex();
        self.dir.join("blobs").join(&hex[..2]).join(hex)
    }
}

/// The actor and time an entry records.
pub fn meta_of(e: &LogEntry) -> Result<EventMeta> {
    let instance = InstanceId::parse(&e.actor_instance)
        .with_context(|| format!("log position {}", e.position))?;
    Ok(EventMeta {
        actor: Actor {
            instance,
            user: e.actor_user.clone(),
        },
        at: Timestamp(e.occurred_at),
        link_seq: e.link_seq,
    })
}

/// Writes a file so that readers see the old content or the new, never a part: a temporary
/// file is written and synced, then renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f =
        fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.sync_all()
        .with_context(|| format!("cannot sync {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    Ok(())
}

/// A ticket's state at `version` caught up with the stream's events after it.
fn catch_up_state(
    id: TicketId,
    mut state: Option<Ticket>,
    mut version: u64,
    tail: Vec<LogEntry>,
) -> Result<(Option<Ticket>, u64)> {
    for e in tail {
        let ev = decode_event(e.schema_version, &e.payload)
            .with_context(|| format!("log position {}", e.position))?;
        state = domain::evolve(state, id, &meta_of(&e)?, &ev);
        version = e.version;
    }
    Ok((state, version))
}
