//! A small in-memory network of ticketsync instances for the outsourcing tests.
//!
//! Every instance ("node") holds its own copy of one ticket. A command is decided on one
//! node exactly as the real command path does it: `decide`, then each returned event is
//! folded through `evolve` one at a time with `link_seq = known()` just before it, and
//! `sync::route` (asked with the state just before the event) says whether it goes on the
//! wire to the counterparty. Delivering a wire message runs `sync::receive` on the
//! receiving node and folds what it returns: `Remote` events keep the author's meta
//! (including its `link_seq`), `Local` ones get a meta of the receiving instance's system
//! user. Every event has an id; a node skips a message whose id it already applied, and a
//! quarantined message is acknowledged (marked delivered) and never applied.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use ticketsync_domain::sync::{self, Incoming, Quarantine, SYSTEM_USER};
use ticketsync_domain::{
    decide, evolve, Actor, Attachment, Charge, Command, Context, Currency, DomainError, Event,
    EventMeta, InstanceId, Item, ItemId, Link, LinkChange, LinkId, OutsourceCommand,
    OutsourceStatus, Policy, Rate, Sha256Digest, Side, Terms, Ticket, TicketId, TimeEntry,
    Timestamp,
};
use ulid::Ulid;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// The test clock's starting point (2023-11-14).
pub const T0: i64 = 1_700_000_000_000;
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;
/// The respond-by deadline of the default terms.
pub const RESPOND_BY: i64 = T0 + DAY;

pub const LEAD: &str = "acme";
pub const PARTNER: &str = "bolt";
/// A third instance: another possible partner of acme, or an intruder.
pub const OTHER: &str = "cobra";

pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("test decimal")
}

pub fn inst(s: &str) -> InstanceId {
    InstanceId::parse(s).expect("instance")
}

pub fn actor(instance: &str, user: &str) -> Actor {
    Actor::new(inst(instance), user).expect("actor")
}

/// A user on the lead instance.
pub fn alice() -> Actor {
    actor(LEAD, "alice")
}

/// A user on the partner instance.
pub fn carol() -> Actor {
    actor(PARTNER, "carol")
}

/// A user on the third instance.
pub fn dave() -> Actor {
    actor(OTHER, "dave")
}

/// The user an instance records for what it authors by itself.
pub fn system(instance: &str) -> Actor {
    actor(instance, SYSTEM_USER)
}

/// The acting user on `side` of the acme → bolt link.
pub fn user(side: Side) -> Actor {
    match side {
        Side::Lead => alice(),
        Side::Partner => carol(),
    }
}

pub fn name(side: Side) -> &'static str {
    match side {
        Side::Lead => LEAD,
        Side::Partner => PARTNER,
    }
}

pub fn ticket_id() -> TicketId {
    TicketId(Ulid(0x0123_4567_89ab_cdef_0011_2233_4455_6677))
}

pub fn link_id(n: u128) -> LinkId {
    LinkId(Ulid(0x0B00_0000_0000_0000_0000_0000_0000_0000 + n))
}

/// The first link of the ticket.
pub fn link1() -> LinkId {
    link_id(1)
}

pub fn item(n: u128) -> ItemId {
    ItemId(Ulid(0x0A00_0000_0000_0000_0000_0000_0000_0000 + n))
}

pub fn eur() -> Currency {
    Currency::parse("EUR").expect("EUR")
}

/// Terms as `Terms::validated` returns them (so they compare equal to what events carry).
pub fn terms_at(rate: &str, respond_by: Option<i64>, instructions: &str) -> Terms {
    Terms {
        rate: Rate::Hourly(d(rate)),
        currency: eur(),
        authorized_hours: Some(d("10")),
        authorized_charge: Some(d("500")),
        respond_by: respond_by.map(Timestamp),
        instructions: instructions.into(),
        rounding: Default::default(),
    }
    .validated()
    .expect("valid terms")
}

/// Version 1: what the lead sends by default.
pub fn terms_v1() -> Terms {
    terms_at("95", Some(RESPOND_BY), "replace the fan")
}

/// A counter-offer or revision: another rate and a later deadline.
pub fn terms_other(rate: &str) -> Terms {
    terms_at(
        rate,
        Some(RESPOND_BY + DAY),
        "replace the fan, bring a spare",
    )
}

pub fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 3, 14).expect("date")
}

pub fn entry(hours: &str) -> TimeEntry {
    TimeEntry {
        hours: d(hours),
        offset_hours: d("0"),
        resource: "Alice Smith".into(),
        role: Some("Engineer".into()),
        summary: "replaced the fan".into(),
        date: date(),
        billable: true,
    }
}

