//! Billing against a reference model.
//!
//! The model below is written plainly and independently of `domain::billing`: for each of
//! the partner's items that both sides hold, in the order they were added,
//! - a time entry is a line of `(hours - offset)` billable hours (0 when non-billable) at the
//!   hourly rate, rounded per line to the currency's minor unit by the terms' rounding rule;
//!   under a flat rate it is listed at 0 and the flat rate is one line, first;
//! - a charge is `quantity x unit price`, rounded the same way (0 when non-billable);
//! - a line is flagged when the running billable hours exceed the authorized hours, or the
//!   running amount exceeds the authorized charge.
//!
//! "Held by both sides" is modelled from what crossed the wire: an item added while the
//! link was live is shared; each later change its author makes while the link is live is
//! shared too, until the author changes it while the link is not live (Waiting Approval),
//! after which the two copies have diverged and nothing more of it is synchronised. Items
//! added while the link is not live, the lead's own items, and the lead's local changes to
//! the partner's items never count.
//!
//! States are built with the two-instance simulator of `common` (the real `decide`,
//! `evolve`, `route` and `receive`), and `bill` is asked on both instances.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use ticketsync_domain::billing::{bill, Bill, Line, LineKind};
use ticketsync_domain::command::{ChargePatch, TimePatch};
use ticketsync_domain::workflow::completion_item_ids;
use ticketsync_domain::{
    Actor, Charge, Command, Currency, ItemBody, ItemId, ItemKind, OutsourceCommand,
    OutsourceStatus, Rate, Rounding, Terms, TimeEntry,
};

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// Minor-unit digits of the currencies the tests use (ISO 4217), written out here rather
/// than taken from `terms::CURRENCIES`.
const MINOR_UNITS: [(&str, u32); 7] = [
    ("EUR", 2),
    ("USD", 2),
    ("GBP", 2),
    ("JPY", 0),
    ("CLP", 0),
    ("KWD", 3),
    ("BHD", 3),
];

fn minor_units(code: &str) -> u32 {
    MINOR_UNITS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, m)| *m)
        .unwrap_or_else(|| panic!("no minor units for {code} in the test table"))
}

/// Rounds a non-negative amount to `minor` decimal places: scale up to whole minor units,
/// look at the fraction left over, decide whether to go one unit up.
fn round_model(amount: Decimal, minor: u32, mode: Rounding) -> Decimal {
    assert!(!amount.is_sign_negative(), "amounts are never negative");
    let unit = Decimal::from(10i64.pow(minor));
    let scaled = amount * unit;
    let whole = scaled.trunc();
    let fraction = scaled - whole;
    let half = Decimal::new(5, 1);
    let whole_units = whole.to_i128().expect("fits in i128");
    let one_up = match mode {
        Rounding::HalfUp => fraction >= half,
        Rounding::HalfEven => fraction > half || (fraction == half && whole_units % 2 == 1),
        Rounding::Up => fraction > Decimal::ZERO,
        Rounding::Down => false,
    };
    let units = if one_up { whole_units + 1 } else { whole_units };
    Decimal::from_i128_with_scale(units, minor)
}

/// One terms version as the test chose it.
#[derive(Clone, Debug)]
struct TermsSpec {
    flat: bool,
    rate: Decimal,
    currency: &'static str,
    rounding: Rounding,
    authorized_hours: Option<Decimal>,
    authorized_charge: Option<Decimal>,
}

