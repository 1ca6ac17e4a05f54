//! Property: replaying any generated history gives the same projection as live application.
//!
//! Histories over one to three tickets are appended to a real SQLite store the way the
//! command path does it (`decide` against the folded stream, `encode_event`, `NewEntry`,
//! `Store::append` with the expected version), with the ticket projection caught up after
//! every append. Then the live projection, a `rebuild` of it, and a second store that got
//! the same entries but caught up only once must all hold the same bytes; and every
//! point-in-time view (`ticket_as_of`) must equal the live view captured at that position.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use proptest::prelude::*;
use rust_decimal::Decimal;
use tempfile::TempDir;
use ticketsync_domain::command::{ChargePatch, TimePatch};
use ticketsync_domain::{
    decide, evolve, Actor, Attachment, Charge, Command, Context, EventMeta, InstanceId, ItemBody,
    ItemId, ItemKind, Policy, Sha256Digest, Ticket, TicketId, TimeEntry, Timestamp,
};
use ticketsync_projections::ticket::ItemBodyView;
use ticketsync_projections::{
    catch_up, digest, rebuild, ticket_as_of, TicketProjection, TicketView, TICKETS,
};
use ticketsync_store::{SqliteStore, Store, StreamAppend};
use ticketsync_wire::{decode_event, encode_event, LogEntry, NewEntry, SCHEMA_VERSION};
use ulid::Ulid;

/// 2025-01-01T00:00:00Z; every timestamp in these tests is fixed, derived from it.
const T0: i64 = 1_735_689_600_000;
/// Item slots per ticket; slot `s` usually holds an item of kind `KINDS[s % 4]`.
const SLOTS: u8 = 16;
const KINDS: [ItemKind; 4] = [
    ItemKind::Note,
    ItemKind::Time,
    ItemKind::Charge,
    ItemKind::Attachment,
];
const STATUSES: [&str; 5] = ["New", "In Progress", "Waiting Customer", "Complete", "nope"];

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

// ---------------------------------------------------------------------------------------------
// The command path, as `Instance::execute` runs it, with fixed clocks and ids
// ---------------------------------------------------------------------------------------------

fn ticket_id(t: u8) -> TicketId {
    TicketId(Ulid::from_parts(T0 as u64, 0x7000 + u128::from(t)))
}

fn item_id(t: u8, slot: u8) -> ItemId {
    ItemId(Ulid::from_parts(
        T0 as u64,
        0x9000 + u128::from(t) * 0x100 + u128::from(slot),
    ))
}

fn actors() -> Vec<Actor> {
    [("acme", "alice"), ("acme", "bob"), ("beta", "carol")]
        .iter()
        .map(|(i, u)| Actor::new(InstanceId::parse(i).expect("instance"), u).expect("actor"))
        .collect()
}

fn meta_of(e: &LogEntry) -> EventMeta {
    EventMeta {
        actor: Actor {
            instance: InstanceId::parse(&e.actor_instance).expect("stored instance"),
            user: e.actor_user.clone(),
        },
        at: Timestamp(e.occurred_at),
        link_seq: e.link_seq,
    }
}

/// A ticket's state folded from its stream, and the stream version.
async fn load(store: &dyn Store, id: TicketId) -> TestResult<(Option<Ticket>, u64)> {
    let entries = store.read_stream(id.0, None).await?;
    let mut state = None;
    for e in &entries {
        let ev = decode_event(e.schema_version, &e.payload)?;
        state = evolve(state, id, &meta_of(e), &ev);
    }
    Ok((state, entries.last().map_or(0, |e| e.version)))
}

/// One append as it reached the log: kept so that a second store can receive the same.
#[derive(Clone, Debug)]
struct Appended {
    recorded_at: i64,
    batch: StreamAppend,
}