pub fn charge(quantity: &str) -> Charge {
    Charge {
        description: "Fan, 120 mm".into(),
        quantity: d(quantity),
        unit_cost: d("10"),
        unit_price: d("30"),
        billable: true,
    }
}

pub fn attachment(internal: bool) -> Attachment {
    Attachment {
        sha256: Sha256Digest([7; 32]),
        filename: "log.txt".into(),
        size: 100,
        media_type: "text/plain".into(),
        internal,
    }
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

pub fn create() -> Command {
    Command::CreateTicket {
        title: "Printer on fire".into(),
        description: "Third floor".into(),
        customer: Some("Initech".into()),
    }
}

pub fn out(c: OutsourceCommand) -> Command {
    Command::Outsource(c)
}

pub fn send_to(link: LinkId, partner: &str, terms: Terms) -> Command {
    out(OutsourceCommand::Send {
        link,
        partner: inst(partner),
        terms,
    })
}

pub fn accept() -> Command {
    out(OutsourceCommand::Accept { organization: None })
}

pub fn decline(reason: &str) -> Command {
    out(OutsourceCommand::Decline {
        reason: reason.into(),
    })
}

pub fn reject(reason: &str) -> Command {
    out(OutsourceCommand::Reject {
        reason: reason.into(),
    })
}

pub fn counter(terms: Terms) -> Command {
    out(OutsourceCommand::Counter { terms })
}

pub fn revise(terms: Terms) -> Command {
    out(OutsourceCommand::Revise { terms })
}

pub fn status(s: &str) -> Command {
    Command::ChangeStatus { status: s.into() }
}

pub fn note(id: ItemId, text: &str, internal: bool) -> Command {
    Command::AddNote {
        item: id,
        text: text.into(),
        internal,
    }
}

pub fn edit_note(id: ItemId, text: &str) -> Command {
    Command::EditNote {
        item: id,
        text: Some(text.into()),
        internal: None,
    }
}

pub fn time(id: ItemId, hours: &str) -> Command {
    Command::AddTime {
        item: id,
        entry: entry(hours),
    }
}

pub fn add_charge(id: ItemId, quantity: &str) -> Command {
    Command::AddCharge {
        item: id,
        charge: charge(quantity),
    }
}

pub fn add_attachment(id: ItemId, internal: bool) -> Command {
    Command::AddAttachment {
        item: id,
        attachment: attachment(internal),
    }
}

#[track_caller]
pub fn refusal_text(r: Result<Vec<Event>, DomainError>) -> String {
    match r {
        Err(e @ DomainError::Refused(_)) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[track_caller]
pub fn invalid_field(r: Result<Vec<Event>, DomainError>) -> &'static str {
    match r {
        Err(DomainError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid-value error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The network
// ---------------------------------------------------------------------------------------------

/// One event on the wire from `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub id: u64,
    pub from: InstanceId,
    pub to: InstanceId,
    pub meta: EventMeta,
    pub event: Event,
}

/// One instance's copy of the ticket.
#[derive(Clone, Debug)]
pub struct Node {
    pub me: InstanceId,
    pub state: Option<Ticket>,
    /// Every event applied here, with the meta it was applied with.
    pub log: Vec<(EventMeta, Event)>,
    /// Ids of the events applied (or acknowledged as quarantined) here.
    pub seen: BTreeSet<u64>,
    pub quarantined: Vec<(Msg, Quarantine)>,
}

impl Node {
    fn new(me: &str) -> Node {
        Node {
            me: inst(me),
            state: None,
            log: vec![],
            seen: BTreeSet::new(),
            quarantined: vec![],
        }
    }

    fn known(&self) -> u32 {
        self.state.as_ref().map_or(0, Ticket::known)
    }

    fn apply(&mut self, id: TicketId, meta: &EventMeta, e: &Event) {
        self.state = evolve(self.state.take(), id, meta, e);
        self.log.push((meta.clone(), e.clone()));
    }
}

pub struct Net {
    pub id: TicketId,
    pub policy: Policy,
    /// The clock every decision reads unless told otherwise.
    pub now: i64,
    pub nodes: BTreeMap<String, Node>,
    /// Every routed event, in the order it was decided.
    pub wire: Vec<Msg>,
    next_id: u64,
}

impl Net {
    pub fn new(names: &[&str]) -> Net {
        Net {
            id: ticket_id(),
            policy: Policy::default(),
            now: T0,
            nodes: names
                .iter()
                .map(|n| (n.to_string(), Node::new(n)))
                .collect(),
            wire: vec![],
            next_id: 0,
        }
    }

    /// acme and bolt, acme's ticket created (not outsourced).
    pub fn created() -> Net {
        let mut net = Net::new(&[LEAD, PARTNER]);
        net.given(&alice(), create());
        net
    }

    /// acme's ticket sent to bolt with `terms_v1` and delivered: Assigned on both sides.
    pub fn assigned() -> Net {
        let mut net = Net::created();
        net.given(&alice(), send_to(link1(), PARTNER, terms_v1()));
        net.flush();
        net
    }

    /// Both sides agree the first link is at `status`, reached by the commands that lead
    /// there (Unsent is transient: Send goes straight to Assigned).
    pub fn at(status: OutsourceStatus) -> Net {
        use OutsourceStatus as S;
        let mut net = Net::assigned();
        match status {
            S::Unsent => panic!("Unsent is not observable: Send moves straight to Assigned"),
            S::Assigned => {}
            S::Accepted => {
                net.given(&carol(), accept());
            }
            S::InProgress => {
                net.given(&carol(), accept());
                net.flush();
                net.given(&carol(), note(item(900), "on my way", false));
            }
            S::WaitingApproval => {
                net.given(&carol(), accept());
                net.flush();
                net.given(&carol(), note(item(900), "on my way", false));
                net.flush();
                net.given(&carol(), out(OutsourceCommand::Complete));
            }
            S::Complete => {
                net.given(&carol(), accept());
                net.flush();
                net.given(&carol(), note(item(900), "on my way", false));
                net.flush();
                net.given(&carol(), out(OutsourceCommand::Complete));
                net.flush();
                net.given(&alice(), out(OutsourceCommand::Approve));
            }
            S::Declined => {
                net.given(&carol(), decline("too far away"));
            }
            S::Canceled => {
                net.given(&alice(), out(OutsourceCommand::Cancel));
            }
            S::Expired => {
                net.now = RESPOND_BY + 1;
                net.given(&alice(), out(OutsourceCommand::Expire));
            }
        }
        net.flush();
        assert_eq!(net.status(LEAD), status, "lead did not reach {status}");
        assert_eq!(
            net.status(PARTNER),
            status,
            "partner did not reach {status}"
        );
        net
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes
            .get_mut(name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    #[track_caller]
    pub fn ticket(&self, name: &str) -> &Ticket {
        self.node(name)
            .state
            .as_ref()
            .unwrap_or_else(|| panic!("{name} has no ticket"))
    }

    #[track_caller]
    pub fn link(&self, name: &str) -> &Link {
        self.ticket(name)
            .current_link()
            .unwrap_or_else(|| panic!("{name}'s ticket has no link"))
    }

    #[track_caller]
    pub fn status(&self, name: &str) -> OutsourceStatus {
        self.link(name).status
    }

    #[track_caller]
    pub fn item(&self, name: &str, id: ItemId) -> &Item {
        self.ticket(name)
            .items
            .get(&id)
            .unwrap_or_else(|| panic!("{name} has no item {id}"))
    }

    /// Decides `cmd` as `who` at the net's clock.
    pub fn when(&mut self, who: &Actor, cmd: Command) -> Result<Vec<Event>, DomainError> {
        self.when_at(who, self.now, cmd)
    }

    /// Decides `cmd` as `who` with the caller's clock at `now`. Accepted events are applied
    /// one at a time and routed; a refused command must change nothing anywhere.
    pub fn when_at(
        &mut self,
        who: &Actor,
        now: i64,
        cmd: Command,
    ) -> Result<Vec<Event>, DomainError> {
        let name = who.instance.as_str().to_string();
        let before = self.node(&name).state.clone();
        let log_len = self.node(&name).log.len();
        let wire_len = self.wire.len();
        let ctx = Context {
            actor: who,
            policy: &self.policy,
            now: Timestamp(now),
        };
        let result = decide(before.as_ref(), self.id, ctx, cmd);
        match &result {
            Ok(events) => {
                for e in events {
                    self.apply_local(who, now, e);
                }
            }
            Err(_) => {
                assert_eq!(
                    self.node(&name).state,
                    before,
                    "a refusal changed the state"
                );
                assert_eq!(self.node(&name).log.len(), log_len, "a refusal appended");
                assert_eq!(self.wire.len(), wire_len, "a refusal sent something");
            }
        }
        result
    }

    /// A step of the "given" part: it must be accepted.
    #[track_caller]
    pub fn given(&mut self, who: &Actor, cmd: Command) -> Vec<Event> {
        let shown = format!("{cmd:?}");
        self.when(who, cmd)
            .unwrap_or_else(|e| panic!("given step {shown} by {who} was not accepted: {e}"))
    }

    /// Applies one event `who` decided, with `link_seq` = what its node knew just before,
    /// and puts it on the wire if `route` says so.
    fn apply_local(&mut self, who: &Actor, now: i64, e: &Event) {
        self.next_id += 1;
        let id = self.next_id;
        let tid = self.id;
        let node = self.node_mut(who.instance.as_str());
        let meta = EventMeta {
            actor: who.clone(),
            at: Timestamp(now),
            link_seq: node.known(),
        };
        let to = node
            .state
            .as_ref()
            .and_then(|before| sync::route(before, &who.instance, e));
        node.apply(tid, &meta, e);
        node.seen.insert(id);
        if let Some(to) = to {
            self.wire.push(Msg {
                id,
                from: who.instance.clone(),
                to,
                meta,
                event: e.clone(),
            });
        }
    }

    /// Indexes into `wire` of the messages not yet delivered to their receiver.
    pub fn pending(&self) -> Vec<usize> {
        (0..self.wire.len())
            .filter(|&i| {
                let m = &self.wire[i];
                self.nodes
                    .get(m.to.as_str())
                    .is_some_and(|n| !n.seen.contains(&m.id))
            })
            .collect()
    }

    /// Pending messages from `from` to `to`, oldest first.
    pub fn pending_between(&self, from: &str, to: &str) -> Vec<usize> {
        self.pending()
            .into_iter()
            .filter(|&i| self.wire[i].from.as_str() == from && self.wire[i].to.as_str() == to)
            .collect()
    }

    /// Delivers `wire[idx]` to its receiver: skipped (`Ok(false)`) if already applied there,
    /// otherwise received and applied (`Ok(true)`), or quarantined (`Err`, acknowledged).
    pub fn deliver(&mut self, idx: usize) -> Result<bool, Quarantine> {
        let msg = self.wire[idx].clone();
        let tid = self.id;
        let policy = self.policy.clone();
        let now = self.now;
        let node = self.node_mut(msg.to.as_str());
        if node.seen.contains(&msg.id) {
            return Ok(false);
        }
        node.seen.insert(msg.id);
        let incoming = match sync::receive(
            node.state.as_ref(),
            &node.me,
            &msg.from,
            &msg.meta,
            msg.event.clone(),
            &policy,
        ) {
            Ok(incoming) => incoming,
            Err(q) => {
                node.quarantined.push((msg, q.clone()));
                return Err(q);
            }
        };
        for inc in incoming {
            match inc {
                Incoming::Remote(e) => node.apply(tid, &msg.meta, &e),
                Incoming::Local(e) => {
                    let meta = EventMeta {
                        actor: Actor::new(node.me.clone(), SYSTEM_USER).expect("system actor"),
                        at: Timestamp(now),
                        link_seq: node.known(),
                    };
                    node.apply(tid, &meta, &e);
                }
            }
        }
        Ok(true)
    }

    /// Delivers every pending message in the order decided; none may be quarantined.
    #[track_caller]
    pub fn flush(&mut self) {
        let quarantined = self.flush_collect();
        assert!(
            quarantined.is_empty(),
            "legitimate events were quarantined: {quarantined:?}"
        );
    }

    /// Delivers every pending message in the order decided; returns the quarantines.
    pub fn flush_collect(&mut self) -> Vec<(Msg, Quarantine)> {
        let mut q = vec![];
        for i in self.pending() {
            if let Err(e) = self.deliver(i) {
                q.push((self.wire[i].clone(), e));
            }
        }
        q
    }

    /// Delivers the pending messages from `from` to `to`, oldest first.
    #[track_caller]
    pub fn deliver_all(&mut self, from: &str, to: &str) {
        for i in self.pending_between(from, to) {
            if let Err(q) = self.deliver(i) {
                panic!("{:?} quarantined: {q}", self.wire[i]);
            }
        }
    }

    /// Number of messages routed so far.
    pub fn sent(&self) -> usize {
        self.wire.len()
    }

    /// The events routed since wire position `from`, with sender and receiver names.
    pub fn sent_since(&self, from: usize) -> Vec<(String, String, Event)> {
        self.wire[from..]
            .iter()
            .map(|m| (m.from.to_string(), m.to.to_string(), m.event.clone()))
            .collect()
    }
}

/// The ids of the items `t` holds as shared with its counterparty.
pub fn shared_items(t: &Ticket) -> BTreeSet<ItemId> {
    t.items
        .values()
        .filter(|i| t.sharing(i) == ticketsync_domain::Sharing::Shared)
        .map(|i| i.id)
        .collect()
}

/// The outsourcing change of an event, if it is one.
pub fn change_of(e: &Event) -> Option<&LinkChange> {
    match e {
        Event::Outsource { change, .. } => Some(change),
        _ => None,
    }
}