impl TermsSpec {
    fn terms(&self) -> Terms {
        Terms {
            rate: if self.flat {
                Rate::Flat(self.rate)
            } else {
                Rate::Hourly(self.rate)
            },
            currency: Currency::parse(self.currency).expect("currency"),
            authorized_hours: self.authorized_hours,
            authorized_charge: self.authorized_charge,
            respond_by: None,
            instructions: String::new(),
            rounding: self.rounding,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum MBody {
    Time {
        hours: Decimal,
        offset: Decimal,
        billable: bool,
        summary: String,
    },
    Charge {
        quantity: Decimal,
        price: Decimal,
        billable: bool,
    },
    Note,
}

/// One item as the model knows it.
#[derive(Clone, Debug)]
struct MItem {
    id: ItemId,
    by_partner: bool,
    body: MBody,
    deleted: bool,
    /// The version both sides hold (`None`: never shared, or deleted on both).
    shared: Option<MBody>,
    /// Changed by its author while the link was not live, or never shared: nothing more of
    /// it reaches the other side.
    frozen: bool,
}

const RESOURCE: &str = "Carol Jones";

struct Model {
    /// Every terms version, in order; acceptance binds the last.
    terms: Vec<TermsSpec>,
    /// Every item, in the order added (ids increase with it).
    items: Vec<MItem>,
    /// The link is Accepted or In Progress.
    live: bool,
}

impl Model {
    fn add(&mut self, id: ItemId, by_partner: bool, body: MBody) {
        let live = self.live;
        self.items.push(MItem {
            id,
            by_partner,
            body: body.clone(),
            deleted: false,
            shared: live.then_some(body),
            frozen: !live,
        });
    }

    /// The author changed the item (`None`: deleted it).
    fn author_change(&mut self, idx: usize, new: Option<MBody>) {
        let live = self.live;
        let i = &mut self.items[idx];
        match &new {
            Some(b) => i.body = b.clone(),
            None => i.deleted = true,
        }
        if live && !i.frozen {
            i.shared = new;
        } else {
            i.frozen = true;
        }
    }

    fn bill(&self) -> Bill {
        let terms = self.terms.last().expect("terms");
        let minor = minor_units(terms.currency);
        let round = |x: Decimal| round_model(x, minor, terms.rounding);
        let over_hours = |running: Decimal| terms.authorized_hours.is_some_and(|a| running > a);
        let over_charge = |running: Decimal| terms.authorized_charge.is_some_and(|a| running > a);
        let mut lines = vec![];
        let mut running_hours = Decimal::ZERO;
        let mut running_amount = Decimal::ZERO;
        if terms.flat {
            let amount = round(terms.rate);
            running_amount += amount;
            lines.push(Line {
                kind: LineKind::Flat,
                item: None,
                description: "Flat rate".into(),
                hours: Decimal::ZERO,
                offset_hours: Decimal::ZERO,
                billable_hours: Decimal::ZERO,
                quantity: Decimal::ONE,
                unit_price: terms.rate,
                amount,
                over_authorized_hours: false,
                over_authorized_charge: over_charge(running_amount),
            });
        }
        for i in self.items.iter().filter(|i| i.by_partner) {
            match &i.shared {
                None | Some(MBody::Note) => {}
                Some(MBody::Time {
                    hours,
                    offset,
                    billable,
                    summary,
                }) => {
                    let billable_hours = if *billable {
                        hours - offset
                    } else {
                        Decimal::ZERO
                    };
                    let (unit_price, amount) = if terms.flat {
                        (Decimal::ZERO, Decimal::ZERO)
                    } else {
                        (terms.rate, round(billable_hours * terms.rate))
                    };
                    running_hours += billable_hours;
                    running_amount += amount;
                    let mut description = format!("2025-03-14 {RESOURCE}");
                    if !summary.is_empty() {
                        description = format!("{description}: {summary}");
                    }
                    lines.push(Line {
                        kind: LineKind::Time,
                        item: Some(i.id),
                        description,
                        hours: *hours,
                        offset_hours: *offset,
                        billable_hours,
                        quantity: billable_hours,
                        unit_price,
                        amount,
                        over_authorized_hours: over_hours(running_hours),
                        over_authorized_charge: over_charge(running_amount),
                    });
                }
                Some(MBody::Charge {
                    quantity,
                    price,
                    billable,
                }) => {
                    let amount = if *billable {
                        round(quantity * price)
                    } else {
                        Decimal::ZERO
                    };
                    running_amount += amount;
                    lines.push(Line {
                        kind: LineKind::Charge,
                        item: Some(i.id),
                        description: "Spare parts".into(),
                        hours: Decimal::ZERO,
                        offset_hours: Decimal::ZERO,
                        billable_hours: Decimal::ZERO,
                        quantity: *quantity,
                        unit_price: *price,
                        amount,
                        over_authorized_hours: false,
                        over_authorized_charge: over_charge(running_amount),
                    });
                }
            }
        }
        let subtotal = lines.iter().map(|l| l.amount).sum();
        let billable_hours = lines.iter().map(|l| l.billable_hours).sum();
        let charges = lines
            .iter()
            .filter(|l| l.kind == LineKind::Charge)
            .map(|l| l.amount)
            .sum();
        Bill {
            link: link1(),
            terms_version: self.terms.len() as u32,
            currency: Currency::parse(terms.currency).expect("currency"),
            over_authorized_hours: lines.iter().any(|l| l.over_authorized_hours),
            over_authorized_charge: lines.iter().any(|l| l.over_authorized_charge),
            lines,
            subtotal,
            billable_hours,
            charges,
            authorized_hours: terms.authorized_hours,
            authorized_charge: terms.authorized_charge,
        }
    }

    /// Hours offset on the shared time entries.
    fn offset(&self) -> Decimal {
        self.items
            .iter()
            .filter(|i| i.by_partner)
            .filter_map(|i| match &i.shared {
                Some(MBody::Time { offset, .. }) => Some(*offset),
                _ => None,
            })
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Commands on the simulator
// ---------------------------------------------------------------------------------------------

fn time_entry(hours: Decimal, offset: Decimal, billable: bool, summary: &str) -> TimeEntry {
    TimeEntry {
        hours,
        offset_hours: offset,
        resource: RESOURCE.into(),
        role: None,
        summary: summary.into(),
        date: date(),
        billable,
    }
}

fn spare_parts(quantity: Decimal, price: Decimal, billable: bool) -> Charge {
    Charge {
        description: "Spare parts".into(),
        quantity,
        unit_cost: Decimal::ONE,
        unit_price: price,
        billable,
    }
}

fn add_time(id: ItemId, hours: Decimal, offset: Decimal, billable: bool, summary: &str) -> Command {
    Command::AddTime {
        item: id,
        entry: time_entry(hours, offset, billable, summary),
    }
}

fn add_parts(id: ItemId, quantity: Decimal, price: Decimal, billable: bool) -> Command {
    Command::AddCharge {
        item: id,
        charge: spare_parts(quantity, price, billable),
    }
}

fn sent_with(terms: &[Terms]) -> Net {
    let mut net = Net::created();
    net.given(&alice(), send_to(link1(), PARTNER, terms[0].clone()));
    net.flush();
    for (n, t) in terms.iter().enumerate().skip(1) {
        // Alternate counter-offers and revisions.
        let who = if n % 2 == 1 { carol() } else { alice() };
        let cmd = if n % 2 == 1 {
            counter(t.clone())
        } else {
            revise(t.clone())
        };
        net.given(&who, cmd);
        net.flush();
    }
    net
}

/// Sent with these terms versions, accepted, delivered: the link is live on both sides.
fn accepted_with(terms: &[Terms]) -> Net {
    let mut net = sent_with(terms);
    net.given(&carol(), accept());
    net.flush();
    assert_eq!(net.status(LEAD), OutsourceStatus::Accepted);
    assert_eq!(net.status(PARTNER), OutsourceStatus::Accepted);
    net
}

/// `cmd` by `who`, then everything delivered.
#[track_caller]
fn step(net: &mut Net, who: &Actor, cmd: Command) {
    net.given(who, cmd);
    net.flush();
}

#[track_caller]
fn bill_of(net: &Net, side: &str) -> Bill {
    bill(net.ticket(side), link1()).unwrap_or_else(|| panic!("{side} has no bill"))
}

/// The bill on both sides (asserted equal).
#[track_caller]
fn both_bills(net: &Net) -> Bill {
    let l = bill_of(net, LEAD);
    let p = bill_of(net, PARTNER);
    assert_eq!(l, p, "the lead's and the partner's bills differ");
    l
}

fn hourly(rate: &str, currency: &str, rounding: Rounding) -> Terms {
    Terms {
        rate: Rate::Hourly(d(rate)),
        currency: Currency::parse(currency).expect("currency"),
        authorized_hours: None,
        authorized_charge: None,
        respond_by: None,
        instructions: String::new(),
        rounding,
    }
}

fn flat(rate: &str, currency: &str, rounding: Rounding) -> Terms {
    Terms {
        rate: Rate::Flat(d(rate)),
        ..hourly("0", currency, rounding)
    }
}

/// The amount of the one time line a single entry of `hours` at `terms` gives.
fn one_entry_amount(terms: Terms, hours: &str) -> Decimal {
    let mut net = accepted_with(&[terms]);
    step(
        &mut net,
        &carol(),
        add_time(item(1), d(hours), d("0"), true, ""),
    );
    let b = both_bills(&net);
    assert_eq!(b.lines.len(), 1, "{b:?}");
    b.lines[0].amount
}

// ---------------------------------------------------------------------------------------------
// Fixed rounding cases
// ---------------------------------------------------------------------------------------------

#[test]
fn rounding_apply_on_half_cents_and_sub_cents_follows_each_rule() {
    let eur = eur();
    let cases = [
        ("0.125", Rounding::HalfUp, "0.13"),
        ("0.125", Rounding::HalfEven, "0.12"),
        ("0.135", Rounding::HalfEven, "0.14"),
        ("0.121", Rounding::Up, "0.13"),
        ("0.129", Rounding::Down, "0.12"),
        ("0.124", Rounding::HalfUp, "0.12"),
        ("0.126", Rounding::HalfEven, "0.13"),
        ("0.12", Rounding::Up, "0.12"),
        ("25", Rounding::HalfUp, "25.00"),
    ];
    for (x, mode, want) in cases {
        let got = mode.apply(d(x), eur);
        assert_eq!(got.to_string(), want, "{x} {}", mode.name());
        assert_eq!(
            round_model(d(x), 2, mode).to_string(),
            want,
            "the model: {x} {}",
            mode.name()
        );
    }
}

#[test]
fn a_half_cent_line_rounds_half_up_to_013_and_half_even_to_012() {
    // 0.25 h x 0.50 EUR = 0.125 EUR
    assert_eq!(
        one_entry_amount(hourly("0.5", "EUR", Rounding::HalfUp), "0.25").to_string(),
        "0.13"
    );
    assert_eq!(
        one_entry_amount(hourly("0.5", "EUR", Rounding::HalfEven), "0.25").to_string(),
        "0.12"
    );
}

#[test]
fn a_line_of_0121_rounds_up_to_013_and_0129_rounds_down_to_012() {
    // 0.01 h x 12.10 = 0.121 and 0.01 h x 12.90 = 0.129
    assert_eq!(
        one_entry_amount(hourly("12.1", "EUR", Rounding::Up), "0.01").to_string(),
        "0.13"
    );
    assert_eq!(
        one_entry_amount(hourly("12.9", "EUR", Rounding::Down), "0.01").to_string(),
        "0.12"
    );
    // and the other rules on the same lines
    assert_eq!(
        one_entry_amount(hourly("12.1", "EUR", Rounding::HalfUp), "0.01").to_string(),
        "0.12"
    );
    assert_eq!(
        one_entry_amount(hourly("12.9", "EUR", Rounding::HalfUp), "0.01").to_string(),
        "0.13"
    );
}

#[test]
fn jpy_has_no_minor_unit_so_15_hours_at_1001_is_1502_half_up() {
    let jpy = Currency::parse("JPY").expect("JPY");
    assert_eq!(jpy.minor_units(), minor_units("JPY"));
    // 1.5 h x 1001 = 1501.5
    let cases = [
        (Rounding::HalfUp, "1502"),
        (Rounding::HalfEven, "1502"),
        (Rounding::Up, "1502"),
        (Rounding::Down, "1501"),
    ];
    for (mode, want) in cases {
        let got = one_entry_amount(hourly("1001", "JPY", mode), "1.5");
        assert_eq!(got.to_string(), want, "{}", mode.name());
        assert_eq!(got.scale(), 0, "JPY amounts have no decimals");
    }
    // 2.5 h x 1001 = 2502.5: half-even goes to the even 2502
    assert_eq!(
        one_entry_amount(hourly("1001", "JPY", Rounding::HalfEven), "2.5").to_string(),
        "2502"
    );
}

#[test]
fn kwd_has_three_minor_digits() {
    let kwd = Currency::parse("KWD").expect("KWD");
    assert_eq!(kwd.minor_units(), 3);
    // 0.5 h x 2.001 = 1.0005 KWD
    let cases = [
        (Rounding::HalfUp, "1.001"),
        (Rounding::HalfEven, "1.000"),
        (Rounding::Up, "1.001"),
        (Rounding::Down, "1.000"),
    ];
    for (mode, want) in cases {
        assert_eq!(
            one_entry_amount(hourly("2.001", "KWD", mode), "0.5").to_string(),
            want,
            "{}",
            mode.name()
        );
    }
    // whole amounts are shown with the three digits
    assert_eq!(
        one_entry_amount(hourly("2", "KWD", Rounding::HalfUp), "1").to_string(),
        "2.000"
    );
    assert_eq!(
        Rounding::HalfUp.apply(d("0.0125"), kwd).to_string(),
        "0.013"
    );
    assert_eq!(
        Rounding::HalfEven.apply(d("0.0125"), kwd).to_string(),
        "0.012"
    );
}

// ---------------------------------------------------------------------------------------------
// Fixed bills
// ---------------------------------------------------------------------------------------------

#[test]
fn a_flat_rate_is_one_line_first_and_time_is_listed_at_zero() {
    let terms = Terms {
        authorized_hours: Some(d("3")),
        authorized_charge: Some(d("1250")),
        ..flat("1234.567", "EUR", Rounding::HalfUp)
    };
    let mut net = accepted_with(&[terms]);
    step(
        &mut net,
        &carol(),
        add_time(item(1), d("2.5"), d("0.5"), true, "diagnosis"),
    );
    step(&mut net, &carol(), add_parts(item(2), d("2"), d("9"), true));
    step(
        &mut net,
        &carol(),
        add_time(item(3), d("1.5"), d("0"), true, ""),
    );
    let b = both_bills(&net);
    let kinds: Vec<LineKind> = b.lines.iter().map(|l| l.kind).collect();
    assert_eq!(
        kinds,
        [
            LineKind::Flat,
            LineKind::Time,
            LineKind::Charge,
            LineKind::Time
        ]
    );
    let f = &b.lines[0];
    assert_eq!((f.item, f.description.as_str()), (None, "Flat rate"));
    assert_eq!(f.amount.to_string(), "1234.57");
    assert_eq!((f.quantity, f.unit_price), (d("1"), d("1234.567")));
    assert!(!f.over_authorized_charge, "1234.57 <= 1250");
    // time at 0, its hours still counted
    assert_eq!(b.lines[1].amount, d("0"));
    assert_eq!(b.lines[1].billable_hours, d("2"));
    assert_eq!(b.lines[1].description, "2025-03-14 Carol Jones: diagnosis");
    assert!(!b.lines[1].over_authorized_hours, "2 h <= 3 h");
    // the charge takes the running amount over the authorized charge
    assert_eq!(b.lines[2].amount.to_string(), "18.00");
    assert!(b.lines[2].over_authorized_charge, "1252.57 > 1250");
    assert!(!b.lines[2].over_authorized_hours);
    assert!(b.lines[3].over_authorized_hours, "3.5 h > 3 h");
    assert_eq!(b.lines[3].amount, d("0"));
    assert_eq!(b.lines[3].description, "2025-03-14 Carol Jones");
    assert_eq!(b.subtotal.to_string(), "1252.57");
    assert_eq!(b.charges, d("18"));
    assert_eq!(b.billable_hours, d("3.5"));
    assert!(b.over_authorized_hours && b.over_authorized_charge);
}

#[test]
fn a_flat_rate_alone_is_billed_rounded_to_the_currency() {
    let cases = [
        ("999.5", "JPY", Rounding::HalfUp, "1000"),
        ("999.5", "JPY", Rounding::Down, "999"),
        ("998.5", "JPY", Rounding::HalfEven, "998"),
        ("10.0005", "KWD", Rounding::HalfEven, "10.000"),
        ("10.0005", "KWD", Rounding::Up, "10.001"),
        ("75", "EUR", Rounding::HalfUp, "75.00"),
    ];
    for (rate, cur, mode, want) in cases {
        let net = accepted_with(&[flat(rate, cur, mode)]);
        let b = both_bills(&net);
        assert_eq!(b.lines.len(), 1, "{b:?}");
        assert_eq!(b.lines[0].kind, LineKind::Flat);
        assert_eq!(
            b.lines[0].amount.to_string(),
            want,
            "{rate} {cur} {}",
            mode.name()
        );
        assert_eq!(b.subtotal, d(want));
        assert_eq!(b.billable_hours, d("0"));
    }
}

#[test]
fn acceptance_binds_the_latest_terms_version_after_a_counter_and_a_revision() {
    let v1 = hourly("100", "EUR", Rounding::HalfUp);
    let v2 = hourly("120", "USD", Rounding::HalfUp);
    let v3 = hourly("110", "GBP", Rounding::HalfUp);
    let mut net = accepted_with(&[v1, v2, v3]);
    step(
        &mut net,
        &carol(),
        add_time(item(1), d("2"), d("0"), true, ""),
    );
    let b = both_bills(&net);
    assert_eq!(b.terms_version, 3);
    assert_eq!(b.currency.code(), "GBP");
    assert_eq!(b.lines[0].unit_price, d("110"));
    assert_eq!(b.subtotal.to_string(), "220.00");
}

#[test]
fn nothing_is_billed_before_acceptance() {
    let mut net = sent_with(&[hourly("100", "EUR", Rounding::HalfUp)]);
    assert_eq!(bill(net.ticket(LEAD), link1()), None);
    assert_eq!(bill(net.ticket(PARTNER), link1()), None);
    // time the partner logs while Assigned stays on its side and is never billed
    step(
        &mut net,
        &carol(),
        add_time(item(1), d("3"), d("0"), true, ""),
    );
    assert_eq!(bill(net.ticket(PARTNER), link1()), None);
    step(&mut net, &carol(), accept());
    step(
        &mut net,
        &carol(),
        add_time(item(2), d("1"), d("0"), true, ""),
    );
    let b = both_bills(&net);
    assert_eq!(b.lines.len(), 1, "{b:?}");
    assert_eq!(b.lines[0].item, Some(item(2)));
    assert_eq!(b.subtotal, d("100"));
}

#[test]
fn the_leads_own_time_and_charges_are_never_billed() {
    let mut net = accepted_with(&[hourly("100", "EUR", Rounding::HalfUp)]);
    step(
        &mut net,
        &alice(),
        add_time(item(1), d("5"), d("0"), true, ""),
    );
    step(
        &mut net,
        &alice(),
        add_parts(item(2), d("1"), d("50"), true),
    );
    step(
        &mut net,
        &carol(),
        add_time(item(3), d("1"), d("0.25"), true, ""),
    );
    let b = both_bills(&net);
    assert_eq!(b.lines.len(), 1, "{b:?}");
    assert_eq!(b.lines[0].item, Some(item(3)));
    assert_eq!(b.subtotal.to_string(), "75.00");
}

#[test]
fn on_approval_the_lead_gets_one_non_billable_cost_line_of_the_total_and_a_note_naming_the_offset()
{
    let terms = Terms {
        authorized_hours: Some(d("2")),
        ..hourly("80", "EUR", Rounding::HalfUp)
    };
    let mut net = accepted_with(&[terms]);
    step(
        &mut net,
        &carol(),
        add_time(item(1), d("2.5"), d("0.75"), true, ""),
    );
    step(
        &mut net,
        &carol(),
        add_parts(item(2), d("3"), d("4.5"), true),
    );
    step(&mut net, &carol(), out(OutsourceCommand::Complete));
    step(&mut net, &alice(), out(OutsourceCommand::Approve));
    assert_eq!(net.status(LEAD), OutsourceStatus::Complete);
    let b = both_bills(&net);
    assert_eq!(b.subtotal.to_string(), "153.50"); // 1.75 x 80 + 13.50
    let (cost, note) = completion_item_ids(link1());
    match &net.item(LEAD, cost).body {
        ItemBody::Charge(c) => {
            assert_eq!(c.unit_cost, b.subtotal);
            assert_eq!(c.quantity, d("1"));
            assert_eq!(c.unit_price, d("0"));
            assert!(!c.billable, "the cost line is not billable");
        }
        other => panic!("the cost line is {other:?}"),
    }
    match &net.item(LEAD, note).body {
        ItemBody::Note { text, internal } => {
            assert!(*internal, "the summary note is internal");
            assert!(text.contains("0.75 h offset"), "{text}");
            assert!(text.contains("153.50 EUR"), "{text}");
            assert!(text.contains("1.75 h billable"), "{text}");
        }
        other => panic!("the summary note is {other:?}"),
    }
    assert!(
        !net.ticket(PARTNER).items.contains_key(&cost),
        "the partner gets no cost line"
    );
}

#[test]
fn a_second_link_bills_only_its_own_work() {
    let mut net = accepted_with(&[hourly("100", "EUR", Rounding::HalfUp)]);
    step(
        &mut net,
        &carol(),
        add_time(item(1), d("1"), d("0"), true, ""),
    );
    step(&mut net, &carol(), out(OutsourceCommand::Complete));
    step(&mut net, &alice(), out(OutsourceCommand::Approve));
    step(
        &mut net,
        &alice(),
        send_to(link_id(2), PARTNER, hourly("50", "EUR", Rounding::HalfUp)),
    );
    step(&mut net, &carol(), accept());
    step(
        &mut net,
        &carol(),
        add_time(item(2), d("2"), d("0"), true, ""),
    );
    for side in [LEAD, PARTNER] {
        let b1 = bill(net.ticket(side), link1()).expect("link 1 bill");
        let b2 = bill(net.ticket(side), link_id(2)).expect("link 2 bill");
        assert_eq!(b1.subtotal, d("100"), "{side}");
        assert_eq!(b1.lines.len(), 1, "{side}");
        assert_eq!(b2.subtotal, d("100"), "{side}: 2 h x 50");
        assert_eq!(b2.lines.len(), 1, "{side}");
        assert_eq!(b2.lines[0].item, Some(item(2)), "{side}");
    }
}

// ---------------------------------------------------------------------------------------------
// Both sides must agree when a shared item diverges
// ---------------------------------------------------------------------------------------------

#[test]
fn an_entry_edited_while_waiting_approval_and_again_after_rejection_is_billed_alike_on_both_sides()
{
    let mut net = accepted_with(&[hourly("100", "EUR", Rounding::HalfUp)]);
    step(
        &mut net,
        &carol(),
        add_time(item(1), d("1"), d("0"), true, ""),
    );
    step(&mut net, &carol(), out(OutsourceCommand::Complete));
    let edit = |h: &str| Command::EditTime {
        item: item(1),
        patch: TimePatch {
            hours: Some(d(h)),
            ..TimePatch::default()
        },
    };
    // while Waiting Approval the edit stays on the partner's side
    step(&mut net, &carol(), edit("2"));
    step(&mut net, &alice(), reject("not finished"));
    assert_eq!(net.status(PARTNER), OutsourceStatus::InProgress);
    // live again: the entry has diverged, so this edit is not sent either
    step(&mut net, &carol(), edit("3"));
    let lead = bill_of(&net, LEAD);
    let partner = bill_of(&net, PARTNER);
    assert_eq!(
        lead.subtotal,
        d("100"),
        "the lead holds the 1 h the partner shared"
    );
    assert_eq!(
        partner, lead,
        "the partner bills a version of the entry the lead never received"
    );
}

#[test]
fn an_entry_the_lead_deleted_locally_and_the_partner_then_edited_is_billed_alike_on_both_sides() {
    let mut net = accepted_with(&[hourly("100", "EUR", Rounding::HalfUp)]);
    step(
        &mut net,
        &carol(),
        add_time(item(1), d("1"), d("0"), true, ""),
    );
    // the lead deletes the partner's entry on its side only
    step(
        &mut net,
        &alice(),
        Command::DeleteItem {
            item: item(1),
            kind: ItemKind::Time,
        },
    );
    assert_eq!(
        bill_of(&net, LEAD),
        bill_of(&net, PARTNER),
        "a local change on the lead's side does not change the bill"
    );
    // the partner's edit is shared while live and reaches the lead
    step(
        &mut net,
        &carol(),
        Command::EditTime {
            item: item(1),
            patch: TimePatch {
                hours: Some(d("4")),
                ..TimePatch::default()
            },
        },
    );
    let partner = bill_of(&net, PARTNER);
    assert_eq!(partner.subtotal, d("400"));
    assert_eq!(
        bill_of(&net, LEAD),
        partner,
        "the lead dropped the partner's shared edit of an entry it had deleted locally"
    );
}

// ---------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    /// The partner logs time.
    Time {
        hours: Decimal,
        offset: Decimal,
        billable: bool,
        summary: bool,
    },
    /// The partner edits one of its time entries (`slot` picks which).
    EditTime {
        slot: usize,
        hours: Option<Decimal>,
        offset: Option<Decimal>,
        billable: Option<bool>,
        summary: Option<bool>,
    },
    Charge {
        quantity: Decimal,
        price: Decimal,
        billable: bool,
    },
    EditCharge {
        slot: usize,
        quantity: Option<Decimal>,
        price: Option<Decimal>,
        billable: Option<bool>,
    },
    /// The partner deletes one of its time entries or charges.
    Delete { slot: usize },
    /// The partner adds a note (never a line).
    Note,
    /// The lead logs time (never billed).
    LeadTime { hours: Decimal },
    /// The lead adds a charge (never billed).
    LeadCharge { quantity: Decimal, price: Decimal },
    /// The lead edits one of the partner's time entries on its side only.
    LeadEditsPartnerTime { slot: usize, hours: Decimal },
    /// The lead deletes one of the partner's items on its side only.
    LeadDeletesPartnerItem { slot: usize },
    /// The partner completes (not live), or the lead rejects the completion (live again).
    Toggle,
}

/// Hours: any from 0.01 to 24, or whole and half hours (so that running totals often land
/// exactly on an authorized limit).
fn hours_strategy() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        (1i64..=2400).prop_map(|c| Decimal::new(c, 2)),
        (1i64..=16).prop_map(|h| Decimal::new(h * 5, 1)),
    ]
}

/// An offset, mostly small, sometimes more than the hours (then an edit is refused).
fn offset_strategy() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        3 => Just(Decimal::ZERO),
        5 => (0i64..=300).prop_map(|c| Decimal::new(c, 2)),
        1 => (0i64..=2400).prop_map(|c| Decimal::new(c, 2)),
    ]
}

