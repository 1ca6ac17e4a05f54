//! Given / when / then tests of the partner's invoice statement (`IssueInvoice`, the
//! `invoice_issued` event): who may issue it and when, that it goes to the lead after the
//! link has ended, that the lead records it as stated and can compare it with its own
//! bill, and what the lead refuses (a lead's own "invoice", a second different invoice).

mod common;

use common::*;
use ticketsync_domain::billing::{bill, check_invoice, lines_digest, InvoiceCheck, IssuedInvoice};
use ticketsync_domain::sync::QuarantineKind;
use ticketsync_domain::{Command, DomainError, Event, OutsourceCommand, OutsourceStatus};

use OutsourceStatus as S;

fn issue(number: u64) -> Command {
    Command::IssueInvoice {
        link: link1(),
        number,
    }
}

/// Complete after the partner logged `hours` of time and a charge of `quantity` x 12.50.
fn completed_with_work(hours: &str, quantity: &str) -> Net {
    let mut net = Net::at(S::InProgress);
    net.given(&carol(), time(item(1), hours));
    net.given(&carol(), add_charge(item(2), quantity));
    net.flush();
    net.given(&carol(), out(OutsourceCommand::Complete));
    net.flush();
    net.given(&alice(), out(OutsourceCommand::Approve));
    net.flush();
    assert_eq!(net.status(PARTNER), S::Complete);
    net
}

#[test]
fn given_a_link_before_complete_when_the_partner_issues_its_invoice_then_it_is_refused_naming_the_status(
) {
    for status in [
        S::Assigned,
        S::Accepted,
        S::InProgress,
        S::WaitingApproval,
        S::Declined,
        S::Canceled,
        S::Expired,
    ] {
        let mut net = Net::at(status);
        let r = net.when(&carol(), issue(1));
        let text = refusal_text(r);
        assert!(
            text.contains(&format!("outsource status is {status}")),
            "{status}: {text}"
        );
        if matches!(status, S::Assigned | S::Declined | S::Canceled | S::Expired) {
            assert!(text.contains("never accepted"), "{status}: {text}");
        }
        assert!(net.link(LEAD).invoice.is_none() && net.link(PARTNER).invoice.is_none());
    }
}

#[test]
fn given_a_completed_link_when_the_partner_issues_its_invoice_then_it_states_its_bill_and_reaches_the_lead_after_the_link_ended(
) {
    let mut net = completed_with_work("2.5", "2");
    let sent = net.sent();
    let events = net.given(&carol(), issue(42));
    let partner_bill = bill(net.ticket(PARTNER), link1()).expect("a bill");
    let want = IssuedInvoice {
        number: 42,
        terms_version: 1,
        currency: eur(),
        lines: 2,
        subtotal: partner_bill.subtotal,
        lines_digest: lines_digest(&partner_bill),
    };
    assert_eq!(
        events,
        vec![Event::InvoiceIssued {
            link: link1(),
            invoice: want.clone()
        }]
    );
    assert!(partner_bill.subtotal > d("0"), "{partner_bill:?}");
    assert_eq!(net.sent(), sent + 1, "the statement goes to the lead");
    assert_eq!(net.wire.last().map(|m| m.to.as_str()), Some(LEAD));
    net.flush();
    for side in [LEAD, PARTNER] {
        assert_eq!(net.link(side).invoice.as_ref(), Some(&want), "on {side}");
        assert_eq!(
            check_invoice(net.ticket(side), link1()),
            Some(InvoiceCheck::Agrees),
            "on {side}"
        );
    }
}

#[test]
fn given_an_issued_invoice_when_the_partner_issues_again_then_the_same_number_is_a_no_op_and_another_is_refused(
) {
    let mut net = completed_with_work("1", "1");
    net.given(&carol(), issue(3));
    net.flush();
    let sent = net.sent();
    assert_eq!(
        net.given(&carol(), issue(3)),
        vec![],
        "a retry appends nothing"
    );
    let text = refusal_text(net.when(&carol(), issue(4)));
    assert!(text.contains("already invoiced as number 3"), "{text}");
    assert_eq!(net.sent(), sent);
}

#[test]
fn given_a_completed_link_when_the_lead_or_number_zero_issues_then_it_is_refused() {
    let mut net = completed_with_work("1", "1");
    let text = refusal_text(net.when(&alice(), issue(1)));
    assert!(
        text.contains("only the service partner (bolt) issues the invoice"),
        "{text}"
    );
    assert!(matches!(
        net.when(&carol(), issue(0)),
        Err(DomainError::Invalid {
            field: "invoice number",
            ..
        })
    ));
    assert!(net.link(LEAD).invoice.is_none());
}

#[test]
fn given_a_force_completed_link_when_the_partner_issues_then_the_lead_agrees() {
    let mut net = Net::at(S::InProgress);
    net.given(&carol(), time(item(1), "3"));
    net.flush();
    net.given(&alice(), out(OutsourceCommand::ForceComplete));
    net.flush();
    net.given(&carol(), issue(1));
    net.flush();
    assert_eq!(
        check_invoice(net.ticket(LEAD), link1()),
        Some(InvoiceCheck::Agrees)
    );
}

