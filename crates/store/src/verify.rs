//! `verify`: walks the log and its chain, and names the first position that is not what
//! an untouched log would hold.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ticketsync_wire::GENESIS_HASH;
use ulid::Ulid;

use crate::{HashedEntry, Head, IdColumn, NonCanonicalId, Store, StoreError, MAX_READ_BATCH};

/// The first problem found, at a log position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyProblem {
    /// The first log position that is wrong (for a missing entry: the position expected there).
    pub position: u64,
    /// A stable short name: `position_gap`, `prev_hash_mismatch`, `hash_mismatch`,
    /// `non_canonical_id`, `version_gap`, `head_mismatch`, `stream_version_mismatch`.
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

/// Most position ranges `verify_log` walks at once (it takes one per core, up to this).
pub const MAX_VERIFY_RANGES: usize = 4;

/// Stream versions as the walk goes, by stream. foldhash rather than the default SipHash
/// (one look-up per entry: 2.2% of `verify`'s profile was SipHash): randomly seeded,
/// so a log cannot be made to collide in it ahead of time.
type Versions = HashMap<Ulid, u64, foldhash::fast::RandomState>;

/// A stream met for the first time within a range: its version must follow the one the
/// ranges before left it at, which only the join can tell.
struct StreamJoin {
    /// 1-based index of the entry within its range.
    index: u64,
    position: u64,
    stream: Ulid,
    version: u64,
    /// The range's last good entry before it (`None`: it is the range's first).
    before: Option<Head>,
}

/// A problem found within a range: the entry's index in the range, the range's last good
/// entry before it (`None`: it is the range's first), and the problem.
type RangeProblem = (u64, Option<Head>, VerifyProblem);

/// Where the walk over one position range has got to. Everything an entry is checked
/// against is in the range except, for its first entry, the previous entry and, for the
/// first entry of each stream, the stream's version so far: those links are checked when
/// the ranges are joined, in order (`Joined::join`).
#[derive(Default)]
struct RangeWalk {
    checked: u64,
    /// The last entry checked and found good.
    last: Option<Head>,
    /// The range's first entry: its position and `prev_hash`.
    first: Option<(u64, [u8; 32])>,
    /// Every stream's version at the end of the walk (so far).
    versions: Versions,
    /// Streams first met in this range, in log order.
    joins: Vec<StreamJoin>,
    problem: Option<RangeProblem>,
}

impl RangeWalk {
    /// Checks the next entry, whose contents hash to `computed`; breaks at the first
    /// problem, which it keeps.
    fn step(&mut self, e: &HashedEntry) -> ControlFlow<()> {
        self.checked += 1;
        match self.last {
            None => self.first = Some((e.position, e.prev_hash)),
            Some(last) => {
                if let Some(p) = link_problem(last, e.position, &e.prev_hash) {
                    return self.fail(p);
                }
            }
        }
        if e.computed != e.hash {
            return self.fail(VerifyProblem {
                position: e.position,
                kind: "hash_mismatch",
                detail: format!(
                    "stored hash {} but the entry hashes to {}: its contents were changed",
                    hex::encode(e.hash),
                    hex::encode(e.computed)
                ),
            });
        }
        if let Some(id) = &e.non_canonical {
            return self.fail(non_canonical_id(e.position, id));
        }
        match self.versions.entry(e.stream_id) {
            Entry::Occupied(mut v) => {
                if e.version != *v.get() + 1 {
                    let problem = version_gap(e.position, e.stream_id, *v.get(), e.version);
                    return self.fail(problem);
                }
                v.insert(e.version);
            }
            Entry::Vacant(v) => {
                v.insert(e.version);
                self.joins.push(StreamJoin {
                    index: self.checked,
                    position: e.position,
                    stream: e.stream_id,
                    version: e.version,
                    before: self.last,
                });
            }
        }
        self.last = Some(Head {
            position: e.position,
            hash: e.hash,
        });
        ControlFlow::Continue(())
    }

    fn fail(&mut self, problem: VerifyProblem) -> ControlFlow<()> {
        self.problem = Some((self.checked, self.last, problem));
        ControlFlow::Break(())
    }
}

