//! A simulation of the replication protocol between two real instances (SQLite files in
//! temporary directories), acme (the lead) and bolt (the partner), exchanging the signed
//! messages `outbound_messages` produces over an in-memory network that reorders,
//! duplicates and loses them, while both sides crash (the `Instance` is dropped and opened
//! again, so whatever survives comes from the database) and make conflicting outsourcing
//! moves. After a final drain (everything delivered in order, resends on gaps and on a
//! receiver behind the announced head) both instances must agree: same outsource status,
//! same shared items, every event that crossed applied exactly once, equal channel heads,
//! and nothing quarantined (both sides are honest).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::future::Future as _;
use std::str::FromStr;

use anyhow::Result;
use chrono::NaiveDate;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use rust_decimal::Decimal;
use tempfile::TempDir;
use ticketsync_app::{Failure, Instance};
use ticketsync_domain::sync::time_as_note;
use ticketsync_domain::{
    Attachment, Charge, Command, Currency, DomainError, InstanceId, ItemBody, ItemId, ItemKind,
    LinkId, OutsourceCommand, OutsourceStatus, Rate, Sharing, Terms, Ticket, TicketId, TimeEntry,
};
use ticketsync_projections::{TicketProjection, TicketView};
use ticketsync_store::ChannelHead;
use ticketsync_sync::{
    apply_message, apply_messages, outbound_messages, Outcome, Pipeline, Settled,
};
use ticketsync_wire::channel::{ChannelBody, BLOB_CHUNK_BYTES};
use ulid::Ulid;

// ---------------------------------------------------------------------------------------------
// The two instances
// ---------------------------------------------------------------------------------------------

const LEAD: &str = "acme";
const PARTNER: &str = "bolt";
const ALL: u32 = 10_000;

/// One end of the pair: acme (the lead) or bolt (the partner).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Acme,
    Bolt,
}