fn money_strategy(max: i64) -> impl Strategy<Value = Decimal> {
    (0..=max, 0u32..=4).prop_map(|(n, s)| Decimal::new(n, s))
}

fn quantity_strategy() -> impl Strategy<Value = Decimal> {
    (1i64..=50_000, 0u32..=3).prop_map(|(n, s)| Decimal::new(n, s))
}

fn terms_strategy() -> impl Strategy<Value = TermsSpec> {
    (
        prop::bool::weighted(0.2),
        prop_oneof![
            money_strategy(2_000_000),
            (0i64..=200).prop_map(Decimal::from)
        ],
        prop::sample::select(MINOR_UNITS.iter().map(|(c, _)| *c).collect::<Vec<_>>()),
        prop::sample::select(Rounding::ALL.to_vec()),
        prop::option::of(prop_oneof![
            (0i64..=400).prop_map(|n| Decimal::new(n, 1)),
            (0i64..=20).prop_map(Decimal::from),
            Just(Decimal::ZERO),
        ]),
        prop::option::of(prop_oneof![
            (0i64..=2_000_000).prop_map(|n| Decimal::new(n, 2)),
            (0i64..=100).prop_map(|n| Decimal::from(n * 50)),
            Just(Decimal::ZERO),
        ]),
    )
        .prop_map(
            |(flat, rate, currency, rounding, authorized_hours, authorized_charge)| TermsSpec {
                flat,
                rate,
                currency,
                rounding,
                authorized_hours,
                authorized_charge,
            },
        )
}