/// The live side: a store whose projection is caught up after every append, with the
/// views captured after each append.
struct Live {
    store: SqliteStore,
    policy: Policy,
    appended: Vec<Appended>,
    /// After each append: the log position reached and every ticket's live view.
    snapshots: Vec<(u64, BTreeMap<String, TicketView>)>,
    clock: i64,
}

impl Live {
    async fn create(path: &Path) -> TestResult<Live> {
        Ok(Live {
            store: SqliteStore::create(path).await?,
            policy: Policy::default(),
            appended: Vec::new(),
            snapshots: Vec::new(),
            clock: T0,
        })
    }

    /// Decides and appends one command and catches the projection up; refused commands and
    /// no-op edits append nothing. Returns how many entries were written.
    async fn execute(&mut self, id: TicketId, who: &Actor, cmd: Command) -> TestResult<usize> {
        let Some((recorded_at, batch, written)) = self.append(id, who, cmd).await? else {
            return Ok(0);
        };
        let last = written.last().expect("written").position;
        let checkpoint = catch_up(&self.store, &TicketProjection).await?;
        assert_eq!(checkpoint, last, "catch_up stops at the end of the log");
        self.appended.push(Appended { recorded_at, batch });
        let views: BTreeMap<String, TicketView> = TicketProjection::list(&self.store)
            .await?
            .into_iter()
            .map(|v| (v.id.clone(), v))
            .collect();
        // The stored heads (a ticket list) are the views read from the streams, without
        // their items and history: totals, links and invoices alike.
        let heads = TicketProjection::list_heads(&self.store).await?;
        assert_eq!(heads.len(), views.len());
        for head in heads {
            let mut whole = views[&head.id].clone();
            whole.items.clear();
            whole.history.clear();
            assert_eq!(
                whole, head,
                "ticket {}: stored head and view differ",
                head.id
            );
        }
        self.snapshots.push((last, views));
        Ok(written.len())
    }

    /// Decides and appends one command to the log, leaving the projection as it is: what
    /// was appended (when the command appended anything), and the entries written.
    async fn append(
        &mut self,
        id: TicketId,
        who: &Actor,
        cmd: Command,
    ) -> TestResult<Option<(i64, StreamAppend, Vec<LogEntry>)>> {
        let (state, version) = load(&self.store, id).await?;
        let ctx = Context {
            actor: who,
            policy: &self.policy,
            now: Timestamp(0),
        };
        let Ok(events) = decide(state.as_ref(), id, ctx, cmd) else {
            return Ok(None);
        };
        if events.is_empty() {
            return Ok(None);
        }
        self.clock += 1_000;
        let now = self.clock;
        let mut entries = Vec::with_capacity(events.len());
        for (n, ev) in events.iter().enumerate() {
            entries.push(NewEntry {
                link_seq: 0,
                event_id: Ulid::from_parts(now as u64, n as u128),
                stream_id: id.0,
                schema_version: SCHEMA_VERSION,
                event_type: ev.type_name().to_string(),
                occurred_at: now,
                actor_instance: who.instance.to_string(),
                actor_user: who.user.clone(),
                payload: encode_event(ev)?,
            });
        }
        let batch = StreamAppend {
            stream_id: id.0,
            expected_version: version,
            entries,
        };
        // recorded a little after it occurred, as on a real instance
        let recorded_at = now + 7;
        let written = self.store.append(recorded_at, vec![batch.clone()]).await?;
        assert_eq!(written.len(), events.len());
        Ok(Some((recorded_at, batch, written)))
    }
}

// ---------------------------------------------------------------------------------------------
// Generated histories
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Create,
    Status(usize),
    AddNote { slot: u8, internal: bool },
    EditNote { slot: u8, internal: Option<bool> },
    AddTime { slot: u8, cents: i64, offset: i64 },
    EditTime { slot: u8, cents: i64 },
    AddCharge { slot: u8, quantity: i64, cost: i64 },
    EditCharge { slot: u8, quantity: i64 },
    AddAttachment { slot: u8, size: u64, internal: bool },
    Delete { slot: u8, kind: ItemKind },
}