#[test]
fn given_a_partner_statement_that_differs_from_the_leads_bill_then_the_lead_records_it_and_the_check_shows_both(
) {
    let mut net = completed_with_work("2", "1");
    let mut stated = IssuedInvoice::of(&bill(net.ticket(PARTNER), link1()).expect("bill"), 9);
    stated.subtotal += d("100");
    let mut meta = net.wire.last().expect("a message").meta.clone();
    meta.actor = carol();
    net.wire.push(Msg {
        id: 10_000,
        from: inst(PARTNER),
        to: inst(LEAD),
        meta,
        event: Event::InvoiceIssued {
            link: link1(),
            invoice: stated.clone(),
        },
    });
    net.flush();
    assert_eq!(net.link(LEAD).invoice.as_ref(), Some(&stated));
    match check_invoice(net.ticket(LEAD), link1()) {
        Some(InvoiceCheck::Differs {
            stated: s,
            computed,
        }) => {
            assert_eq!(s, stated);
            assert_eq!(computed.subtotal + d("100"), stated.subtotal);
            assert_eq!(computed.lines_digest, stated.lines_digest);
        }
        other => panic!("expected a difference, got {other:?}"),
    }

    // A second, different statement for the same link is quarantined on the lead.
    net.given(&carol(), issue(10));
    let q = net.flush_collect();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].1.kind, QuarantineKind::InvoiceConflict, "{q:?}");
    assert_eq!(
        net.link(LEAD).invoice.as_ref(),
        Some(&stated),
        "the first stands"
    );
    assert_eq!(
        net.link(PARTNER).invoice.as_ref().map(|i| i.number),
        Some(10)
    );
}

#[test]
fn given_an_invoice_event_authored_by_the_lead_when_the_partner_receives_it_then_it_is_quarantined_as_role_forbidden(
) {
    let mut net = completed_with_work("1", "1");
    let b = bill(net.ticket(LEAD), link1()).expect("bill");
    let mut meta = net.wire.last().expect("a message").meta.clone();
    meta.actor = alice();
    net.wire.push(Msg {
        id: 10_001,
        from: inst(LEAD),
        to: inst(PARTNER),
        meta,
        event: Event::InvoiceIssued {
            link: link1(),
            invoice: IssuedInvoice::of(&b, 1),
        },
    });
    let q = net.flush_collect();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].1.kind, QuarantineKind::RoleForbidden, "{q:?}");
    assert!(net.link(PARTNER).invoice.is_none());
}

fn fee(amount: &str, currency: &str) -> Command {
    Command::RecordTransactionFee {
        link: link1(),
        amount: d(amount),
        currency: ticketsync_domain::Currency::parse(currency).expect("currency"),
    }
}

#[test]
fn given_each_status_when_the_lead_records_a_transaction_fee_then_only_an_accepted_link_takes_it_once(
) {
    for status in [S::Assigned, S::Declined, S::Canceled, S::Expired] {
        let mut net = Net::at(status);
        let text = refusal_text(net.when(&alice(), fee("2.50", "EUR")));
        assert!(text.contains("never accepted"), "{status}: {text}");
    }
    for status in [S::Accepted, S::InProgress, S::WaitingApproval, S::Complete] {
        let mut net = Net::at(status);
        let sent = net.sent();
        let events = net.given(&alice(), fee("2.50", "EUR"));
        assert_eq!(events.len(), 1, "{status}");
        assert_eq!(net.sent(), sent, "{status}: a fee never leaves the lead");
        let recorded = net.link(LEAD).transaction_fee.clone().expect("recorded");
        assert_eq!((recorded.amount, recorded.currency), (d("2.5"), eur()));
        assert_eq!(
            net.given(&alice(), fee("2.5", "EUR")),
            vec![],
            "{status}: same fee"
        );
        let text = refusal_text(net.when(&alice(), fee("3", "EUR")));
        assert!(
            text.contains("already carries a fee of 2.5 EUR"),
            "{status}: {text}"
        );
    }
}

#[test]
fn given_an_accepted_link_when_the_partner_or_a_bad_amount_records_a_fee_then_it_is_refused() {
    let mut net = Net::at(S::Accepted);
    let text = refusal_text(net.when(&carol(), fee("1", "EUR")));
    assert!(
        text.contains("only the lead (acme) records transaction fees"),
        "{text}"
    );
    assert_eq!(
        invalid_field(net.when(&alice(), fee("-1", "EUR"))),
        "transaction fee"
    );
    assert_eq!(
        invalid_field(net.when(&alice(), fee("1.5", "JPY"))),
        "transaction fee"
    );
    assert!(net.link(LEAD).transaction_fee.is_none());
}