/// What is wrong with an entry at `position` with `prev_hash` following `last`, as far
/// as its position and its link go.
fn link_problem(last: Head, position: u64, prev_hash: &[u8; 32]) -> Option<VerifyProblem> {
    let want = last.position + 1;
    if position != want {
        return Some(VerifyProblem {
            position: want,
            kind: "position_gap",
            detail: format!("expected position {want}, found {position}: an entry is missing"),
        });
    }
    if *prev_hash != last.hash {
        return Some(VerifyProblem {
            position,
            kind: "prev_hash_mismatch",
            detail: format!(
                "prev_hash {} does not match the hash {} of position {}",
                hex::encode(prev_hash),
                hex::encode(last.hash),
                last.position
            ),
        });
    }
    None
}

/// An id stored as text that decodes to the value the hash covers, but is not the text
/// reads look it up by.
fn non_canonical_id(position: u64, id: &NonCanonicalId) -> VerifyProblem {
    let missed = match id.column {
        IdColumn::EventId => "a look-up by its event id misses it",
        IdColumn::StreamId => "reads of its stream (ticket) leave it out",
    };
    VerifyProblem {
        position,
        kind: "non_canonical_id",
        detail: format!(
            "{} is stored as {:?}, not as its canonical text {}: {missed}",
            id.column.name(),
            String::from_utf8_lossy(&id.found),
            id.value
        ),
    }
}

fn version_gap(position: u64, stream: Ulid, from: u64, to: u64) -> VerifyProblem {
    VerifyProblem {
        position,
        kind: "version_gap",
        detail: format!("stream {stream} goes from version {from} to {to}"),
    }
}

/// The walks over the ranges joined so far: what one walk over them in order finds.
struct Joined {
    checked: u64,
    last: Head,
    versions: Versions,
}

impl Joined {
    /// Appends the walk over the next range. On a problem, returns the report one walk
    /// over the whole log would give, stopping at the first problem: the range's first
    /// entry not following the previous range's last, a stream's first entry in the range
    /// not following its version so far, or the problem the range found itself, whichever
    /// comes first in the log.
    fn join(&mut self, w: RangeWalk) -> Option<VerifyReport> {
        let report = |checked, last, problem| VerifyReport {
            checked,
            last_good: last,
            problem: Some(problem),
        };
        if let Some((position, prev_hash)) = w.first {
            if let Some(p) = link_problem(self.last, position, &prev_hash) {
                return Some(report(self.checked + 1, self.last, p));
            }
        }
        let mut first = w.problem;
        for j in &w.joins {
            // On one entry the range's own checks (position, hashes) come before the
            // version's, as in one walk.
            if first.as_ref().is_some_and(|(index, ..)| *index <= j.index) {
                break;
            }
            let v = self.versions.get(&j.stream).copied().unwrap_or(0);
            if j.version != v + 1 {
                let problem = version_gap(j.position, j.stream, v, j.version);
                first = Some((j.index, j.before, problem));
                break;
            }
        }
        if let Some((index, before, problem)) = first {
            let last = before.unwrap_or(self.last);
            return Some(report(self.checked + index, last, problem));
        }
        self.checked += w.checked;
        if let Some(last) = w.last {
            self.last = last;
        }
        self.versions.extend(w.versions);
        None
    }
}

/// Progress over all ranges: entries checked, the count last reported, whom to tell.
type Progress<'p> = (u64, u64, &'p mut (dyn FnMut(u64) + Send));

/// What the walks over the ranges share while they run.
struct Shared<'p> {
    /// The first range found broken (`usize::MAX`: none yet): the ranges after it need not
    /// go on, as the report will name a position before theirs.
    stop: AtomicUsize,
    progress: Mutex<Progress<'p>>,
}

impl Shared<'_> {
    /// Counts `n` more entries checked; reports at every multiple of `PROGRESS_EVERY`.
    fn count(&self, n: usize) {
        // A panic in `progress` while it was held leaves the counts as they were.
        let mut g = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        let (done, reported, progress) = &mut *g;
        *done += n as u64;
        let at = *done - *done % PROGRESS_EVERY;
        if at > *reported {
            *reported = at;
            progress(at);
        }
    }
}