fn op_strategy(with_divergence: bool) -> impl Strategy<Value = Op> {
    let slot = 0usize..64;
    let base = prop_oneof![
        6 => (hours_strategy(), offset_strategy(), prop::bool::weighted(0.85), any::<bool>())
            .prop_map(|(hours, offset, billable, summary)| Op::Time { hours, offset, billable, summary }),
        4 => (
            slot.clone(),
            prop::option::of(hours_strategy()),
            prop::option::of(offset_strategy()),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(slot, hours, offset, billable, summary)| Op::EditTime {
                slot,
                hours,
                offset,
                billable,
                summary,
            }),
        3 => (quantity_strategy(), money_strategy(1_000_000), prop::bool::weighted(0.85))
            .prop_map(|(quantity, price, billable)| Op::Charge { quantity, price, billable }),
        2 => (
            slot.clone(),
            prop::option::of(quantity_strategy()),
            prop::option::of(money_strategy(1_000_000)),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(slot, quantity, price, billable)| Op::EditCharge {
                slot,
                quantity,
                price,
                billable,
            }),
        2 => slot.clone().prop_map(|slot| Op::Delete { slot }),
        1 => Just(Op::Note),
        1 => hours_strategy().prop_map(|hours| Op::LeadTime { hours }),
        1 => (quantity_strategy(), money_strategy(100_000))
            .prop_map(|(quantity, price)| Op::LeadCharge { quantity, price }),
    ];
    let divergence = prop_oneof![
        2 => (slot.clone(), hours_strategy())
            .prop_map(|(slot, hours)| Op::LeadEditsPartnerTime { slot, hours }),
        2 => slot.prop_map(|slot| Op::LeadDeletesPartnerItem { slot }),
        2 => Just(Op::Toggle),
    ];
    let w = if with_divergence { 5 } else { 0 };
    prop_oneof![19 => base, w => divergence]
}