impl Who {
    fn name(self) -> &'static str {
        match self {
            Who::Acme => LEAD,
            Who::Bolt => PARTNER,
        }
    }
    fn user(self) -> &'static str {
        match self {
            Who::Acme => "alice",
            Who::Bolt => "carol",
        }
    }
    fn other(self) -> Who {
        match self {
            Who::Acme => Who::Bolt,
            Who::Bolt => Who::Acme,
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

struct Node {
    who: Who,
    dir: TempDir,
    inst: Option<Instance>,
}

impl Node {
    async fn new(who: Who) -> Result<Node> {
        let dir = tempfile::tempdir()?;
        Instance::init(dir.path(), who.name(), None, None).await?;
        let inst = Instance::open(dir.path(), Some(who.user().to_string())).await?;
        Ok(Node {
            who,
            dir,
            inst: Some(inst),
        })
    }

    fn inst(&self) -> &Instance {
        self.inst.as_ref().expect("the instance is open")
    }

    /// Drops the instance (its store and pool) and opens it again from its directory.
    async fn crash(&mut self) -> Result<()> {
        drop(self.inst.take());
        self.inst = Some(Instance::open(self.dir.path(), Some(self.who.user().to_string())).await?);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("test decimal")
}

fn ticket_id() -> TicketId {
    TicketId(Ulid(0x0123_4567_89ab_cdef_0011_2233_4455_6677))
}

fn link_id() -> LinkId {
    LinkId(Ulid(0x0B00_0000_0000_0000_0000_0000_0000_0001))
}

fn item_id(n: u128) -> ItemId {
    ItemId(Ulid(0x0A00_0000_0000_0000_0000_0000_0000_0000 + n))
}

fn terms(rate: u32) -> Terms {
    Terms {
        rate: Rate::Hourly(Decimal::from(rate)),
        currency: Currency::parse("EUR").expect("EUR"),
        authorized_hours: Some(d("10")),
        authorized_charge: Some(d("500")),
        // No deadline: the real clock must never expire the offer under the test.
        respond_by: None,
        instructions: format!("replace the fan at {rate}/h"),
        rounding: Default::default(),
    }
}

fn entry(hours: u32) -> TimeEntry {
    TimeEntry {
        hours: Decimal::from(hours),
        offset_hours: d("0"),
        resource: "Alice Smith".into(),
        role: Some("Engineer".into()),
        summary: "replaced the fan".into(),
        date: NaiveDate::from_ymd_opt(2025, 3, 14).expect("date"),
        billable: true,
    }
}

fn charge(quantity: u32) -> Charge {
    Charge {
        description: "Fan, 120 mm".into(),
        quantity: Decimal::from(quantity),
        unit_cost: d("10"),
        unit_price: d("30"),
        billable: true,
    }
}

fn out(c: OutsourceCommand) -> Command {
    Command::Outsource(c)
}

fn send_cmd() -> Command {
    out(OutsourceCommand::Send {
        link: link_id(),
        partner: InstanceId::parse(PARTNER).expect("partner"),
        terms: terms(95),
    })
}

fn status_cmd(s: &str) -> Command {
    Command::ChangeStatus { status: s.into() }
}

/// The workflow moves each side may try, with how often (the other side's moves are not
/// worth generating: they are refused before anything is written).
const LEAD_MOVES: [(&str, usize); 6] = [
    ("cancel", 1),
    ("revise", 1),
    ("reject", 2),
    ("approve", 2),
    ("force-complete", 1),
    ("status Complete", 1),
];
const PARTNER_MOVES: [(&str, usize); 5] = [
    ("accept", 4),
    ("decline", 1),
    ("counter", 1),
    ("complete", 2),
    ("status Complete", 1),
];

/// The `k`th move of `who` (modulo the weighted list); `n` varies the terms.
fn flow_cmd(who: Who, k: usize, n: u32) -> (&'static str, Command) {
    let table: &[(&'static str, usize)] = match who {
        Who::Acme => &LEAD_MOVES,
        Who::Bolt => &PARTNER_MOVES,
    };
    let total: usize = table.iter().map(|(_, w)| w).sum();
    let mut k = k % total;
    let name = table
        .iter()
        .find(|(_, w)| {
            let hit = k < *w;
            k = k.saturating_sub(*w);
            hit
        })
        .map(|(m, _)| *m)
        .expect("a move");
    let cmd = match name {
        "cancel" => out(OutsourceCommand::Cancel),
        "revise" => out(OutsourceCommand::Revise {
            terms: terms(100 + n),
        }),
        "reject" => out(OutsourceCommand::Reject {
            reason: "the fan still rattles".into(),
        }),
        "approve" => out(OutsourceCommand::Approve),
        "force-complete" => out(OutsourceCommand::ForceComplete),
        "accept" => out(OutsourceCommand::Accept { organization: None }),
        "decline" => out(OutsourceCommand::Decline {
            reason: "too far away".into(),
        }),
        "counter" => out(OutsourceCommand::Counter {
            terms: terms(120 + n),
        }),
        "complete" => out(OutsourceCommand::Complete),
        _ => status_cmd("Complete"),
    };
    (name, cmd)
}

/// A refusal by the domain or the application is an expected answer to a random command;
/// anything else (a store error) is a failure of the test.
fn is_refusal(e: &anyhow::Error) -> bool {
    e.downcast_ref::<DomainError>().is_some() || e.downcast_ref::<Failure>().is_some()
}

// ---------------------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------------------

/// A command on one side.
#[derive(Clone, Debug)]
enum Op {
    /// The lead outsources the ticket to bolt (only the first time).
    Send,
    Note {
        internal: bool,
    },
    Time,
    Charge,
    /// An attachment; a big one spans two blob chunks on the channel.
    Attachment {
        internal: bool,
        big: bool,
    },
    /// Edit one of the items this side authored (index into them).
    Edit(usize),
    Delete(usize),
    /// A workflow move from this side's list.
    Flow(usize),
    /// A ticket status change to one of the configured statuses.
    Status(usize),
}

/// A step of the simulation. A direction is named by its sender.
#[derive(Clone, Debug)]
enum Action {
    /// A command; with `true` the side's relay publishes what it routed right away (one
    /// message), otherwise it stays in the outbox for a later `Publish`.
    Do(Who, Op, bool),
    /// The sender's relay publishes its next batch of at most `limit` entries.
    Publish(Who, u32),
    /// The receiver takes the oldest message in flight.
    DeliverNext(Who),
    /// The receiver takes the oldest messages in flight as batches of the daemon's inbound
    /// pipeline (up to `.1` batches of up to `.2` messages), each prepared while the batch
    /// before it is still written, and acknowledged once committed.
    DeliverBatches(Who, usize, usize),
    /// The receiver takes some message in flight (reordering).
    DeliverAny(Who, usize),
    /// A message in flight is duplicated.
    Duplicate(Who, usize),
    /// A message in flight is lost.
    Lose(Who, usize),
    /// The sender publishes again the last `back` entries it published.
    Resend(Who, u64),
    /// The instance crashes and is opened again.
    Crash(Who),
    /// The receiver of the channel from `Who` crashes while applying the oldest message
    /// in flight (its apply is polled a few times, then dropped, and the instance opened
    /// again); the message stays in flight, as it was never acknowledged.
    CrashMidApply(Who, u32),
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![Just(Who::Acme), Just(Who::Bolt)]
}

/// A command of `w`; the partner makes more workflow moves than the lead, so that links
/// get accepted and worked on before the lead's moves end them.
fn op(w: Who) -> impl Strategy<Value = Op> {
    let flow = match w {
        Who::Acme => 3,
        Who::Bolt => 8,
    };
    prop_oneof![
        4 => prop::bool::weighted(0.25).prop_map(|internal| Op::Note { internal }),
        2 => Just(Op::Time),
        1 => Just(Op::Charge),
        1 => (prop::bool::weighted(0.25), prop::bool::weighted(0.2))
            .prop_map(|(internal, big)| Op::Attachment { internal, big }),
        3 => (0..8usize).prop_map(Op::Edit),
        1 => (0..8usize).prop_map(Op::Delete),
        flow => (0..usize::MAX).prop_map(Op::Flow),
        1 => (0..4usize).prop_map(Op::Status),
    ]
}

fn command() -> impl Strategy<Value = Action> {
    (who(), prop::bool::weighted(0.7))
        .prop_flat_map(|(w, publish)| op(w).prop_map(move |o| Action::Do(w, o, publish)))
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        16 => command(),
        6 => (who(), 1..4u32).prop_map(|(w, l)| Action::Publish(w, l)),
        5 => who().prop_map(Action::DeliverNext),
        4 => (who(), 1..4usize, 1..4usize).prop_map(|(w, b, n)| Action::DeliverBatches(w, b, n)),
        4 => (who(), any::<usize>()).prop_map(|(w, i)| Action::DeliverAny(w, i)),
        2 => (who(), any::<usize>()).prop_map(|(w, i)| Action::Duplicate(w, i)),
        2 => (who(), any::<usize>()).prop_map(|(w, i)| Action::Lose(w, i)),
        1 => (who(), 1..5u64).prop_map(|(w, b)| Action::Resend(w, b)),
        1 => who().prop_map(Action::Crash),
        1 => (who(), 1..40u32).prop_map(|(w, n)| Action::CrashMidApply(w, n)),
    ]
}

/// Random actions, with the lead's Send inserted among the first few, and one in-order
/// delivery to bolt a little after it (so that most cases get past the offer).
fn scenario() -> impl Strategy<Value = Vec<Action>> {
    (
        prop::collection::vec(action(), 10..60),
        0..6usize,
        1..10usize,
    )
        .prop_map(|(mut v, at, later)| {
            let at = at.min(v.len());
            v.insert(at, Action::Do(Who::Acme, Op::Send, true));
            let later = (at + later).min(v.len());
            v.insert(later, Action::DeliverNext(Who::Acme));
            v
        })
}

// ---------------------------------------------------------------------------------------------
// The simulator
// ---------------------------------------------------------------------------------------------

/// One direction of the network, named by its sender.
#[derive(Default)]
struct Wire {
    /// Messages in flight, oldest first.
    pending: VecDeque<Vec<u8>>,
    /// The last seq the sender's relay published (kept in memory: reset by a crash).
    cursor: u64,
}

#[derive(Default, Debug, Clone)]
struct Stats {
    commands_ok: u64,
    commands_refused: u64,
    applied: u64,
    duplicates: u64,
    gaps: u64,
    lost: u64,
    crashes: u64,
    /// Pipeline batches written in the background; of the batches taken while one was in
    /// flight, those left in flight in turn (prepared while the one before was written)
    /// and those applied on their own instead.
    pipelined: u64,
    overlapped: u64,
    fell_back: u64,
    /// Transitions that lost a race (recorded, not effective), at the end.
    superseded: u64,
    /// Items shared (on acme) at the end, and items diverged on one side.
    shared_items: u64,
    diverged_items: u64,
    final_status: BTreeMap<String, u64>,
}

struct Sim {
    nodes: [Node; 2],
    wires: [Wire; 2],
    /// Items each side authored (id, kind), in order.
    items: [Vec<(ItemId, ItemKind)>; 2],
    next_item: u128,
    sent: bool,
    trace: Vec<String>,
    stats: Stats,
    /// Per channel (by sender): the receiver's inbound pipeline.
    pipes: [Pipeline<Vec<u8>>; 2],
}

impl Sim {
    /// Two fresh instances, paired: acme invites bolt, bolt joins, and bolt's hello is
    /// delivered to acme. acme's ticket is created (not outsourced yet).
    async fn paired() -> Result<Sim> {
        let mut sim = Sim::joined().await?;
        sim.publish(Who::Bolt, ALL).await?;
        let o = sim.deliver_next(Who::Bolt).await?.expect("the hello");
        assert_eq!(o.applied, 1, "the hello is applied: {o:?}");
        sim.ticket_created().await?;
        Ok(sim)
    }

    /// acme invited bolt and bolt joined: bolt's hello is in its outbox.
    async fn joined() -> Result<Sim> {
        let acme = Node::new(Who::Acme).await?;
        let bolt = Node::new(Who::Bolt).await?;
        let code = acme.inst().invite(PARTNER, 24 * 3600 * 1000).await?;
        bolt.inst().join(&code, Some("Bolt Ltd".into())).await?;
        Ok(Sim {
            nodes: [acme, bolt],
            wires: [Wire::default(), Wire::default()],
            items: [vec![], vec![]],
            next_item: 0,
            sent: false,
            trace: vec![],
            stats: Stats::default(),
            pipes: [Pipeline::default(), Pipeline::default()],
        })
    }

    /// Checks the pairing is complete and creates acme's ticket.
    async fn ticket_created(&mut self) -> Result<()> {
        let p = self.inst(Who::Acme).store.get_partner(PARTNER).await?;
        assert_eq!(
            p.map(|p| p.state),
            Some(ticketsync_store::PartnerState::Paired),
            "acme is paired with bolt after the hello"
        );
        self.inst(Who::Acme)
            .execute(
                ticket_id(),
                Command::CreateTicket {
                    title: "Printer on fire".into(),
                    description: "Third floor".into(),
                    customer: Some("Initech".into()),
                },
            )
            .await?;
        Ok(())
    }

    fn inst(&self, w: Who) -> &Instance {
        self.nodes[w.idx()].inst()
    }

    fn log(&mut self, s: String) {
        self.trace.push(s);
    }

    fn trace(&self) -> String {
        self.trace.join("\n")
    }

    /// Runs a command on `w`'s instance; a refusal is recorded and ignored.
    async fn exec(&mut self, w: Who, what: &str, cmd: Command) -> Result<bool> {
        match self.inst(w).execute(ticket_id(), cmd).await {
            Ok(written) => {
                self.stats.commands_ok += 1;
                let types: Vec<&str> = written.iter().map(|e| e.event_type.as_str()).collect();
                self.log(format!("{w}: {what} -> {types:?}"));
                Ok(true)
            }
            Err(e) if is_refusal(&e) => {
                self.stats.commands_refused += 1;
                self.log(format!("{w}: {what} refused ({e})"));
                Ok(false)
            }
            Err(e) => Err(e.context(format!("{w}: {what}"))),
        }
    }

    async fn op(&mut self, w: Who, op: Op) -> Result<()> {
        let mine = self.items[w.idx()].clone();
        match op {
            Op::Send => {
                if w == Who::Acme && !self.sent {
                    self.sent = self.exec(w, "send to bolt", send_cmd()).await?;
                }
            }
            Op::Note { internal } => {
                self.next_item += 1;
                let id = item_id(self.next_item);
                let cmd = Command::AddNote {
                    item: id,
                    text: format!("note {} by {w}", self.next_item),
                    internal,
                };
                let what = format!("add note {id} internal={internal}");
                if self.exec(w, &what, cmd).await? {
                    self.items[w.idx()].push((id, ItemKind::Note));
                }
            }
            Op::Time => {
                self.next_item += 1;
                let id = item_id(self.next_item);
                let cmd = Command::AddTime {
                    item: id,
                    entry: entry(1 + (self.next_item % 3) as u32),
                };
                if self.exec(w, &format!("add time {id}"), cmd).await? {
                    self.items[w.idx()].push((id, ItemKind::Time));
                }
            }
            Op::Charge => {
                self.next_item += 1;
                let id = item_id(self.next_item);
                let cmd = Command::AddCharge {
                    item: id,
                    charge: charge(1 + (self.next_item % 4) as u32),
                };
                if self.exec(w, &format!("add charge {id}"), cmd).await? {
                    self.items[w.idx()].push((id, ItemKind::Charge));
                }
            }
            Op::Attachment { internal, big } => {
                self.next_item += 1;
                let n = self.next_item;
                let id = item_id(n);
                let mut content = format!("attachment {n}\n").into_bytes();
                let len = if big { BLOB_CHUNK_BYTES + 1000 } else { 64 };
                content.extend((0..len).map(|i| (i % 251) as u8));
                let file = self.nodes[w.idx()].dir.path().join(format!("upload-{n}"));
                std::fs::write(&file, &content)?;
                let (sha256, size) = self.inst(w).store_blob(&file)?;
                let cmd = Command::AddAttachment {
                    item: id,
                    attachment: Attachment {
                        sha256,
                        filename: format!("log-{n}.txt"),
                        size,
                        media_type: "text/plain".into(),
                        internal,
                    },
                };
                let what = format!("add attachment {id} internal={internal} big={big}");
                if self.exec(w, &what, cmd).await? {
                    self.items[w.idx()].push((id, ItemKind::Attachment));
                }
            }
            Op::Edit(k) => {
                let Some(&(id, kind)) = mine.get(k % mine.len().max(1)) else {
                    return Ok(());
                };
                self.next_item += 1;
                let n = self.next_item;
                let cmd = match kind {
                    ItemKind::Note => Command::EditNote {
                        item: id,
                        text: Some(format!("note {id} edited ({n})")),
                        internal: None,
                    },
                    ItemKind::Time => Command::EditTime {
                        item: id,
                        patch: ticketsync_domain::command::TimePatch {
                            hours: Some(Decimal::from(4 + (n % 5) as u32)),
                            ..Default::default()
                        },
                    },
                    ItemKind::Charge => Command::EditCharge {
                        item: id,
                        patch: ticketsync_domain::command::ChargePatch {
                            quantity: Some(Decimal::from(5 + (n % 5) as u32)),
                            ..Default::default()
                        },
                    },
                    ItemKind::Attachment => return Ok(()),
                };
                self.exec(w, &format!("edit {kind} {id}"), cmd).await?;
            }
            Op::Delete(k) => {
                let Some(&(id, kind)) = mine.get(k % mine.len().max(1)) else {
                    return Ok(());
                };
                let cmd = Command::DeleteItem { item: id, kind };
                self.exec(w, &format!("delete {kind} {id}"), cmd).await?;
            }
            Op::Flow(k) => {
                self.next_item += 1;
                let (what, cmd) = flow_cmd(w, k, self.next_item as u32);
                self.exec(w, what, cmd).await?;
            }
            Op::Status(k) => {
                let names = self.inst(w).policy.statuses.names().to_vec();
                let s = names[k % names.len()].clone();
                self.exec(w, &format!("status {s}"), status_cmd(&s)).await?;
            }
        }
        Ok(())
    }

    /// The sender's relay publishes the signed messages carrying its outbox entries after
    /// `after` (at most `limit`); the cursor moves to the last seq published if that is
    /// further.
    async fn produce(&mut self, from: Who, after: u64, limit: u32) -> Result<usize> {
        let inst = self.nodes[from.idx()].inst();
        let p = inst
            .store
            .get_partner(from.other().name())
            .await?
            .expect("the sender knows its partner");
        let msgs = outbound_messages(inst, &p, after, limit).await?;
        let n = msgs.len();
        let wire = &mut self.wires[from.idx()];
        for (last, raw) in msgs {
            wire.cursor = wire.cursor.max(last);
            wire.pending.push_back(raw);
        }
        Ok(n)
    }

    async fn publish(&mut self, from: Who, limit: u32) -> Result<()> {
        let after = self.wires[from.idx()].cursor;
        let n = self.produce(from, after, limit).await?;
        if n > 0 {
            let cursor = self.wires[from.idx()].cursor;
            self.log(format!("{from} publishes {}..={cursor}", after + 1));
        }
        Ok(())
    }

    /// Delivers the message at `idx` of the channel from `from` to its receiver.
    async fn deliver_at(&mut self, from: Who, idx: usize) -> Result<Option<Outcome>> {
        let Some(raw) = self.wires[from.idx()].pending.remove(idx) else {
            return Ok(None);
        };
        self.deliver(from, raw).await.map(Some)
    }

    async fn deliver_next(&mut self, from: Who) -> Result<Option<Outcome>> {
        self.deliver_at(from, 0).await
    }

    /// The sender `from` as its receiver knows it.
    async fn receivers_partner(&self, from: Who) -> Result<ticketsync_store::Partner> {
        Ok(self
            .inst(from.other())
            .store
            .get_partner(from.name())
            .await?
            .expect("the receiver knows its partner"))
    }

    /// Applies one message at the receiver as the daemon does (projections brought up to
    /// date after something was applied); a gap makes the sender publish again from the
    /// missing seq.
    async fn deliver(&mut self, from: Who, raw: Vec<u8>) -> Result<Outcome> {
        let to = from.other();
        let p = self.receivers_partner(from).await?;
        let inst = self.nodes[to.idx()].inst();
        // One consumer per channel: a batch in the pipeline settles first.
        let batches = self.pipes[from.idx()].settle(inst).await?;
        self.observe(from, batches).await?;
        let inst = self.nodes[to.idx()].inst();
        let o = apply_message(inst, &p, &raw).await?;
        self.observed(from, o).await
    }

    /// Takes the oldest messages in flight from `from`, up to `n`, as one batch of the
    /// receiver's inbound pipeline.
    async fn deliver_batch(&mut self, from: Who, n: usize) -> Result<()> {
        let wire = &mut self.wires[from.idx()];
        let n = n.min(wire.pending.len());
        if n == 0 {
            return Ok(());
        }
        let batch: Vec<Vec<u8>> = wire.pending.drain(..n).collect();
        let to = from.other();
        let p = self.receivers_partner(from).await?;
        let inst = self.nodes[to.idx()].inst();
        let before = self.pipes[from.idx()].is_writing();
        let settled = self.pipes[from.idx()]
            .take(inst, &p, batch, |m| m.as_slice())
            .await?;
        if before && self.pipes[from.idx()].is_writing() {
            self.stats.overlapped += 1;
        }
        if before && settled.iter().any(|b| !b.pipelined) {
            self.stats.fell_back += 1;
        }
        self.log(format!(
            "{from} -> {to}: {n} messages into the pipeline (one in flight before: {before}, now: {}; {} settled)",
            self.pipes[from.idx()].is_writing(),
            settled.len()
        ));
        self.observe(from, settled).await
    }

    /// Batches the pipeline of the channel from `from` settled: acknowledged, so they
    /// leave the wire for good (they already have), observed as single deliveries are.
    async fn observe(
        &mut self,
        from: Who,
        batches: impl IntoIterator<Item = Settled<Vec<u8>>>,
    ) -> Result<()> {
        for b in batches {
            self.stats.pipelined += u64::from(b.pipelined);
            self.log(format!(
                "{from}'s batch of {} messages settled (pipelined: {})",
                b.tokens.len(),
                b.pipelined
            ));
            self.observed(from, b.outcome).await?;
        }
        Ok(())
    }

    /// Checks and counts what applying messages from `from` did, as the daemon follows it
    /// up (projections brought up to date, a resend asked for on a gap).
    async fn observed(&mut self, from: Who, o: Outcome) -> Result<Outcome> {
        let to = from.other();
        let inst = self.nodes[to.idx()].inst();
        if o.applied > 0 || o.quarantined > 0 {
            inst.refresh().await?;
        }
        let head = inst.store.inbound_head(from.name()).await?;
        self.log(format!(
            "{from} -> {to}: applied {} dup {} gap {:?} (head {})",
            o.applied, o.duplicates, o.gap, head.seq
        ));
        self.stats.applied += o.applied;
        self.stats.duplicates += o.duplicates;
        assert_eq!(
            (o.quarantined, o.rejected_messages),
            (0, 0),
            "an honest sender's message was refused: {o:?}\n{}",
            self.trace()
        );
        self.check_channel(from).await?;
        if let Some(seq) = o.gap {
            assert!(seq >= 1, "a gap names the first missing seq");
            self.stats.gaps += 1;
            let n = self.produce(from, seq - 1, ALL).await?;
            self.log(format!("{from} resends from {seq} ({n} messages)"));
        }
        Ok(o)
    }

    /// The receiver's checkpoint is an entry of the sender's channel: never ahead of it,
    /// and with the same hash at that seq.
    async fn check_channel(&self, from: Who) -> Result<()> {
        let to = from.other();
        let head = self.inst(to).store.inbound_head(from.name()).await?;
        let out = self.inst(from).store.outbox_head(to.name()).await?;
        assert!(
            head.seq <= out.seq,
            "{to}'s inbound checkpoint {} is ahead of {from}'s outbox head {}\n{}",
            head.seq,
            out.seq,
            self.trace()
        );
        if head.seq > 0 {
            let at = self
                .inst(from)
                .store
                .read_outbox(to.name(), head.seq - 1, 1)
                .await?;
            assert_eq!(
                at.first().map(|e| (e.seq, e.hash)),
                Some((head.seq, head.hash)),
                "{to}'s inbound checkpoint is not {from}'s entry at that seq\n{}",
                self.trace()
            );
        }
        Ok(())
    }

    async fn crash(&mut self, w: Who) -> Result<()> {
        // A batch in w's inbound pipeline was committed or not, but never acknowledged:
        // the broker delivers its messages again.
        let from = w.other();
        let back = self.pipes[from.idx()].abandon().await;
        if !back.is_empty() {
            self.log(format!(
                "{w} crashes with {} of {from}'s messages unacknowledged",
                back.len()
            ));
            for m in back.into_iter().rev() {
                self.wires[from.idx()].pending.push_front(m);
            }
        }
        self.nodes[w.idx()].crash().await?;
        // The relay's cursor lives in the daemon: it resumes from what the broker acked.
        let acked = self.inst(w).store.outbox_acked(w.other().name()).await?;
        self.wires[w.idx()].cursor = acked;
        self.stats.crashes += 1;
        self.log(format!("{w} crashes (relay resumes after {acked})"));
        Ok(())
    }

    /// Starts applying the oldest message from `from`, lets it run for `polls` polls (the
    /// store's worker threads progress meanwhile), drops it and crashes the receiver.
    async fn crash_mid_apply(&mut self, from: Who, polls: u32) -> Result<()> {
        let to = from.other();
        // One consumer per channel: a batch in the pipeline settles first.
        let batches = self.pipes[from.idx()]
            .settle(self.nodes[to.idx()].inst())
            .await?;
        self.observe(from, batches).await?;
        let Some(raw) = self.wires[from.idx()].pending.front().cloned() else {
            return Ok(());
        };
        let finished = {
            let inst = self.nodes[to.idx()].inst();
            let p = inst
                .store
                .get_partner(from.name())
                .await?
                .expect("the receiver knows its partner");
            let mut fut = std::pin::pin!(apply_message(inst, &p, &raw));
            // Each poll after the first is the apply being woken by the store (a query
            // answered): `polls` counts the steps it gets to make before the crash.
            let mut left = polls;
            let finished = std::future::poll_fn(|cx| {
                if left == 0 {
                    return std::task::Poll::Ready(None);
                }
                left -= 1;
                fut.as_mut().poll(cx).map(Some)
            })
            .await;
            finished.transpose()?
        };
        self.log(format!(
            "{to} crashes while applying {from}'s message (finished: {finished:?})"
        ));
        if let Some(o) = &finished {
            assert_eq!(
                (o.quarantined, o.rejected_messages),
                (0, 0),
                "an honest sender's message was refused: {o:?}\n{}",
                self.trace()
            );
        }
        self.crash(to).await?;
        self.check_channel(from).await
    }

    async fn step(&mut self, a: Action) -> Result<()> {
        match a {
            Action::Do(w, op, publish) => {
                self.op(w, op).await?;
                if publish {
                    self.publish(w, ALL).await?;
                }
            }
            Action::Publish(w, limit) => self.publish(w, limit).await?,
            Action::DeliverNext(w) => {
                self.deliver_next(w).await?;
            }
            Action::DeliverBatches(w, batches, n) => {
                for _ in 0..batches {
                    self.deliver_batch(w, n).await?;
                }
            }
            Action::DeliverAny(w, i) => {
                let n = self.wires[w.idx()].pending.len();
                if n > 0 {
                    self.deliver_at(w, i % n).await?;
                }
            }
            Action::Duplicate(w, i) => {
                let wire = &mut self.wires[w.idx()];
                let n = wire.pending.len();
                if n > 0 {
                    let m = wire.pending[i % n].clone();
                    wire.pending.push_back(m);
                    self.log(format!("{w}'s message {} duplicated", i % n));
                }
            }
            Action::Lose(w, i) => {
                let wire = &mut self.wires[w.idx()];
                let n = wire.pending.len();
                if n > 0 {
                    wire.pending.remove(i % n);
                    self.stats.lost += 1;
                    self.log(format!("{w}'s message {} lost", i % n));
                }
            }
            Action::Resend(w, back) => {
                let cursor = self.wires[w.idx()].cursor;
                let after = cursor.saturating_sub(back);
                if after < cursor {
                    self.produce(w, after, (cursor - after) as u32).await?;
                    self.log(format!("{w} republishes {}..={cursor}", after + 1));
                }
            }
            Action::Crash(w) => self.crash(w).await?,
            Action::CrashMidApply(w, polls) => self.crash_mid_apply(w, polls).await?,
        }
        Ok(())
    }

    /// Delivers everything in order, with the relays publishing what is left and resending
    /// from the receiver's checkpoint when it is behind the announced head, until both
    /// channels are drained. Fails if that does not converge.
    async fn drain(&mut self) -> Result<()> {
        for from in [Who::Acme, Who::Bolt] {
            let inst = self.nodes[from.other().idx()].inst();
            let batches = self.pipes[from.idx()].settle(inst).await?;
            self.observe(from, batches).await?;
        }
        for _round in 0..20 {
            for from in [Who::Acme, Who::Bolt] {
                self.publish(from, ALL).await?;
                let mut budget = 10_000;
                while self.deliver_next(from).await?.is_some() {
                    budget -= 1;
                    assert!(
                        budget > 0,
                        "delivering in order does not end\n{}",
                        self.trace()
                    );
                }
                // The head announcement: a receiver behind asks for a resend.
                let to = from.other();
                let head = self.inst(to).store.inbound_head(from.name()).await?;
                let out = self.inst(from).store.outbox_head(to.name()).await?;
                if head.seq < out.seq {
                    self.produce(from, head.seq, ALL).await?;
                    self.log(format!("{to} is behind ({}); {from} resends", head.seq));
                    while self.deliver_next(from).await?.is_some() {}
                }
            }
            if self.converged().await? {
                return Ok(());
            }
        }
        panic!("the channels did not converge\n{}", self.trace());
    }

    async fn heads(&self, from: Who) -> Result<(ChannelHead, ChannelHead)> {
        let to = from.other();
        Ok((
            self.inst(from).store.outbox_head(to.name()).await?,
            self.inst(to).store.inbound_head(from.name()).await?,
        ))
    }

    async fn converged(&self) -> Result<bool> {
        for from in [Who::Acme, Who::Bolt] {
            let (out, inb) = self.heads(from).await?;
            if out != inb || !self.wires[from.idx()].pending.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn ticket(&self, w: Who) -> Result<Option<Ticket>> {
        Ok(self.inst(w).load(ticket_id()).await?.0)
    }

    async fn view(&self, w: Who) -> Result<Option<TicketView>> {
        self.inst(w).refresh().await?;
        Ok(TicketProjection::get(self.inst(w).store.as_ref(), ticket_id().0).await?)
    }

    /// Everything the property says about two drained instances.
    async fn check_converged(&mut self) -> Result<()> {
        let trace = self.trace();
        // Equal channel heads, both directions.
        for from in [Who::Acme, Who::Bolt] {
            let (out, inb) = self.heads(from).await?;
            assert_eq!(
                out,
                inb,
                "{from}'s outbox head differs from {}'s inbound head\n{trace}",
                from.other()
            );
        }
        // Nothing quarantined: both sides are honest.
        for w in [Who::Acme, Who::Bolt] {
            let q = self.inst(w).store.list_quarantine().await?;
            assert!(q.is_empty(), "{w} quarantined {q:#?}\n{trace}");
        }
        // Every event that crossed is in the receiver's log exactly once, and nothing
        // else authored by the sender is.
        for from in [Who::Acme, Who::Bolt] {
            let to = from.other();
            let mut crossed = BTreeSet::new();
            for e in self.inst(from).store.read_outbox(to.name(), 0, ALL).await? {
                if let ChannelBody::Event(re) = ChannelBody::decode(&e.body).expect("body") {
                    assert!(
                        crossed.insert(re.event_ulid()),
                        "{from} put event {} on its channel twice\n{trace}",
                        re.event_ulid()
                    );
                }
            }
            let log = self.inst(to).store.read_log(0, ALL).await?;
            let mut count: BTreeMap<Ulid, usize> = BTreeMap::new();
            for e in &log {
                *count.entry(e.event_id).or_default() += 1;
            }
            for (id, n) in &count {
                assert_eq!(*n, 1, "event {id} is {n} times in {to}'s log\n{trace}");
            }
            for id in &crossed {
                assert_eq!(
                    count.get(id),
                    Some(&1),
                    "event {id} from {from} is not in {to}'s log exactly once\n{trace}"
                );
            }
            let by_sender: BTreeSet<Ulid> = log
                .iter()
                .filter(|e| e.actor_instance == from.name())
                .map(|e| e.event_id)
                .collect();
            assert_eq!(
                by_sender, crossed,
                "{to}'s log holds other events of {from} than those that crossed\n{trace}"
            );
        }
        // Same outsource status, same shared items.
        let (a, b) = (self.ticket(Who::Acme).await?, self.ticket(Who::Bolt).await?);
        let a = a.expect("acme has its ticket");
        let status_a = a.current_link().map(|l| l.status);
        let status_b = b.as_ref().and_then(|t| t.current_link()).map(|l| l.status);
        if self.sent {
            assert_eq!(status_a, status_b, "the outsource statuses differ\n{trace}");
            let b = b.as_ref().expect("bolt has the insourced ticket");
            check_items(&a, b, &trace);
            // The content of every attachment either side holds as shared arrived.
            for (w, t) in [(Who::Acme, &a), (Who::Bolt, b)] {
                for i in t.items.values() {
                    if let ItemBody::Attachment(att) = &i.body {
                        if t.sharing(i) == Sharing::Shared {
                            assert!(
                                self.inst(w).blob_path(&att.sha256).exists(),
                                "{w} lacks the content of attachment {}\n{trace}",
                                i.id
                            );
                        }
                    }
                }
            }
            assert_eq!(
                a.current_link().map(|l| (&l.terms, l.accepted_version)),
                b.current_link().map(|l| (&l.terms, l.accepted_version)),
                "the terms differ\n{trace}"
            );
            assert_eq!(
                resolved(&a),
                resolved(b),
                "the transitions known or their resolution differ\n{trace}"
            );
        } else {
            assert_eq!(status_a, None, "no send, no link\n{trace}");
            assert!(b.is_none(), "bolt has a ticket it was never sent\n{trace}");
        }
        // Each side's projection agrees with its own log.
        for (w, t) in [(Who::Acme, Some(&a)), (Who::Bolt, b.as_ref())] {
            let v = self.view(w).await?;
            let Some(t) = t else {
                assert!(v.is_none(), "{w} shows a ticket it does not have\n{trace}");
                continue;
            };
            let v = v.expect("the projection shows the ticket");
            assert_eq!(
                v.outsource_status.as_deref(),
                t.current_link().map(|l| l.status.name()),
                "{w}'s projected outsource status\n{trace}"
            );
            let projected: BTreeMap<String, String> = v
                .items
                .iter()
                .map(|i| (i.id.clone(), i.sharing.clone()))
                .collect();
            let folded: BTreeMap<String, String> = t
                .items
                .values()
                .map(|i| (i.id.to_string(), t.sharing(i).name().to_string()))
                .collect();
            assert_eq!(projected, folded, "{w}'s projected item sharing\n{trace}");
        }
        if let Some(l) = a.current_link() {
            self.stats.superseded += l.effective.iter().filter(|e| !**e).count() as u64;
        }
        for i in a.items.values() {
            match a.sharing(i) {
                Sharing::Shared => self.stats.shared_items += 1,
                Sharing::Diverged => self.stats.diverged_items += 1,
                _ => {}
            }
        }
        let key = status_a.map_or("not sent".to_string(), |s| s.name().to_string());
        *self.stats.final_status.entry(key).or_default() += 1;
        Ok(())
    }
}

/// Every transition of every link, with whether it took effect, in a canonical order.
fn resolved(t: &Ticket) -> BTreeSet<String> {
    t.links
        .iter()
        .flat_map(|l| {
            l.transitions
                .iter()
                .zip(&l.effective)
                .map(move |(t, e)| format!("{} {t:?} effective={e}", l.id))
        })
        .collect()
}

/// The items both sides hold as shared. An author's change of a shared item made while
/// the link was not live stays on its side and marks the item diverged *there* (the doc's
/// rule); the other side keeps it shared. So: the items ever shared (shared or diverged)
/// are the same set on both sides; an item whose sharing differs is diverged on its
/// author's side and shared on the other; and an item shared on both sides has the same
/// content and deletion on both (the lead's time arriving at the partner as a note).
fn check_items(a: &Ticket, b: &Ticket, trace: &str) {
    let of = |t: &Ticket, s: &[Sharing]| -> BTreeSet<ItemId> {
        t.items
            .values()
            .filter(|i| s.contains(&t.sharing(i)))
            .map(|i| i.id)
            .collect()
    };
    let once = [Sharing::Shared, Sharing::Diverged];
    assert_eq!(
        of(a, &once),
        of(b, &once),
        "the items ever shared differ (acme left, bolt right)\n{trace}"
    );
    for id in of(a, &once) {
        let (x, y) = (&a.items[&id], &b.items[&id]);
        let (sx, sy) = (a.sharing(x), b.sharing(y));
        if sx == Sharing::Shared && sy == Sharing::Shared {
            assert_eq!(
                x.deleted, y.deleted,
                "item {id}: deleted on one side only\n{trace}"
            );
            assert_eq!(x.author, y.author, "item {id}: author\n{trace}");
            let same = match (&x.body, &y.body) {
                (ItemBody::Note { text: p, .. }, ItemBody::Note { text: q, .. }) => p == q,
                (ItemBody::Time(e), ItemBody::Note { text, .. }) => {
                    *text == time_as_note(&x.author, e)
                }
                (p, q) => p == q,
            };
            assert!(
                same,
                "item {id}: content differs: {:?} / {:?}\n{trace}",
                x.body, y.body
            );
        } else if sx != sy {
            let author_side = if x.author.instance.as_str() == LEAD {
                (sx, sy)
            } else {
                (sy, sx)
            };
            assert_eq!(
                author_side,
                (Sharing::Diverged, Sharing::Shared),
                "item {id}: acme {sx:?}, bolt {sy:?}: only an author's local change may \
                 make it diverged, on the author's side\n{trace}"
            );
        }
    }
    // A shared item is on both sides, and no item is diverged on the side that did not
    // author it (no side changes the other's items here).
    for (t, me) in [(a, LEAD), (b, PARTNER)] {
        for i in t.items.values() {
            if t.sharing(i) == Sharing::Diverged {
                assert_eq!(
                    i.author.instance.as_str(),
                    me,
                    "item {} diverged on the side that did not author it\n{trace}",
                    i.id
                );
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn config() -> Config {
    let base = Config::default();
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            base.cases
        } else {
            32
        },
        rng_seed: if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
            base.rng_seed
        } else {
            RngSeed::Fixed(0x7469_636b_6574_7379)
        },
        failure_persistence: None,
        max_shrink_iters: 512,
        ..base
    }
}

async fn run(actions: Vec<Action>) -> Result<Stats> {
    let mut sim = Sim::paired().await?;
    for a in actions {
        sim.log(format!("# {a:?}"));
        sim.step(a).await?;
    }
    sim.log("# drain".into());
    sim.drain().await?;
    sim.check_converged().await?;
    if std::env::var_os("SIM_TRACE").is_some() {
        eprintln!("{}\n", sim.trace());
    }
    Ok(sim.stats)
}

#[test]
fn replication_converges_under_reordering_loss_duplication_and_crashes() {
    let total = RefCell::new(Stats::default());
    // Each failing case (and every shrink step) panics with the whole trace; keep this
    // thread's panics quiet while proptest runs and report only the minimal case below.
    let runner_thread = std::thread::current().id();
    let default_hook = std::sync::Arc::new(std::panic::take_hook());
    let hook = default_hook.clone();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != runner_thread {
            hook(info)
        }
    }));
    let mut runner = TestRunner::new(config());
    let result = runner.run(&scenario(), |actions| {
        let s = runtime()
            .block_on(run(actions))
            .expect("the simulation runs");
        let mut t = total.borrow_mut();
        t.commands_ok += s.commands_ok;
        t.commands_refused += s.commands_refused;
        t.applied += s.applied;
        t.duplicates += s.duplicates;
        t.gaps += s.gaps;
        t.lost += s.lost;
        t.crashes += s.crashes;
        t.pipelined += s.pipelined;
        t.overlapped += s.overlapped;
        t.fell_back += s.fell_back;
        t.superseded += s.superseded;
        t.shared_items += s.shared_items;
        t.diverged_items += s.diverged_items;
        for (k, n) in s.final_status {
            *t.final_status.entry(k).or_default() += n;
        }
        Ok(())
    });
    std::panic::set_hook(Box::new(move |info| default_hook(info)));
    if let Err(e) = result {
        panic!("{e}");
    }
    let t = total.into_inner();
    eprintln!("{t:#?}");
    // The generator must actually exercise what the property is about.
    assert!(t.commands_ok > 0 && t.commands_refused > 0, "{t:?}");
    assert!(
        t.duplicates > 0 && t.gaps > 0 && t.lost > 0 && t.crashes > 0,
        "{t:?}"
    );
    assert!(t.pipelined > 0, "the inbound pipeline was not used: {t:?}");
    assert!(
        t.final_status.len() >= 3,
        "the cases ended in too few outsource statuses: {t:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Fixed scenarios
// ---------------------------------------------------------------------------------------------

impl Sim {
    /// Runs a command that must be accepted.
    async fn must(&mut self, w: Who, what: &str, cmd: Command) {
        let ok = self.exec(w, what, cmd).await.expect("the command runs");
        assert!(ok, "{what} on {w} was refused\n{}", self.trace());
    }

    async fn delivered(&mut self, from: Who) -> Outcome {
        self.deliver_next(from)
            .await
            .expect("the delivery runs")
            .expect("a message in flight")
    }

    fn in_flight(&self, from: Who) -> usize {
        self.wires[from.idx()].pending.len()
    }

    /// acme's ticket sent to bolt and delivered: Assigned on both sides.
    async fn assigned() -> Sim {
        let mut sim = Sim::paired().await.expect("paired");
        sim.must(Who::Acme, "send", send_cmd()).await;
        sim.sent = true;
        sim.publish(Who::Acme, ALL).await.expect("publish");
        let o = sim.delivered(Who::Acme).await;
        assert_eq!(o.applied, 1, "the send is applied: {o:?}");
        for w in [Who::Acme, Who::Bolt] {
            assert_eq!(sim.status(w).await, Some(OutsourceStatus::Assigned), "{w}");
        }
        sim
    }

    async fn status(&self, w: Who) -> Option<OutsourceStatus> {
        let t = self.ticket(w).await.expect("load")?;
        t.current_link().map(|l| l.status)
    }

    async fn sharing_of(&self, w: Who, id: ItemId) -> Sharing {
        let t = self.ticket(w).await.expect("load").expect("the ticket");
        let i = t
            .items
            .get(&id)
            .unwrap_or_else(|| panic!("{w} has no item {id}"));
        t.sharing(i)
    }
}

fn note_cmd(id: ItemId, text: &str) -> Command {
    Command::AddNote {
        item: id,
        text: text.into(),
        internal: false,
    }
}

fn accept_cmd() -> Command {
    out(OutsourceCommand::Accept { organization: None })
}

/// The doc's race: the lead cancels while the partner accepts (both at the same
/// `link_seq`) and starts work. Whichever move arrives first — the cancel delivered twice,
/// the accept lost and resent after the gap it leaves — both sides end Canceled, the accept
/// and the start superseded, and the note the partner logged under the losing acceptance
/// not shared on either side.
#[test]
fn cancel_racing_accept_ends_canceled_in_both_delivery_orders() {
    for cancel_first in [true, false] {
        runtime().block_on(async {
            let mut sim = Sim::assigned().await;
            let note = item_id(1);
            sim.must(Who::Acme, "cancel", out(OutsourceCommand::Cancel))
                .await;
            sim.must(Who::Bolt, "accept", accept_cmd()).await;
            sim.must(Who::Bolt, "note", note_cmd(note, "on my way"))
                .await;
            // bolt believed the link live: the start and the note are on its channel.
            assert_eq!(
                sim.status(Who::Bolt).await,
                Some(OutsourceStatus::InProgress)
            );
            assert_eq!(sim.sharing_of(Who::Bolt, note).await, Sharing::Shared);
            sim.publish(Who::Acme, ALL).await.unwrap(); // [2] cancel
            sim.publish(Who::Bolt, 1).await.unwrap(); // [2] accept
            sim.publish(Who::Bolt, ALL).await.unwrap(); // [3, 4] start, note
            assert_eq!((sim.in_flight(Who::Acme), sim.in_flight(Who::Bolt)), (1, 2));

            let deliver_cancel = |mut sim: Sim| async move {
                sim.step(Action::Duplicate(Who::Acme, 0)).await.unwrap();
                let o = sim.delivered(Who::Acme).await;
                assert_eq!((o.applied, o.duplicates, o.gap), (1, 0, None), "{o:?}");
                let o = sim.delivered(Who::Acme).await;
                assert_eq!((o.applied, o.duplicates, o.gap), (0, 1, None), "{o:?}");
                sim
            };
            let deliver_accept = |mut sim: Sim| async move {
                sim.step(Action::Lose(Who::Bolt, 0)).await.unwrap();
                let o = sim.delivered(Who::Bolt).await;
                assert_eq!((o.applied, o.gap), (0, Some(2)), "the lost accept: {o:?}");
                assert_eq!(sim.in_flight(Who::Bolt), 1, "bolt resent from 2");
                let o = sim.delivered(Who::Bolt).await;
                assert_eq!((o.applied, o.duplicates, o.gap), (3, 0, None), "{o:?}");
                sim
            };
            if cancel_first {
                sim = deliver_cancel(sim).await;
                sim = deliver_accept(sim).await;
            } else {
                sim = deliver_accept(sim).await;
                // acme, which canceled, already resolves the race.
                assert_eq!(sim.status(Who::Acme).await, Some(OutsourceStatus::Canceled));
                sim = deliver_cancel(sim).await;
            }
            assert_eq!((sim.in_flight(Who::Acme), sim.in_flight(Who::Bolt)), (0, 0));
            sim.check_converged().await.unwrap();
            for w in [Who::Acme, Who::Bolt] {
                let t = sim.ticket(w).await.unwrap().unwrap();
                let l = t.current_link().unwrap();
                assert_eq!(l.status, OutsourceStatus::Canceled, "{w}");
                let moves: BTreeSet<(String, bool)> = l
                    .transitions
                    .iter()
                    .zip(&l.effective)
                    .map(|(t, e)| (t.mv.verb().to_string(), *e))
                    .collect();
                let want: BTreeSet<(String, bool)> = [
                    ("send", true),
                    ("cancel", true),
                    ("accept", false),
                    ("start", false),
                ]
                .iter()
                .map(|(m, e)| (m.to_string(), *e))
                .collect();
                assert_eq!(
                    moves, want,
                    "{w}'s transitions (cancel first: {cancel_first})"
                );
                assert_eq!(
                    sim.sharing_of(w, note).await,
                    Sharing::NotShared,
                    "{w}: the note logged under the superseded acceptance"
                );
            }
        });
    }
}

/// The daemon applies the messages that have already arrived together (one commit for
/// their events): out of order, with a duplicate and a redelivery that fills the gap the
/// first one met, each entry is applied exactly once, nothing is asked for again, and both
/// sides end as if the messages had come one by one in order.
#[test]
fn messages_applied_together_apply_each_entry_once_and_fill_their_own_gap() {
    runtime().block_on(async {
        let mut sim = Sim::assigned().await;
        let (n1, n2) = (item_id(1), item_id(2));
        sim.must(Who::Bolt, "accept", accept_cmd()).await;
        sim.must(Who::Bolt, "note 1", note_cmd(n1, "on my way"))
            .await;
        sim.must(Who::Bolt, "note 2", note_cmd(n2, "fan replaced"))
            .await;
        // bolt's channel: 1 hello (applied at pairing), 2 accept, 3 start, 4 note 1, 5 note 2.
        for _ in 0..4 {
            sim.publish(Who::Bolt, 1).await.unwrap();
        }
        let m: Vec<Vec<u8>> = sim.wires[Who::Bolt.idx()].pending.drain(..).collect();
        let batch: Vec<&[u8]> = vec![&m[1], &m[0], &m[0], &m[1], &m[2], &m[3]];
        let inst = sim.inst(Who::Acme);
        let p = inst.store.get_partner(PARTNER).await.unwrap().unwrap();
        let o = apply_messages(inst, &p, &batch).await.unwrap();
        inst.refresh().await.unwrap();
        assert_eq!(
            (
                o.applied,
                o.duplicates,
                o.gap,
                o.quarantined,
                o.rejected_messages
            ),
            (4, 1, None, 0, 0),
            "{o:?}"
        );
        assert_eq!(inst.store.inbound_head(PARTNER).await.unwrap().seq, 5);
        // Everything is committed: the same messages again are all duplicates.
        let o = apply_messages(inst, &p, &batch).await.unwrap();
        assert_eq!((o.applied, o.duplicates, o.gap), (0, 6, None), "{o:?}");

        sim.check_converged().await.unwrap();
        for w in [Who::Acme, Who::Bolt] {
            assert_eq!(
                sim.status(w).await,
                Some(OutsourceStatus::InProgress),
                "{w}"
            );
            for n in [n1, n2] {
                assert_eq!(sim.sharing_of(w, n).await, Sharing::Shared, "{w}: {n}");
            }
        }
    });
}

/// The inbound pipeline prepares each batch while the one before it is still written: the
/// entries all apply once, in order, and both sides end as if they had come one by one.
#[test]
fn batches_prepared_while_the_one_before_is_written_apply_each_entry_once() {
    runtime().block_on(async {
        let mut sim = Sim::assigned().await;
        let notes = [item_id(1), item_id(2), item_id(3)];
        let before = sim.stats.applied;
        sim.must(Who::Bolt, "accept", accept_cmd()).await;
        for (i, n) in notes.iter().enumerate() {
            sim.must(Who::Bolt, "note", note_cmd(*n, &format!("note {i}")))
                .await;
        }
        // bolt's channel: 2 accept, 3 start, 4-6 the notes, one message each.
        for _ in 0..5 {
            sim.publish(Who::Bolt, 1).await.unwrap();
        }
        assert_eq!(sim.in_flight(Who::Bolt), 5);
        sim.deliver_batch(Who::Bolt, 2).await.unwrap();
        assert!(sim.pipes[Who::Bolt.idx()].is_writing());
        sim.deliver_batch(Who::Bolt, 1).await.unwrap();
        sim.deliver_batch(Who::Bolt, 2).await.unwrap();
        assert_eq!(sim.stats.overlapped, 2, "{:?}", sim.stats);
        let last = sim.pipes[Who::Bolt.idx()]
            .settle(sim.nodes[Who::Acme.idx()].inst())
            .await
            .unwrap();
        sim.observe(Who::Bolt, last).await.unwrap();
        assert_eq!(sim.stats.pipelined, 3, "{:?}", sim.stats);
        assert_eq!((sim.stats.applied - before, sim.stats.duplicates), (5, 0));
        assert_eq!(
            sim.inst(Who::Acme)
                .store
                .inbound_head(PARTNER)
                .await
                .unwrap()
                .seq,
            6
        );
        sim.drain().await.unwrap();
        sim.check_converged().await.unwrap();
        for w in [Who::Acme, Who::Bolt] {
            assert_eq!(
                sim.status(w).await,
                Some(OutsourceStatus::InProgress),
                "{w}"
            );
            for n in notes {
                assert_eq!(sim.sharing_of(w, n).await, Sharing::Shared, "{w}: {n}");
            }
        }
    });
}

/// A local command on the ticket while a pipeline batch is written: the batches prepared
/// without it do not go in as prepared, are decided again against the stored stream, and
/// nothing is lost or applied twice.
#[test]
fn a_local_command_between_pipelined_batches_loses_nothing() {
    runtime().block_on(async {
        let mut sim = Sim::assigned().await;
        let (n1, n2, mine) = (item_id(1), item_id(2), item_id(3));
        let before = sim.stats.applied;
        sim.must(Who::Bolt, "accept", accept_cmd()).await;
        sim.must(Who::Bolt, "note 1", note_cmd(n1, "on my way"))
            .await;
        sim.must(Who::Bolt, "note 2", note_cmd(n2, "fan replaced"))
            .await;
        for _ in 0..4 {
            sim.publish(Who::Bolt, 1).await.unwrap();
        }
        sim.deliver_batch(Who::Bolt, 2).await.unwrap();
        // acme writes on the ticket while bolt's batch may still be written.
        sim.must(Who::Acme, "acme's note", note_cmd(mine, "customer called"))
            .await;
        sim.deliver_batch(Who::Bolt, 1).await.unwrap();
        sim.deliver_batch(Who::Bolt, 1).await.unwrap();
        sim.drain().await.unwrap();
        // bolt's four entries at acme, acme's note at bolt.
        let applied = sim.stats.applied - before;
        assert_eq!((applied, sim.stats.duplicates), (5, 0), "{:?}", sim.stats);
        // The second batch was prepared while the first was written; the third too, or,
        // if the second did not go in as prepared, on its own.
        assert_eq!(
            sim.stats.overlapped + sim.stats.fell_back,
            2,
            "{:?}",
            sim.stats
        );
        sim.check_converged().await.unwrap();
        for w in [Who::Acme, Who::Bolt] {
            assert_eq!(
                sim.status(w).await,
                Some(OutsourceStatus::InProgress),
                "{w}"
            );
            for n in [n1, n2, mine] {
                assert_eq!(sim.sharing_of(w, n).await, Sharing::Shared, "{w}: {n}");
            }
        }
    });
}

/// A receiver that crashes right after applying a message comes back with exactly what it
/// committed: the same message redelivered is a duplicate, the next one applies, and a
/// sender that crashes and republishes its whole channel adds nothing twice.
#[test]
fn a_crash_between_applying_and_the_next_message_loses_and_repeats_nothing() {
    runtime().block_on(async {
        let mut sim = Sim::assigned().await;
        let (n1, n2) = (item_id(1), item_id(2));
        sim.must(Who::Bolt, "accept", accept_cmd()).await;
        sim.must(Who::Bolt, "note 1", note_cmd(n1, "on my way"))
            .await;
        sim.must(Who::Bolt, "note 2", note_cmd(n2, "fan replaced"))
            .await;
        // bolt's channel: 1 hello (applied at pairing), 2 accept, 3 start, 4 note 1, 5 note 2.
        for _ in 0..4 {
            sim.publish(Who::Bolt, 1).await.unwrap();
        }
        assert_eq!(sim.in_flight(Who::Bolt), 4);
        let accept = sim.wires[Who::Bolt.idx()].pending[0].clone();
        let o = sim.delivered(Who::Bolt).await;
        assert_eq!((o.applied, o.duplicates), (1, 0), "{o:?}");

        sim.crash(Who::Acme).await.unwrap();
        assert_eq!(
            sim.status(Who::Acme).await,
            Some(OutsourceStatus::Accepted),
            "the applied accept survived the crash"
        );
        // The broker never saw the ack: the same message comes again.
        let o = sim.deliver(Who::Bolt, accept).await.unwrap();
        assert_eq!((o.applied, o.duplicates, o.gap), (0, 1, None), "{o:?}");
        let o = sim.delivered(Who::Bolt).await;
        assert_eq!((o.applied, o.duplicates, o.gap), (1, 0, None), "{o:?}");
        assert_eq!(
            sim.status(Who::Acme).await,
            Some(OutsourceStatus::InProgress)
        );

        // Both crash; bolt's relay starts again from what the broker acked (nothing).
        sim.crash(Who::Acme).await.unwrap();
        sim.crash(Who::Bolt).await.unwrap();
        let o = sim.delivered(Who::Bolt).await; // [4] note 1
        assert_eq!((o.applied, o.duplicates), (1, 0), "{o:?}");
        sim.publish(Who::Bolt, ALL).await.unwrap(); // [1..=5]
        sim.step(Action::DeliverAny(Who::Bolt, 1)).await.unwrap();
        let inbound = sim
            .inst(Who::Acme)
            .store
            .inbound_head(PARTNER)
            .await
            .unwrap();
        assert_eq!(
            inbound.seq, 5,
            "the republished channel completed acme's copy"
        );
        let o = sim.delivered(Who::Bolt).await; // the stale [5]
        assert_eq!((o.applied, o.duplicates), (0, 1), "{o:?}");
        assert_eq!(sim.in_flight(Who::Bolt), 0);

        sim.check_converged().await.unwrap();
        for w in [Who::Acme, Who::Bolt] {
            assert_eq!(
                sim.status(w).await,
                Some(OutsourceStatus::InProgress),
                "{w}"
            );
            for n in [n1, n2] {
                assert_eq!(sim.sharing_of(w, n).await, Sharing::Shared, "{w}: {n}");
            }
        }
    });
}

/// A receiver killed at any point while applying a message (before, during or after the
/// commit of any of its entries) resumes from its database: the redelivered message
/// applies what was not committed, and nothing twice.
#[test]
fn a_crash_while_applying_a_message_resumes_from_the_database() {
    // About ten steps per entry: every third step from before the first to after the last.
    for polls in (1..46).step_by(3) {
        runtime().block_on(async {
            let mut sim = Sim::assigned().await;
            sim.must(Who::Bolt, "accept", accept_cmd()).await;
            sim.must(Who::Bolt, "note", note_cmd(item_id(1), "on my way"))
                .await;
            sim.must(
                Who::Bolt,
                "time",
                Command::AddTime {
                    item: item_id(2),
                    entry: entry(2),
                },
            )
            .await;
            sim.publish(Who::Bolt, ALL).await.unwrap(); // [2..=5]
            sim.crash_mid_apply(Who::Bolt, polls).await.unwrap();
            let before = sim
                .inst(Who::Acme)
                .store
                .inbound_head(PARTNER)
                .await
                .unwrap();
            assert!((1..=5).contains(&before.seq), "{before:?}");
            let o = sim.delivered(Who::Bolt).await;
            assert_eq!(
                (o.applied, o.duplicates, o.gap),
                (5 - before.seq, before.seq - 1, None),
                "after {polls} polls: {o:?}\n{}",
                sim.trace()
            );
            sim.check_converged().await.unwrap();
            assert_eq!(
                sim.status(Who::Acme).await,
                Some(OutsourceStatus::InProgress)
            );
        });
    }
}

/// The rule the property allows for: an author's edit of a shared item made while the link
/// is not live (here Waiting Approval) stays on the author's side and marks the item
/// diverged there; the other side keeps the item shared, with its text as shared.
#[test]
fn an_authors_edit_while_the_link_is_not_live_diverges_on_its_side_only() {
    runtime().block_on(async {
        let mut sim = Sim::assigned().await;
        let n = item_id(1);
        sim.must(Who::Bolt, "accept", accept_cmd()).await;
        sim.must(Who::Bolt, "note", note_cmd(n, "on my way")).await;
        sim.must(Who::Bolt, "complete", out(OutsourceCommand::Complete))
            .await;
        sim.must(
            Who::Bolt,
            "edit",
            Command::EditNote {
                item: n,
                text: Some("on my way back".into()),
                internal: None,
            },
        )
        .await;
        sim.drain().await.unwrap();
        sim.check_converged().await.unwrap();
        for w in [Who::Acme, Who::Bolt] {
            assert_eq!(
                sim.status(w).await,
                Some(OutsourceStatus::WaitingApproval),
                "{w}"
            );
        }
        assert_eq!(sim.sharing_of(Who::Bolt, n).await, Sharing::Diverged);
        assert_eq!(sim.sharing_of(Who::Acme, n).await, Sharing::Shared);
        let a = sim.ticket(Who::Acme).await.unwrap().unwrap();
        assert!(
            matches!(&a.items[&n].body, ItemBody::Note { text, .. } if text == "on my way"),
            "{:?}",
            a.items[&n].body
        );
    });
}

/// The lead killed at any point while applying the partner's hello (which marks the
/// partner paired, then moves the channel checkpoint) ends paired once the hello is
/// redelivered, with the hello applied once, and can send the partner a ticket.
#[test]
fn a_crash_while_applying_the_hello_still_pairs() {
    for polls in 1..16 {
        runtime().block_on(async {
            let mut sim = Sim::joined().await.unwrap();
            sim.publish(Who::Bolt, ALL).await.unwrap();
            sim.crash_mid_apply(Who::Bolt, polls).await.unwrap();
            let before = sim
                .inst(Who::Acme)
                .store
                .inbound_head(PARTNER)
                .await
                .unwrap();
            let o = sim.delivered(Who::Bolt).await;
            assert_eq!(
                (o.applied, o.duplicates),
                (1 - before.seq, before.seq),
                "after {polls} polls: {o:?}"
            );
            sim.ticket_created().await.unwrap();
            sim.must(Who::Acme, "send", send_cmd()).await;
            sim.sent = true;
            sim.drain().await.unwrap();
            sim.check_converged().await.unwrap();
            assert_eq!(sim.status(Who::Bolt).await, Some(OutsourceStatus::Assigned));
        });
    }
}