/// Walks range `index`, positions `(after, upto]`, into `walk`.
async fn walk_range(
    store: &dyn Store,
    index: usize,
    (after, upto): (u64, Option<u64>),
    walk: &mut RangeWalk,
    shared: &Shared<'_>,
) -> Result<(), StoreError> {
    store
        .scan_log_hashed(after, upto, &mut |batch| {
            if shared.stop.load(Ordering::Relaxed) < index {
                return ControlFlow::Break(());
            }
            for e in batch {
                if walk.step(e).is_break() {
                    shared.stop.fetch_min(index, Ordering::Relaxed);
                    return ControlFlow::Break(());
                }
            }
            shared.count(batch.len());
            ControlFlow::Continue(())
        })
        .await
}

type Walking<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// Walks all ranges at once: range `first + i`, `ranges[i]`, into `walks[i]`.
fn walk_all<'a>(
    store: &'a dyn Store,
    first: usize,
    ranges: &'a [(u64, Option<u64>)],
    walks: &'a mut [RangeWalk],
    shared: &'a Shared<'_>,
) -> Walking<'a> {
    Box::pin(async move {
        match (ranges, walks) {
            ([range], [walk]) => walk_range(store, first, *range, walk, shared).await,
            ([range, more @ ..], [walk, rest @ ..]) => {
                tokio::try_join!(
                    walk_range(store, first, *range, walk, shared),
                    walk_all(store, first + 1, more, rest, shared),
                )?;
                Ok(())
            }
            _ => Ok(()),
        }
    })
}

/// Walks every entry in position order, checking that positions are contiguous from 1,
/// that each `prev_hash` is the previous entry's hash, that each hash is the SHA-256 of
/// the entry, that its ids are stored as their canonical text (the hash covers their
/// values, reads look them up by that text), that stream versions are contiguous, and
/// that the recorded head and stream versions agree with the walk (which catches a log
/// cut short at its tail).
/// `progress` is called with the number of entries checked so far.
///
/// The log is cut into position ranges, one per core (up to [`MAX_VERIFY_RANGES`]),
/// walked at once: each entry's hash and its links to the entries before it in its range
/// are checked as it is read, the links across the cuts when the walks are joined, so the
/// report is the one a single walk in order gives.
pub async fn verify_log(
    store: &dyn Store,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<VerifyReport, StoreError> {
    let ranges = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_VERIFY_RANGES) as u64;
    // Only where the cuts fall depends on the recorded head, not what the walk finds.
    let head = store.head().await?.position;
    let cuts: Vec<u64> = (1..ranges).map(|k| head * k / ranges).collect();
    verify_log_cut_at(store, &cuts, progress).await
}

/// [`verify_log`] with the log cut into ranges after each of the positions in `cuts`;
/// wherever they are, the report is the same (tests cut the log everywhere).
pub async fn verify_log_cut_at(
    store: &dyn Store,
    cuts: &[u64],
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<VerifyReport, StoreError> {
    let mut cuts: Vec<u64> = cuts.iter().copied().filter(|&c| c > 0).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut ranges = Vec::with_capacity(cuts.len() + 1);
    let mut after = 0;
    for &c in &cuts {
        ranges.push((after, Some(c)));
        after = c;
    }
    ranges.push((after, None));
    let mut walks: Vec<RangeWalk> = ranges.iter().map(|_| RangeWalk::default()).collect();
    let shared = Shared {
        stop: AtomicUsize::new(usize::MAX),
        progress: Mutex::new((0, 0, progress)),
    };
    walk_all(store, 0, &ranges, &mut walks, &shared).await?;
    let mut joined = Joined {
        checked: 0,
        last: Head {
            position: 0,
            hash: GENESIS_HASH,
        },
        versions: Versions::default(),
    };
    for w in walks {
        if let Some(report) = joined.join(w) {
            return Ok(report);
        }
    }
    let Joined {
        checked,
        last,
        versions,
    } = joined;
    let (_, reported, progress) = shared
        .progress
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    if checked != reported {
        progress(checked);
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