#[derive(Clone, Debug)]
struct Case {
    /// Terms version 1 (send), then counter-offers and revisions in turn.
    terms: Vec<TermsSpec>,
    /// The partner's time and charges logged while Assigned (never shared).
    before_acceptance: Vec<Op>,
    ops: Vec<Op>,
}

fn case_strategy(with_divergence: bool) -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(terms_strategy(), 1..=4),
        prop::collection::vec(op_strategy(false), 0..=2),
        prop::collection::vec(op_strategy(with_divergence), 0..=30),
    )
        .prop_map(|(terms, before_acceptance, ops)| Case {
            terms,
            before_acceptance,
            ops,
        })
}

/// The index into `model.items` of the `slot`-th (modulo) partner item matching `pick`.
fn pick_item(model: &Model, slot: usize, pick: impl Fn(&MBody) -> bool) -> Option<usize> {
    let found: Vec<usize> = (0..model.items.len())
        .filter(|&n| model.items[n].by_partner && pick(&model.items[n].body))
        .collect();
    (!found.is_empty()).then(|| found[slot % found.len()])
}

fn is_time(b: &MBody) -> bool {
    matches!(b, MBody::Time { .. })
}

fn is_charge(b: &MBody) -> bool {
    matches!(b, MBody::Charge { .. })
}