#[derive(Clone, Debug)]
struct Step {
    ticket: u8,
    actor: usize,
    op: Op,
}

fn slot(kind: u8) -> impl Strategy<Value = u8> {
    prop_oneof![
        9 => (0..SLOTS / 4).prop_map(move |n| n * 4 + kind),
        1 => 0..SLOTS,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Create),
        3 => (0..STATUSES.len()).prop_map(Op::Status),
        3 => (slot(0), any::<bool>()).prop_map(|(slot, internal)| Op::AddNote { slot, internal }),
        4 => (slot(0), prop::option::of(any::<bool>()))
            .prop_map(|(slot, internal)| Op::EditNote { slot, internal }),
        // hours in hundredths: 0 (invalid) to 24.00; offsets sometimes more than the hours
        3 => (slot(1), 0i64..=2400, 0i64..=300)
            .prop_map(|(slot, cents, offset)| Op::AddTime { slot, cents, offset }),
        4 => (slot(1), 0i64..=2400).prop_map(|(slot, cents)| Op::EditTime { slot, cents }),
        // quantities and costs in ten-thousandths; quantity 0 is invalid
        3 => (slot(2), 0i64..50_000, 0i64..1_000_000)
            .prop_map(|(slot, quantity, cost)| Op::AddCharge { slot, quantity, cost }),
        4 => (slot(2), 0i64..50_000).prop_map(|(slot, quantity)| Op::EditCharge { slot, quantity }),
        2 => (slot(3), 0u64..100_000, any::<bool>())
            .prop_map(|(slot, size, internal)| Op::AddAttachment { slot, size, internal }),
        4 => (0..4u8)
            .prop_flat_map(|k| (slot(k), Just(KINDS[usize::from(k)])))
            .prop_map(|(slot, kind)| Op::Delete { slot, kind }),
    ]
}

/// A history of up to 80 commands over one to three tickets, by three actors on two
/// instances. The first ticket is created first; the others when a generated `Create`
/// reaches them.
fn history() -> impl Strategy<Value = Vec<Step>> {
    (1u8..=3).prop_flat_map(|tickets| {
        let step = (0..tickets, 0usize..3, op()).prop_map(|(ticket, actor, op)| Step {
            ticket,
            actor,
            op,
        });
        prop::collection::vec(step, 1..80).prop_map(|mut steps| {
            steps.insert(
                0,
                Step {
                    ticket: 0,
                    actor: 0,
                    op: Op::Create,
                },
            );
            steps
        })
    })
}

