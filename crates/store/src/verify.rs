//! `verify`: walks the log and its chain, and names the first position that is not what
//! an untouched log would hold.

use std::collections::HashMap;
use std::ops::ControlFlow;

use ticketsync_wire::{LogEntry, GENESIS_HASH};
use ulid::Ulid;

use crate::{Head, Store, StoreError, MAX_READ_BATCH};

/// The first problem found, at a log position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyProblem {
    /// The first log position that is wrong (for a missing entry: the position expected there).
    pub position: u64,
    /// A stable short name: `position_gap`, `prev_hash_mismatch`, `hash_mismatch`,
    /// `version_gap`, `head_mismatch`, `stream_version_mismatch`.
    pub kind: &'static str,
    pub detail: String,
}

/// The outcome of a walk over the whole log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries examined.
    pub checked: u64,
    /// The position and hash of the last entry that was examined and found good.
    pub last_good: Head,
    pub problem: Option<VerifyProblem>,
}

/// `verify_log` reports progress after every this many entries (a `read_log` page).
const PROGRESS_EVERY: u64 = MAX_READ_BATCH as u64;

/// Where a walk over the log has got to: the entries checked, the last good one, every
/// stream's version so far, and the first problem once there is one.
struct Walk {
    checked: u64,
    last: Head,
    versions: HashMap<Ulid, u64>,
    problem: Option<VerifyProblem>,
}

impl Walk {
    /// Checks the next entry; breaks at the first problem, which it keeps.
    fn step(&mut self, e: &LogEntry) -> ControlFlow<()> {
        self.checked += 1;
        let last = self.last;
        let want = last.position + 1;
        if e.position != want {
            return self.fail(
                want,
                "position_gap",
                format!(
                    "expected position {want}, found {}: an entry is missing",
                    e.position
                ),
            );
        }
        if e.prev_hash != last.hash {
            return self.fail(
                e.position,
                "prev_hash_mismatch",
                format!(
                    "prev_hash {} does not match the hash {} of position {}",
                    hex::encode(e.prev_hash),
                    hex::encode(last.hash),
                    last.position
                ),
            );
        }
        let computed = e.compute_hash();
        if computed != e.hash {
            return self.fail(
                e.position,
                "hash_mismatch",
                format!(
                    "stored hash {} but the entry hashes to {}: its contents were changed",
                    hex::encode(e.hash),
                    hex::encode(computed)
                ),
            );
        }
        let v = self.versions.entry(e.stream_id).or_insert(0);
        if e.version != *v + 1 {
            let detail = format!(
                "stream {} goes from version {} to {}",
                e.stream_id, v, e.version
            );
            return self.fail(e.position, "version_gap", detail);
        }
        *v = e.version;
        self.last = Head {
            position: e.position,
            hash: e.hash,
        };
        ControlFlow::Continue(())
    }

    fn fail(&mut self, position: u64, kind: &'static str, detail: String) -> ControlFlow<()> {
        self.problem = Some(VerifyProblem {
            position,
            kind,
            detail,
        });
        ControlFlow::Break(())
    }
}