struct Sim {
    net: Net,
    model: Model,
    next_item: u128,
}

impl Sim {
    fn new_id(&mut self) -> ItemId {
        self.next_item += 1;
        item(self.next_item)
    }

    /// Runs `op` on the simulator (everything delivered after it) and on the model.
    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op.clone() {
            Op::Time {
                hours,
                offset,
                billable,
                summary,
            } => {
                let offset = offset.min(hours);
                let summary = if summary { "fixed the fan" } else { "" };
                let id = self.new_id();
                step(
                    &mut self.net,
                    &carol(),
                    add_time(id, hours, offset, billable, summary),
                );
                self.model.add(
                    id,
                    true,
                    MBody::Time {
                        hours,
                        offset,
                        billable,
                        summary: summary.into(),
                    },
                );
            }
            Op::EditTime {
                slot,
                hours,
                offset,
                billable,
                summary,
            } => {
                let Some(n) = pick_item(&self.model, slot, is_time) else {
                    return Ok(());
                };
                let MBody::Time {
                    hours: h0,
                    offset: o0,
                    billable: b0,
                    summary: s0,
                } = self.model.items[n].body.clone()
                else {
                    unreachable!("picked a time entry");
                };
                let new = MBody::Time {
                    hours: hours.unwrap_or(h0),
                    offset: offset.unwrap_or(o0),
                    billable: billable.unwrap_or(b0),
                    summary: summary.map_or(s0, |s| if s { "replaced it" } else { "" }.into()),
                };
                let MBody::Time {
                    hours: h1,
                    offset: o1,
                    ..
                } = &new
                else {
                    unreachable!()
                };
                let valid = !self.model.items[n].deleted && o1 <= h1;
                let r = self.net.when(
                    &carol(),
                    Command::EditTime {
                        item: self.model.items[n].id,
                        patch: TimePatch {
                            hours,
                            offset_hours: offset,
                            billable,
                            summary: summary.map(|s| if s { "replaced it" } else { "" }.into()),
                            ..TimePatch::default()
                        },
                    },
                );
                prop_assert_eq!(r.is_ok(), valid, "edit time: {:?}", r);
                self.net.flush();
                if valid && new != self.model.items[n].body {
                    self.model.author_change(n, Some(new));
                }
            }
            Op::Charge {
                quantity,
                price,
                billable,
            } => {
                let id = self.new_id();
                step(
                    &mut self.net,
                    &carol(),
                    add_parts(id, quantity, price, billable),
                );
                self.model.add(
                    id,
                    true,
                    MBody::Charge {
                        quantity,
                        price,
                        billable,
                    },
                );
            }
            Op::EditCharge {
                slot,
                quantity,
                price,
                billable,
            } => {
                let Some(n) = pick_item(&self.model, slot, is_charge) else {
                    return Ok(());
                };
                let MBody::Charge {
                    quantity: q0,
                    price: p0,
                    billable: b0,
                } = self.model.items[n].body.clone()
                else {
                    unreachable!("picked a charge");
                };
                let new = MBody::Charge {
                    quantity: quantity.unwrap_or(q0),
                    price: price.unwrap_or(p0),
                    billable: billable.unwrap_or(b0),
                };
                let valid = !self.model.items[n].deleted;
                let r = self.net.when(
                    &carol(),
                    Command::EditCharge {
                        item: self.model.items[n].id,
                        patch: ChargePatch {
                            quantity,
                            unit_price: price,
                            billable,
                            ..ChargePatch::default()
                        },
                    },
                );
                prop_assert_eq!(r.is_ok(), valid, "edit charge: {:?}", r);
                self.net.flush();
                if valid && new != self.model.items[n].body {
                    self.model.author_change(n, Some(new));
                }
            }
            Op::Delete { slot } => {
                let Some(n) = pick_item(&self.model, slot, |b| is_time(b) || is_charge(b)) else {
                    return Ok(());
                };
                let kind = if is_time(&self.model.items[n].body) {
                    ItemKind::Time
                } else {
                    ItemKind::Charge
                };
                let valid = !self.model.items[n].deleted;
                let r = self.net.when(
                    &carol(),
                    Command::DeleteItem {
                        item: self.model.items[n].id,
                        kind,
                    },
                );
                prop_assert_eq!(r.is_ok(), valid, "delete: {:?}", r);
                self.net.flush();
                if valid {
                    self.model.author_change(n, None);
                }
            }
            Op::Note => {
                let id = self.new_id();
                step(&mut self.net, &carol(), note(id, "on site", false));
                self.model.add(id, true, MBody::Note);
            }
            Op::LeadTime { hours } => {
                let id = self.new_id();
                step(
                    &mut self.net,
                    &alice(),
                    Command::AddTime {
                        item: id,
                        entry: TimeEntry {
                            resource: "Alice Smith".into(),
                            ..time_entry(hours, Decimal::ZERO, true, "")
                        },
                    },
                );
                self.model.add(
                    id,
                    false,
                    MBody::Time {
                        hours,
                        offset: Decimal::ZERO,
                        billable: true,
                        summary: String::new(),
                    },
                );
            }
            Op::LeadCharge { quantity, price } => {
                let id = self.new_id();
                step(
                    &mut self.net,
                    &alice(),
                    add_parts(id, quantity, price, true),
                );
                self.model.add(
                    id,
                    false,
                    MBody::Charge {
                        quantity,
                        price,
                        billable: true,
                    },
                );
            }
            Op::LeadEditsPartnerTime { slot, hours } => {
                let Some(n) = pick_item(&self.model, slot, is_time) else {
                    return Ok(());
                };
                // Refused when the lead does not hold it (never shared) or deleted it.
                let _ = self.net.when(
                    &alice(),
                    Command::EditTime {
                        item: self.model.items[n].id,
                        patch: TimePatch {
                            hours: Some(hours),
                            offset_hours: Some(Decimal::ZERO),
                            ..TimePatch::default()
                        },
                    },
                );
                self.net.flush();
            }
            Op::LeadDeletesPartnerItem { slot } => {
                let Some(n) = pick_item(&self.model, slot, |b| is_time(b) || is_charge(b)) else {
                    return Ok(());
                };
                let kind = if is_time(&self.model.items[n].body) {
                    ItemKind::Time
                } else {
                    ItemKind::Charge
                };
                let _ = self.net.when(
                    &alice(),
                    Command::DeleteItem {
                        item: self.model.items[n].id,
                        kind,
                    },
                );
                self.net.flush();
            }
            Op::Toggle => {
                if self.model.live {
                    step(&mut self.net, &carol(), out(OutsourceCommand::Complete));
                    self.model.live = false;
                } else {
                    step(&mut self.net, &alice(), reject("more to do"));
                    self.model.live = true;
                }
            }
        }
        let want = if self.model.live {
            [OutsourceStatus::Accepted, OutsourceStatus::InProgress]
        } else {
            [OutsourceStatus::WaitingApproval; 2]
        };
        for side in [LEAD, PARTNER] {
            prop_assert!(
                want.contains(&self.net.status(side)),
                "{} is {}",
                side,
                self.net.status(side)
            );
        }
        Ok(())
    }

    /// `bill` on both sides equals the model.
    fn check(&self, when: &str) -> Result<(), TestCaseError> {
        let want = self.model.bill();
        let minor = minor_units(self.model.terms.last().expect("terms").currency);
        for side in [LEAD, PARTNER] {
            let got = bill(self.net.ticket(side), link1());
            prop_assert_eq!(got.as_ref(), Some(&want), "{}'s bill {}", side, when);
            // A rounded amount is shown with exactly the currency's digits (25.00 EUR).
            for (g, w) in got.expect("bill").lines.iter().zip(&want.lines) {
                if w.amount.scale() == minor {
                    prop_assert_eq!(
                        g.amount.scale(),
                        minor,
                        "{}: amount {} is not shown with the currency's digits",
                        side,
                        g.amount
                    );
                }
            }
        }
        Ok(())
    }
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let terms: Vec<Terms> = case.terms.iter().map(TermsSpec::terms).collect();
    for (spec, t) in case.terms.iter().zip(&terms) {
        prop_assert_eq!(
            t.currency.minor_units(),
            minor_units(spec.currency),
            "minor units of {}",
            spec.currency
        );
    }
    let mut sim = Sim {
        net: sent_with(&terms),
        model: Model {
            terms: case.terms.clone(),
            items: vec![],
            live: false,
        },
        next_item: 0,
    };
    for op in &case.before_acceptance {
        if matches!(op, Op::Time { .. } | Op::Charge { .. } | Op::Note) {
            sim.run_before_acceptance(op)?;
        }
    }
    step(&mut sim.net, &carol(), accept());
    sim.model.live = true;
    sim.check("after acceptance")?;
    for (n, op) in case.ops.iter().enumerate() {
        sim.run(op)?;
        sim.check(&format!("after step {n} ({op:?})"))?;
    }
    // Completion and approval change nothing in the bill, and give the lead its cost line.
    if sim.model.live {
        step(&mut sim.net, &carol(), out(OutsourceCommand::Complete));
    }
    step(&mut sim.net, &alice(), out(OutsourceCommand::Approve));
    prop_assert_eq!(sim.net.status(LEAD), OutsourceStatus::Complete);
    prop_assert_eq!(sim.net.status(PARTNER), OutsourceStatus::Complete);
    sim.check("after approval")?;
    let want = sim.model.bill();
    let (cost, note_id) = completion_item_ids(link1());
    match &sim.net.item(LEAD, cost).body {
        ItemBody::Charge(c) => {
            prop_assert_eq!(c.unit_cost, want.subtotal, "cost line");
            prop_assert!(!c.billable, "the cost line is billable");
        }
        other => prop_assert!(false, "the cost line is {:?}", other),
    }
    match &sim.net.item(LEAD, note_id).body {
        ItemBody::Note { text, internal } => {
            prop_assert!(*internal, "the summary note is not internal");
            let offset = sim.model.offset();
            let mentions = text.contains(" h offset");
            prop_assert_eq!(mentions, !offset.is_zero(), "offset {}: {}", offset, text);
            if !offset.is_zero() {
                let offset_text = format!("{} h offset", offset.normalize());
                prop_assert!(text.contains(&offset_text), "{}", text);
            }
            let total_text = format!("total {} {}", want.subtotal, want.currency);
            prop_assert!(text.contains(&total_text), "{}", text);
        }
        other => prop_assert!(false, "the summary note is {:?}", other),
    }
    Ok(())
}