fn command(t: u8, op: &Op) -> Command {
    let date = NaiveDate::from_ymd_opt(2025, 1, 2).expect("date");
    match *op {
        Op::Create => Command::CreateTicket {
            title: format!("Ticket {t}"),
            description: "generated".into(),
            customer: Some("Initech".into()),
        },
        Op::Status(n) => Command::ChangeStatus {
            status: STATUSES[n].into(),
        },
        Op::AddNote { slot, internal } => Command::AddNote {
            item: item_id(t, slot),
            text: format!("note {slot}"),
            internal,
        },
        Op::EditNote { slot, internal } => Command::EditNote {
            item: item_id(t, slot),
            text: Some(format!("edited note {slot}")),
            internal,
        },
        Op::AddTime {
            slot,
            cents,
            offset,
        } => Command::AddTime {
            item: item_id(t, slot),
            entry: TimeEntry {
                hours: Decimal::new(cents, 2),
                offset_hours: Decimal::new(offset, 2),
                resource: "Tech".into(),
                role: Some("L2".into()),
                summary: "work".into(),
                date,
                billable: slot % 3 != 0,
            },
        },
        Op::EditTime { slot, cents } => Command::EditTime {
            item: item_id(t, slot),
            patch: TimePatch {
                hours: Some(Decimal::new(cents, 2)),
                ..TimePatch::default()
            },
        },
        Op::AddCharge {
            slot,
            quantity,
            cost,
        } => Command::AddCharge {
            item: item_id(t, slot),
            charge: Charge {
                description: "Part".into(),
                quantity: Decimal::new(quantity, 4),
                unit_cost: Decimal::new(cost, 4),
                unit_price: Decimal::new(cost * 3 / 2, 4),
                billable: true,
            },
        },
        Op::EditCharge { slot, quantity } => Command::EditCharge {
            item: item_id(t, slot),
            patch: ChargePatch {
                quantity: Some(Decimal::new(quantity, 4)),
                ..ChargePatch::default()
            },
        },
        Op::AddAttachment {
            slot,
            size,
            internal,
        } => Command::AddAttachment {
            item: item_id(t, slot),
            attachment: Attachment {
                sha256: Sha256Digest([slot; 32]),
                filename: format!("file-{slot}.txt"),
                size,
                media_type: "text/plain".into(),
                internal,
            },
        },
        Op::Delete { slot, kind } => Command::DeleteItem {
            item: item_id(t, slot),
            kind,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// Every recorded position: `ticket_as_of` gives the live view captured right after that
/// append for each ticket that existed then, and nothing for tickets not created yet.
async fn check_as_of(live: &Live, tickets: &[TicketId]) -> TestResult {
    let mut numbers: BTreeMap<String, u64> = BTreeMap::new();
    if let Some((_, last)) = live.snapshots.last() {
        for v in last.values() {
            numbers.insert(v.id.clone(), v.number);
        }
    }
    for (position, views) in &live.snapshots {
        for id in tickets {
            let key = id.to_string();
            let number = numbers.get(&key).copied().unwrap_or(0);
            let got = ticket_as_of(&live.store, id.0, *position, number).await?;
            assert_eq!(
                got.as_ref(),
                views.get(&key),
                "ticket {key} as of position {position}"
            );
        }
    }
    Ok(())
}

fn kind_key(k: ItemKind) -> &'static str {
    match k {
        ItemKind::Note => "note",
        ItemKind::Time => "time",
        ItemKind::Charge => "charge",
        ItemKind::Attachment => "attachment",
    }
}

/// The projection agrees with the command side's fold of the same stream: status, items,
/// authors, deletion, divergence of live items, and totals recomputed from the domain state.
async fn check_against_domain(live: &Live, tickets: &[TicketId]) -> TestResult {
    let views: BTreeMap<String, TicketView> = TicketProjection::list(&live.store)
        .await?
        .into_iter()
        .map(|v| (v.id.clone(), v))
        .collect();
    for id in tickets {
        let (state, version) = load(&live.store, *id).await?;
        let view = views.get(&id.to_string());
        let (t, v) = match (state, view) {
            (Some(t), Some(v)) => (t, v),
            (None, None) => continue,
            (t, v) => panic!("ticket {id}: domain state {t:?} but projection {v:?}"),
        };
        assert_eq!(v.version, version);
        assert_eq!(v.status, t.status);
        assert_eq!(v.title, t.title);
        assert_eq!(v.created_by.user, t.created_by.user);
        assert_eq!(v.history.len() as u64, version);
        let ids: Vec<String> = t.items.keys().map(ToString::to_string).collect();
        let mut view_ids: Vec<String> = v.items.iter().map(|i| i.id.clone()).collect();
        view_ids.sort();
        assert_eq!(view_ids, ids, "same items on ticket {id}");
        let (mut hours, mut billable, mut cost, mut price) =
            (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
        for iv in &v.items {
            let id: ItemId = iv.id.parse()?;
            let i = &t.items[&id];
            assert_eq!(iv.kind, kind_key(i.body.kind()));
            assert_eq!(iv.author.instance, i.author.instance.to_string());
            assert_eq!(iv.author.user, i.author.user);
            assert_eq!(iv.deleted, i.deleted, "{iv:?}");
            assert_eq!(iv.diverged, i.diverged, "{iv:?}");
            match (&i.body, &iv.body) {
                (ItemBody::Note { text, internal }, ItemBodyView::Note { text: vt }) => {
                    assert_eq!(text, vt);
                    assert_eq!(*internal, iv.internal);
                }
                (ItemBody::Time(e), ItemBodyView::Time { hours: h, .. }) => {
                    assert_eq!(e.hours, *h);
                    if !i.deleted {
                        hours += e.hours;
                        if e.billable {
                            billable += e.hours - e.offset_hours;
                        }
                    }
                }
                (ItemBody::Charge(c), ItemBodyView::Charge { quantity, .. }) => {
                    assert_eq!(c.quantity, *quantity);
                    if !i.deleted {
                        cost += c.quantity * c.unit_cost;
                        price += c.quantity * c.unit_price;
                    }
                }
                (ItemBody::Attachment(a), ItemBodyView::Attachment { size, .. }) => {
                    assert_eq!(a.size, *size);
                    assert_eq!(a.internal, iv.internal);
                }
                (d, p) => panic!("item {id}: domain {d:?} but projection {p:?}"),
            }
        }
        assert_eq!(v.totals.hours, hours, "hours of {id}");
        assert_eq!(v.totals.billable_hours, billable, "billable hours of {id}");
        assert_eq!(v.totals.charges_cost, cost, "charges cost of {id}");
        assert_eq!(v.totals.charges_price, price, "charges price of {id}");
    }
    Ok(())
}

/// Runs one generated history and checks every property; returns the number of entries.
async fn replay_equals_live(steps: &[Step]) -> TestResult<u64> {
    let dir = TempDir::new()?;
    let mut live = Live::create(&dir.path().join("live.db")).await?;
    let who = actors();
    for s in steps {
        live.execute(ticket_id(s.ticket), &who[s.actor], command(s.ticket, &s.op))
            .await?;
    }
    let tickets: Vec<TicketId> = (0..3).map(ticket_id).collect();
    let head = live.store.head().await?;
    let live_digest = digest(&live.store, TICKETS).await?;
    let live_views = TicketProjection::list(&live.store).await?;
    assert!(!live_views.is_empty(), "the first ticket is always created");
    let numbers: Vec<u64> = live_views.iter().map(|v| v.number).collect();
    assert_eq!(numbers, (1..=live_views.len() as u64).collect::<Vec<_>>());

    // A second store receives the same entries and catches up only once, at the end.
    let fresh = SqliteStore::create(&dir.path().join("fresh.db")).await?;
    for a in &live.appended {
        fresh.append(a.recorded_at, vec![a.batch.clone()]).await?;
    }
    assert_eq!(fresh.head().await?, head, "same entries, same chain");
    assert_eq!(fresh.projection_checkpoint(TICKETS).await?, 0);
    assert_eq!(catch_up(&fresh, &TicketProjection).await?, head.position);
    assert_eq!(TicketProjection::list(&fresh).await?, live_views);
    assert_eq!(digest(&fresh, TICKETS).await?, live_digest);

    // Rebuilding the live projection from the log gives the same bytes.
    let rebuilt = rebuild(&live.store, &TicketProjection, &mut |_| {}).await?;
    assert_eq!(rebuilt.position, head.position);
    assert_eq!(rebuilt.live_digest, live_digest);
    assert_eq!(rebuilt.rebuilt_digest, live_digest);
    assert_eq!(digest(&live.store, TICKETS).await?, live_digest);
    assert_eq!(TicketProjection::list(&live.store).await?, live_views);
    assert_eq!(
        live.store.projection_checkpoint(TICKETS).await?,
        head.position
    );
    assert!(
        live.store.list_docs("tickets.rebuild").await?.is_empty(),
        "the shadow copy is gone after the swap"
    );

    check_as_of(&live, &tickets).await?;
    check_against_domain(&live, &tickets).await?;
    Ok(head.position)
}

proptest! {
    // Each case writes two real SQLite files, so keep the count modest.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn replaying_any_generated_history_gives_the_same_projection_as_live_application(
        steps in history()
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let entries = rt
            .block_on(replay_equals_live(&steps))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(entries >= 1);
    }
}

// ---------------------------------------------------------------------------------------------
// History read from the log
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_ticket_read_while_its_projection_is_behind_shows_history_up_to_its_head() -> TestResult {
    // given a ticket with two events applied to the projection
    let dir = TempDir::new()?;
    let mut live = Live::create(&dir.path().join("live.db")).await?;
    let who = actors();
    let t = ticket_id(0);
    live.execute(t, &who[0], command(0, &Op::Create)).await?;
    live.execute(t, &who[0], command(0, &Op::Status(1))).await?;
    let applied = TicketProjection::get(&live.store, t.0)
        .await?
        .expect("the ticket");
    assert_eq!(applied.history.len(), 2);
    // when a third is appended to the log and the projection has not applied it yet
    let (_, _, written) = live
        .append(t, &who[0], command(0, &Op::Status(2)))
        .await?
        .expect("appended");
    let behind = TicketProjection::get(&live.store, t.0)
        .await?
        .expect("the ticket");
    // then the ticket reads as the projection left it, history included
    assert_eq!(behind, applied);
    assert_eq!(
        behind.history.last().map(|h| h.position),
        Some(behind.position)
    );
    // and once it is applied, the new event's line follows
    catch_up(&live.store, &TicketProjection).await?;
    let after = TicketProjection::get(&live.store, t.0)
        .await?
        .expect("the ticket");
    assert_eq!(after.history[..2], applied.history[..]);
    let last = after.history.last().expect("a line");
    assert_eq!(
        (last.position, last.version, last.event_type.as_str()),
        (written[0].position, 3, "status_changed")
    );
    assert_eq!(after.position, written[0].position);
    Ok(())
}

#[tokio::test]
async fn tickets_read_whole_in_groups_come_back_complete_and_in_order() -> TestResult {
    // given more tickets than one round trip reads, some with a note
    let dir = TempDir::new()?;
    let mut live = Live::create(&dir.path().join("live.db")).await?;
    let who = actors();
    for n in 0..150u8 {
        let t = ticket_id(n);
        live.append(t, &who[0], command(n, &Op::Create))
            .await?
            .expect("created");
        if n % 3 == 0 {
            live.append(
                t,
                &who[0],
                command(
                    n,
                    &Op::AddNote {
                        slot: 0,
                        internal: false,
                    },
                ),
            )
            .await?
            .expect("noted");
        }
    }
    catch_up(&live.store, &TicketProjection).await?;
    // when their heads are read whole
    let heads = TicketProjection::list_heads(&live.store).await?;
    assert_eq!(heads.len(), 150);
    let views = TicketProjection::views(&live.store, heads.clone()).await?;
    // then each is its ticket as `get` reads it, in the order asked
    assert_eq!(views.len(), heads.len());
    for (head, view) in heads.iter().zip(&views) {
        let one = TicketProjection::get(&live.store, head.id.parse()?)
            .await?
            .expect("the ticket");
        assert_eq!(view, &one);
    }
    assert_eq!(views.iter().filter(|v| v.items.len() == 1).count(), 50);
    assert_eq!(TicketProjection::list(&live.store).await?, views);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A fixed history, every event kind, checked at every position
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ticket_as_of_each_position_equals_the_live_view_right_after_that_append() -> TestResult {
    // given a history over two tickets with every event type, a foreign edit and delete,
    // a refused command and a no-op edit, caught up after every append
    let dir = TempDir::new()?;
    let mut live = Live::create(&dir.path().join("live.db")).await?;
    let who = actors();
    let (alice, bob, carol) = (&who[0], &who[1], &who[2]);
    let (a, b) = (0u8, 1u8);
    let script: Vec<(u8, &Actor, Op, usize)> = vec![
        (a, alice, Op::Create, 1),
        (
            a,
            alice,
            Op::AddNote {
                slot: 0,
                internal: false,
            },
            1,
        ),
        (b, bob, Op::Create, 1),
        (a, bob, Op::Status(1), 1),
        (
            a,
            alice,
            Op::AddTime {
                slot: 1,
                cents: 150,
                offset: 25,
            },
            1,
        ),
        (
            b,
            carol,
            Op::AddCharge {
                slot: 2,
                quantity: 20_000,
                cost: 99_900,
            },
            1,
        ),
        (
            a,
            carol,
            Op::AddAttachment {
                slot: 3,
                size: 512,
                internal: true,
            },
            1,
        ),
        (
            a,
            alice,
            Op::EditNote {
                slot: 0,
                internal: Some(true),
            },
            1,
        ),
        // bob may not edit alice's time entry: refused, nothing appended
        (
            a,
            bob,
            Op::EditTime {
                slot: 1,
                cents: 300,
            },
            0,
        ),
        (
            a,
            alice,
            Op::EditTime {
                slot: 1,
                cents: 300,
            },
            1,
        ),
        // the same hours again: nothing to append
        (
            a,
            alice,
            Op::EditTime {
                slot: 1,
                cents: 300,
            },
            0,
        ),
        // carol (another instance) edits and deletes acme's items locally
        (
            a,
            carol,
            Op::EditNote {
                slot: 0,
                internal: Some(false),
            },
            1,
        ),
        (
            b,
            alice,
            Op::EditCharge {
                slot: 2,
                quantity: 30_000,
            },
            1,
        ),
        (
            a,
            carol,
            Op::Delete {
                slot: 1,
                kind: ItemKind::Time,
            },
            1,
        ),
        (
            a,
            carol,
            Op::Delete {
                slot: 3,
                kind: ItemKind::Attachment,
            },
            1,
        ),
        (b, bob, Op::Status(3), 1),
        (b, bob, Op::Status(0), 1),
    ];
    for (t, actor, op, expected) in script {
        let shown = format!("{op:?} on ticket {t} by {actor}");
        let written = live.execute(ticket_id(t), actor, command(t, &op)).await?;
        assert_eq!(written, expected, "{shown}");
    }
    let head = live.store.head().await?;
    assert_eq!(head.position, 15);
    assert_eq!(live.snapshots.len(), 15);
    let positions: Vec<u64> = live.snapshots.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, (1..=15).collect::<Vec<_>>());

    // when / then: each position's point-in-time view is the live view of that moment
    check_as_of(&live, &[ticket_id(a), ticket_id(b)]).await?;

    // and the views did change over time (the check is not comparing one view to itself)
    let first = &live.snapshots[1].1[&ticket_id(a).to_string()];
    let last = &live.snapshots[14].1[&ticket_id(a).to_string()];
    assert_eq!(first.items.len(), 1);
    assert_eq!(last.items.len(), 3);
    assert_eq!(last.status, "In Progress");
    assert_eq!(
        last.totals.hours,
        Decimal::ZERO,
        "the time entry was deleted"
    );
    let note = &last.items[0];
    assert!(note.diverged && !note.internal && !note.deleted);
    assert!(last.items[1].deleted && last.items[2].deleted);
    let tb = &live.snapshots[14].1[&ticket_id(b).to_string()];
    assert_eq!((first.number, tb.number), (1, 2));
    assert_eq!(tb.status, "New");
    assert_eq!(tb.totals.charges_cost, Decimal::new(29_970, 3));
    assert!(tb.items[0].diverged, "alice edited carol's charge");

    // a position before a ticket existed shows nothing
    assert_eq!(ticket_as_of(&live.store, ticket_id(b).0, 2, 2).await?, None);

    check_against_domain(&live, &[ticket_id(a), ticket_id(b)]).await?;
    Ok(())
}