/// Walks every entry in position order, checking that positions are contiguous from 1,
/// that each `prev_hash` is the previous entry's hash, that each hash is the SHA-256 of
/// the entry, that stream versions are contiguous, and that the recorded head and stream
/// versions agree with the walk (which catches a log cut short at its tail).
/// `progress` is called with the number of entries checked so far.
pub async fn verify_log(
    store: &dyn Store,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<VerifyReport, StoreError> {
    let mut walk = Walk {
        checked: 0,
        last: Head {
            position: 0,
            hash: GENESIS_HASH,
        },
        versions: HashMap::new(),
        problem: None,
    };
    // Progress every PROGRESS_EVERY entries and at the end, whatever the store's batches.
    let mut reported = 0;
    store
        .scan_log(0, &mut |batch| {
            for e in batch {
                if walk.step(e).is_break() {
                    return ControlFlow::Break(());
                }
                if walk.checked.is_multiple_of(PROGRESS_EVERY) {
                    reported = walk.checked;
                    progress(reported);
                }
            }
            ControlFlow::Continue(())
        })
        .await?;
    let Walk {
        checked,
        last,
        versions,
        problem,
    } = walk;
    if problem.is_none() && checked != reported {
        progress(checked);
    }
    if problem.is_some() {
        return Ok(VerifyReport {
            checked,
            last_good: last,
            problem,
        });
    }
    let fail = |checked, last, position, kind, detail| {
        Ok(VerifyReport {
            checked,
            last_good: last,
            problem: Some(VerifyProblem {
                position,
                kind,
                detail,
            }),
        })
    };
    let head = store.head().await?;
    if head.position > last.position || (head.position == last.position && head.hash != last.hash) {
        return fail(
            checked,
            last,
            last.position + 1,
            "head_mismatch",
            format!(
                "the recorded head is position {} ({}), but the log ends at position {}: entries are missing at the end",
                head.position,
                hex::encode(head.hash),
                last.position
            ),
        );
    }
    if head.position < last.position {
        return fail(
            checked,
            last,
            head.position + 1,
            "head_mismatch",
            format!(
                "the recorded head is position {}, but the log goes on to position {}: entries were added behind the store's back",
                head.position, last.position
            ),
        );
    }
    let recorded = store.stream_versions().await?;
    let mut streams: Vec<(&Ulid, &u64)> = versions.iter().collect();
    streams.sort();
    for (stream, walked) in streams {
        let v = recorded.get(stream).copied().unwrap_or(0);
        if v != *walked {
            return fail(
                checked,
                last,
                last.position,
                "stream_version_mismatch",
                format!(
                    "stream {stream} is recorded at version {v}, but the log holds {walked} events"
                ),
            );
        }
    }
    for (stream, v) in &recorded {
        if !versions.contains_key(stream) {
            return fail(
                checked,
                last,
                last.position,
                "stream_version_mismatch",
                format!("stream {stream} is recorded at version {v}, but the log holds no events for it"),
            );
        }
    }
    Ok(VerifyReport {
        checked,
        last_good: last,
        problem: None,
    })
}

/// The outcome of walking one outbound channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelReport {
    pub partner: String,
    /// Entries examined.
    pub checked: u64,
    /// The last entry found good.
    pub head: crate::ChannelHead,
    /// The first problem: (seq, description).
    pub problem: Option<(u64, String)>,
}

/// Walks the outbound channel from `me` to every partner: seqs contiguous from 1, each
/// `prev_hash` the previous entry's hash, each hash the channel hash of the entry.
pub async fn verify_channels(
    store: &dyn Store,
    me: &str,
) -> Result<Vec<ChannelReport>, StoreError> {
    let mut out = vec![];
    for p in store.list_partners().await? {
        let mut head = crate::ChannelHead {
            seq: 0,
            hash: GENESIS_HASH,
        };
        let mut checked = 0;
        let mut problem = None;
        'walk: loop {
            let batch = store.read_outbox(&p.name, head.seq, MAX_READ_BATCH).await?;
            if batch.is_empty() {
                break;
            }
            for e in batch {
                checked += 1;
                let want = head.seq + 1;
                let computed =
                    ticketsync_wire::channel_hash(&e.prev_hash, e.seq, me, &p.name, &e.body);
                let why = if e.seq != want {
                    Some(format!(
                        "expected seq {want}, found {}: an entry is missing",
                        e.seq
                    ))
                } else if e.prev_hash != head.hash {
                    Some("prev_hash does not match the previous entry".to_string())
                } else if computed != e.hash {
                    Some("the entry does not hash to its stored hash: it was changed".to_string())
                } else {
                    None
                };
                if let Some(w) = why {
                    problem = Some((want, w));
                    break 'walk;
                }
                head = crate::ChannelHead {
                    seq: e.seq,
                    hash: e.hash,
                };
            }
        }
        out.push(ChannelReport {
            partner: p.name,
            checked,
            head,
            problem,
        });
    }
    Ok(out)
}
