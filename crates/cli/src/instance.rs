//! One instance on disk: its data directory, config file, store, blob store and the
//! command path (load, decide, append with optimistic concurrency, update projections).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ticketsync_domain::{
    self as domain, decide, Actor, Command, EventMeta, InstanceId, Policy, StatusSet, Ticket,
    TicketId, Timestamp,
};
use ticketsync_projections::{catch_up, TicketProjection, TicketView};
use ticketsync_store::{SqliteStore, Store, StoreError, StreamAppend};
use ticketsync_wire::{decode_event, encode_event, LogEntry, NewEntry, SCHEMA_VERSION};
use ulid::Ulid;

use crate::exit::Failure;

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

pub struct Instance {
    pub dir: PathBuf,
    pub policy: Policy,
    pub store: Box<dyn Store>,
    pub actor: Actor,
}

/// The SQLite file a database URL names, resolved against the data directory.
fn sqlite_path(dir: &Path, url: &str) -> Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                Failure::Usage(
                    "PostgreSQL is not supported by this build yet; use a sqlite: URL".into(),
                )
            } else {
                Failure::Usage(format!(
                    "unsupported database URL {url:?}; expected sqlite:PATH"
                ))
            }
        })?;
    let p = PathBuf::from(rest);
    Ok(if p.is_absolute() { p } else { dir.join(p) })
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
    pub async fn init(dir: &Path, name: &str, database: Option<String>) -> Result<PathBuf> {
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
        let db_path = sqlite_path(dir, &database)?;
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let store = SqliteStore::create(&db_path).await?;
        match store.get_meta("instance").await? {
            Some(existing) if existing != id.as_str() => {
                return Err(Failure::Refused(format!(
                    "database {} belongs to instance {existing:?}",
                    db_path.display()
                ))
                .into())
            }
            _ => store.set_meta("instance", id.as_str()).await?,
        }
        let cfg = Config {
            instance: id.to_string(),
            database,
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
        let store = SqliteStore::open(&sqlite_path(dir, &cfg.database)?).await?;
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
            policy,
            store: Box::new(store),
            actor,
        })
    }

    /// Loads a ticket's state by folding its stream; returns it with the stream version.
    pub async fn load(&self, id: TicketId) -> Result<(Option<Ticket>, u64)> {
        let entries = self.store.read_stream(id.0, None).await?;
        let mut state = None;
        for e in &entries {
            let ev = decode_event(e.schema_version, &e.payload)
                .with_context(|| format!("log position {}", e.position))?;
            state = domain::evolve(state, id, &meta_of(e)?, &ev);
        }
        Ok((state, entries.last().map_or(0, |e| e.version)))
    }

    /// Decides `cmd` against the ticket and appends the resulting events, deciding again
    /// if another writer appended first. Brings the projections up to date afterwards.
    pub async fn execute(&self, id: TicketId, cmd: Command) -> Result<Vec<LogEntry>> {
        // Catch up first: a log this build cannot read (a newer event schema, a damaged
        // entry) must stop the command before anything is appended.
        self.refresh().await?;
        let mut attempt = 0;
        loop {
            let (state, version) = self.load(id).await?;
            let ctx = domain::Context {
                actor: &self.actor,
                policy: &self.policy,
                now: Timestamp(now_ms()),
            };
            let events = decide(state.as_ref(), id, ctx, cmd.clone())?;
            if events.is_empty() {
                return Ok(vec![]);
            }
            let now = now_ms();
            let entries = events
                .iter()
                .map(|ev| {
                    Ok(NewEntry {
                        link_seq: 0,
                        event_id: Ulid::new(),
                        stream_id: id.0,
                        schema_version: SCHEMA_VERSION,
                        event_type: ev.type_name().to_string(),
                        occurred_at: now,
                        actor_instance: self.actor.instance.to_string(),
                        actor_user: self.actor.user.clone(),
                        payload: encode_event(ev)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let batch = vec![StreamAppend {
                stream_id: id.0,
                expected_version: version,
                entries,
            }];
            match self.store.append(now, batch).await {
                Ok(written) => {
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

    /// Applies any new log entries to the projections.
    pub async fn refresh(&self) -> Result<()> {
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
            let all = TicketProjection::list(self.store.as_ref()).await?;
            return all
                .into_iter()
                .find(|t| t.number == n)
                .map(|t| Ok((t.id.parse::<TicketId>()?, t)))
                .unwrap_or_else(
                    || Err(Failure::NotFound(format!("ticket #{n} not found")).into()),
                );
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