impl Sim {
    /// The partner's work while Assigned: accepted, kept on its side.
    fn run_before_acceptance(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let sent = self.net.sent();
        self.run_unchecked_status(op)?;
        prop_assert_eq!(self.net.sent(), sent, "work before acceptance was sent");
        Ok(())
    }

    fn run_unchecked_status(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Time {
                hours,
                offset,
                billable,
                ..
            } => {
                let id = self.new_id();
                let offset = (*offset).min(*hours);
                step(
                    &mut self.net,
                    &carol(),
                    add_time(id, *hours, offset, *billable, ""),
                );
                self.model.add(
                    id,
                    true,
                    MBody::Time {
                        hours: *hours,
                        offset,
                        billable: *billable,
                        summary: String::new(),
                    },
                );
            }
            Op::Charge {
                quantity,
                price,
                billable,
            } => {
                let id = self.new_id();
                step(
                    &mut self.net,
                    &carol(),
                    add_parts(id, *quantity, *price, *billable),
                );
                self.model.add(
                    id,
                    true,
                    MBody::Charge {
                        quantity: *quantity,
                        price: *price,
                        billable: *billable,
                    },
                );
            }
            _ => {
                let id = self.new_id();
                step(&mut self.net, &carol(), note(id, "looking", false));
                self.model.add(id, true, MBody::Note);
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any terms negotiation, then any work by both sides while the link is live: the bill
    /// on both instances equals the model after every step, and after approval.
    #[test]
    fn bill_equals_the_model_on_both_sides(case in case_strategy(false)) {
        run_case(&case)?;
    }

    /// The same with periods where the link is not live (completion then rejection) and
    /// the lead's local edits and deletes of the partner's items.
    #[test]
    fn bill_equals_the_model_on_both_sides_across_pauses_and_local_changes(
        case in case_strategy(true)
    ) {
        run_case(&case)?;
    }
}
