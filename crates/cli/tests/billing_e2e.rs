//! End-to-end tests of billing between two real instances (`acme`, the lead, and `bolt`,
//! the partner) over a real nats-server, with `sync run --once` as the synchronisation
//! step: the invoice both sides compute for a completed link (same digest, lines and
//! total), the partner's invoice number and printable invoice, the lead's record of the
//! work, rebuilds, `--as-of`, the reports, and terms refused before anything is appended.

mod common;
#[path = "common/two.rs"]
mod two;

use std::str::FromStr;

use common::{json, USAGE};
use rust_decimal::Decimal;
use serde_json::Value;
use two::*;

fn dec(v: &Value) -> Decimal {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"));
    Decimal::from_str(s).unwrap_or_else(|e| panic!("not a decimal ({e}): {s:?}"))
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("test decimal")
}

fn invoice(site: &Site, id: &str, extra: &[&str]) -> Value {
    let mut args = vec!["invoice", "show", id, "--json"];
    args.extend_from_slice(extra);
    json(&site.ok(&args))
}

fn rows(site: &Site, args: &[&str]) -> Vec<Value> {
    match json(&site.ok(args)) {
        Value::Array(a) => a,
        other => panic!("`{}` is not an array: {other}", args.join(" ")),
    }
}

/// The one row of `rows` about ticket `id`.
#[track_caller]
fn row_of(rows: &[Value], id: &str) -> Value {
    let found: Vec<&Value> = rows.iter().filter(|r| r["ticket"] == id).collect();
    assert_eq!(found.len(), 1, "rows about {id}: {rows:?}");
    found[0].clone()
}

/// The log position of the last `time_added` in the ticket's history on `site`.
fn last_time_added(site: &Site, id: &str) -> u64 {
    site.show(id)["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|h| h["type"] == "time_added")
        .map(|h| h["position"].as_u64().expect("position"))
        .max()
        .unwrap_or_else(|| panic!("no time_added in {}'s history", site.name))
}

#[test]
fn given_a_completed_link_when_both_sides_compute_the_invoice_then_they_agree_line_for_line_and_every_view_shows_the_same_numbers(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = acme.create("Replace the core switch");
    acme.ok(&[
        "outsource",
        "send",
        &id,
        "--to",
        "bolt",
        "--hourly-rate",
        "85.50",
        "--currency",
        "EUR",
        "--authorized-hours",
        "5",
        "--rounding",
        "half-even",
        "--respond-within",
        "2d",
    ]);
    deliver(&acme, &bolt);
    bolt.ok(&["outsource", "accept", &id]);
    deliver(&bolt, &acme);
    assert_status(&acme, &bolt, &id, "Accepted");

    // The partner's work: 2 h billable (0.5 offset), 1.25 h, a charge, then 2.75 h
    // billable (0.25 offset) that takes the running hours over the 5 authorized.
    let t1 = bolt.add(&[
        "time",
        "add",
        &id,
        "--hours",
        "2.5",
        "--offset",
        "0.5",
        "--summary",
        "diagnosis",
    ]);
    let t2 = bolt.add(&[
        "time",
        "add",
        &id,
        "--hours",
        "1.25",
        "--summary",
        "cabling",
    ]);
    let c1 = bolt.add(&[
        "charge",
        "add",
        &id,
        "--description",
        "Patch cables",
        "--quantity",
        "2",
        "--unit-cost",
        "10",
        "--unit-price",
        "12.5",
    ]);
    let t3 = bolt.add(&[
        "time",
        "add",
        &id,
        "--hours",
        "3",
        "--offset",
        "0.25",
        "--summary",
        "switch swap",
    ]);
    // The lead's own time is never billed.
    let lead_time = acme.add(&[
        "time",
        "add",
        &id,
        "--hours",
        "4",
        "--summary",
        "supervision",
    ]);
    settle(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "In Progress");
    bolt.ok(&["outsource", "complete", &id]);
    deliver(&bolt, &acme);
    acme.ok(&["outsource", "approve", &id]);
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Complete");

    // --- invoice show --json: the same on both sides
    let li = invoice(&acme, &id, &[]);
    let pi = invoice(&bolt, &id, &[]);
    let digest = pi["digest"].as_str().expect("digest").to_string();
    assert!(common::is_hex_hash(&digest), "digest {digest:?}");
    assert_eq!(li["digest"], pi["digest"], "lines digests differ");
    assert_eq!(li["lines"], pi["lines"], "lines differ");
    assert_eq!(li["total"], pi["total"]);
    assert_eq!(pi["currency"], "EUR");
    assert_eq!(pi["terms_version"], 1);
    assert_eq!(
        (li["role"].as_str(), pi["role"].as_str()),
        (Some("lead"), Some("partner"))
    );
    for i in [&li, &pi] {
        assert_eq!(i["issuer"], "bolt");
        assert_eq!(i["bill_to"]["instance"], "acme");
    }

    let lines = pi["lines"].as_array().expect("lines");
    let items: Vec<&str> = lines
        .iter()
        .map(|l| l["item"].as_str().expect("item"))
        .collect();
    assert_eq!(
        items,
        [t1.as_str(), t2.as_str(), c1.as_str(), t3.as_str()],
        "the partner's items in order, the lead's time ({lead_time}) not among them"
    );
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| l["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["time", "time", "charge", "time"]);
    let amounts: Vec<&str> = lines
        .iter()
        .map(|l| l["amount"].as_str().expect("amount"))
        .collect();
    // 2 x 85.50 = 171; 1.25 x 85.50 = 106.875 -> 106.88 (half-even: 7 is odd);
    // 2 x 12.50 = 25; 2.75 x 85.50 = 235.125 -> 235.12 (half-even: 2 is even)
    assert_eq!(amounts, ["171.00", "106.88", "25.00", "235.12"]);
    assert_eq!(dec(&lines[0]["billable_hours"]), d("2"));
    assert_eq!(dec(&lines[0]["offset_hours"]), d("0.5"));
    assert_eq!(dec(&lines[0]["unit_price"]), d("85.5"));
    assert_eq!(dec(&lines[3]["billable_hours"]), d("2.75"));
    let over: Vec<bool> = lines
        .iter()
        .map(|l| l["over_authorized_hours"].as_bool().expect("flag"))
        .collect();
    assert_eq!(
        over,
        [false, false, false, true],
        "6 h > 5 h on the last line"
    );
    assert_eq!(pi["total"], "538.00");
    assert_eq!(dec(&pi["billable_hours"]), d("6"));
    assert_eq!(pi["over_authorized_hours"], true);
    assert_eq!(pi["over_authorized_charge"], false);

    // --- invoice list: numbered in the partner's sequence, received on the lead
    let plist = rows(&bolt, &["invoice", "list", "--json"]);
    assert_eq!(plist.len(), 1, "{plist:?}");
    assert_eq!(plist[0]["number"], "BOLT-000001");
    assert_eq!(plist[0]["role"], "partner");
    assert_eq!(plist[0]["total"], "538.00");
    assert_eq!(plist[0]["digest"], digest.as_str());
    assert_eq!(plist[0]["ticket"]["id"], id.as_str());
    let llist = rows(&acme, &["invoice", "list", "--json"]);
    assert_eq!(llist.len(), 1, "{llist:?}");
    assert_eq!(llist[0]["role"], "lead");
    assert_eq!(llist[0]["total"], "538.00");
    assert_eq!(llist[0]["digest"], digest.as_str());
    assert_eq!(pi["number"], "BOLT-000001");
    let by_number = invoice(&bolt, "BOLT-000001", &[]);
    assert_eq!(by_number["digest"], digest.as_str());

    // --- the partner's statement (invoice_issued) reaches the lead, which checks it
    assert_eq!(pi["stated"]["lines_digest"], digest.as_str(), "{pi}");
    assert_eq!(pi["agrees"], true, "{pi}");
    assert_eq!(li["stated"], Value::Null, "not delivered yet: {li}");
    assert_eq!(li["agrees"], Value::Null, "{li}");
    deliver(&bolt, &acme);
    let li = invoice(&acme, &id, &[]);
    assert_eq!(li["number"], "BOLT-000001", "{li}");
    assert_eq!(li["stated"]["lines_digest"], digest.as_str(), "{li}");
    assert_eq!(li["stated"]["subtotal"], "538.00", "{li}");
    assert_eq!(li["stated"]["lines"], 4, "{li}");
    assert_eq!(li["agrees"], true, "{li}");
    assert_eq!(
        invoice(&acme, "BOLT-000001", &[])["digest"],
        digest.as_str(),
        "the lead finds the invoice by the partner's number"
    );
    assert!(
        acme.ok(&["invoice", "show", &id])
            .contains("agrees line for line"),
        "the lead's text view says the invoices agree"
    );
    for site in [&acme, &bolt] {
        let v = json(&site.ok(&["verify", "--json"]));
        assert_eq!(v["ok"], true, "verify on {}: {v}", site.name);
        assert_eq!(v["invoices"]["checked"], 1, "verify on {}: {v}", site.name);
    }
    // Exactly one statement, however often the daemons run again.
    settle(&acme, &bolt);
    for site in [&acme, &bolt] {
        let issued = site
            .ok(&["replay", "--json"])
            .lines()
            .filter(|l| l.contains("\"invoice_issued\""))
            .count();
        assert_eq!(issued, 1, "invoice_issued events on {}", site.name);
    }

    // --- the printable invoice
    let html = bolt.ok(&["invoice", "show", "BOLT-000001", "--html"]);
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.trim_end().ends_with("</html>"), "{html}");
    assert!(
        html.contains("<title>Invoice BOLT-000001</title>"),
        "{html}"
    );
    assert!(html.contains("538.00 EUR"), "no total in {html}");
    assert!(html.contains("Patch cables"), "{html}");
    assert!(html.contains(&digest), "{html}");

    // --- the lead's ticket records the work: one non-billable cost line and a note
    let lv = acme.show(&id);
    let items = items_of(&lv);
    let costs: Vec<&Value> = items
        .iter()
        .filter(|i| i["kind"] == "charge" && i["author"]["instance"] == "acme")
        .collect();
    assert_eq!(costs.len(), 1, "the lead's charges: {costs:?}");
    assert_eq!(costs[0]["billable"], false);
    assert_eq!(dec(&costs[0]["unit_cost"]), d("538.00"));
    assert_eq!(dec(&costs[0]["quantity"]), d("1"));
    let notes: Vec<&Value> = items
        .iter()
        .filter(|i| {
            i["kind"] == "note"
                && i["author"]["instance"] == "acme"
                && i["text"].as_str().is_some_and(|t| t.contains("complete"))
        })
        .collect();
    assert_eq!(notes.len(), 1, "the summary notes: {notes:?}");
    assert_eq!(notes[0]["internal"], true);
    let text = notes[0]["text"].as_str().expect("text");
    assert!(text.contains("0.75 h offset"), "{text}");
    assert!(text.contains("6.75 h worked"), "{text}");
    assert!(text.contains("538.00 EUR"), "{text}");
    assert!(
        !bolt.show(&id).to_string().contains("Outsourced to bolt"),
        "the partner got the lead's cost line"
    );

    // --- --as-of the position before the last time entry: the smaller total
    for site in [&acme, &bolt] {
        let before = (last_time_added(site, &id) - 1).to_string();
        let then = invoice(site, &id, &["--as-of", &before]);
        assert_eq!(then["total"], "302.88", "on {}", site.name); // 171 + 106.88 + 25
        assert_eq!(then["lines"].as_array().map(Vec::len), Some(3));
        assert_eq!(then["over_authorized_hours"], false, "on {}", site.name);
    }
    let before = (last_time_added(&bolt, &id) - 1).to_string();
    assert_eq!(
        invoice(
            &acme,
            &id,
            &["--as-of", &(last_time_added(&acme, &id) - 1).to_string()]
        )["digest"],
        invoice(&bolt, &id, &["--as-of", &before])["digest"],
        "the earlier bill differs between the sides"
    );

    // --- rebuild keeps the digest and the number
    for site in [&acme, &bolt] {
        let r = json(&site.ok(&["rebuild", "--json"]));
        assert_eq!(r["identical"], true, "rebuild on {}: {r}", site.name);
        let again = invoice(site, &id, &[]);
        assert_eq!(again["digest"], digest.as_str(), "on {}", site.name);
        assert_eq!(again["total"], "538.00", "on {}", site.name);
    }
    assert_eq!(invoice(&bolt, &id, &[])["number"], "BOLT-000001");
    let plist = rows(&bolt, &["invoice", "list", "--json"]);
    assert_eq!(plist.len(), 1, "{plist:?}");
    assert_eq!(plist[0]["number"], "BOLT-000001");

    // --- report summary
    for (site, counterparty, role) in [(&acme, "bolt", "lead"), (&bolt, "acme", "partner")] {
        let r = row_of(&rows(site, &["report", "summary", "--json"]), &id);
        assert_eq!(r["partner"], counterparty, "on {}: {r}", site.name);
        assert_eq!(r["role"], role, "on {}: {r}", site.name);
        assert_eq!(r["outsource_status"], "Complete", "on {}: {r}", site.name);
        assert_eq!(dec(&r["hours"]), d("6.75"), "on {}: {r}", site.name);
        assert_eq!(dec(&r["billable_hours"]), d("6"), "on {}: {r}", site.name);
        assert_eq!(r["charges"], "25.00", "on {}: {r}", site.name);
        assert_eq!(r["amount"], "538.00", "on {}: {r}", site.name);
        assert_eq!(r["currency"], "EUR", "on {}: {r}", site.name);
        assert_eq!(dec(&r["authorized_hours"]), d("5"), "on {}: {r}", site.name);
        assert_eq!(r["over_authorized"], true, "on {}: {r}", site.name);
    }

    // --- report status
    for (site, counterparty, direction) in
        [(&acme, "bolt", "outsourced"), (&bolt, "acme", "received")]
    {
        let r = row_of(&rows(site, &["report", "status", "--json"]), &id);
        assert_eq!(r["direction"], direction, "on {}: {r}", site.name);
        assert_eq!(r["partner"], counterparty, "on {}: {r}", site.name);
        assert_eq!(r["outsource_status"], "Complete", "on {}: {r}", site.name);
        assert!(r["sent_at"].is_string(), "on {}: {r}", site.name);
        let age = r["age_hours"].as_f64().expect("age_hours");
        assert!(
            (0.0..1.0).contains(&age),
            "age {age} h on {}: {r}",
            site.name
        );
    }
}

#[test]
fn given_bad_terms_when_sending_countering_or_revising_then_exit_2_and_nothing_is_appended() {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = acme.create("Fix the badge reader");
    let send = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["outsource", "send", &id, "--to", "bolt"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let bad_sends: [&[&str]; 7] = [
        &["--hourly-rate", "-5", "--currency", "EUR"],
        &["--flat-rate", "-100", "--currency", "EUR"],
        &["--hourly-rate", "80", "--currency", "XYZ"],
        &[
            "--hourly-rate",
            "80",
            "--flat-rate",
            "500",
            "--currency",
            "EUR",
        ],
        &[
            "--hourly-rate",
            "80",
            "--currency",
            "EUR",
            "--rounding",
            "sideways",
        ],
        &[
            "--hourly-rate",
            "80",
            "--currency",
            "EUR",
            "--authorized-hours",
            "-1",
        ],
        &["--hourly-rate", "80.123456", "--currency", "EUR"],
    ];
    for extra in bad_sends {
        let args = send(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = acme.refused(&args, USAGE);
        assert!(err.starts_with("error: "), "{err}");
        assert_eq!(
            acme.outsource_status(&id),
            None,
            "the ticket was outsourced by `{}`",
            args.join(" ")
        );
    }
    acme.sync();
    assert!(!bolt.has_ticket(&id), "a refused send reached the partner");

    // Valid terms go through; then bad counter-offers and revisions are refused alike.
    acme.ok(&send(&["--hourly-rate", "80", "--currency", "EUR"])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Assigned");
    let bad_counters: [&[&str]; 3] = [
        &["--hourly-rate", "-1"],
        &["--currency", "EURO"],
        &["--rounding", "nearest"],
    ];
    for extra in bad_counters {
        let mut args = vec!["outsource", "counter", id.as_str()];
        args.extend_from_slice(extra);
        bolt.refused(&args, USAGE);
        let mut args = vec!["outsource", "revise", id.as_str()];
        args.extend_from_slice(extra);
        acme.refused(&args, USAGE);
    }
    settle(&acme, &bolt);
    for site in [&acme, &bolt] {
        let v = site.show(&id);
        assert_eq!(v["outsource"]["terms_version"], 1, "on {}: {v}", site.name);
        assert_eq!(v["outsource"]["terms"]["rate"], "80", "on {}", site.name);
    }
}

/// A live link (80 EUR an hour) with one 1 h entry by the partner, delivered to the lead.
fn live_with_one_entry(acme: &Site, bolt: &Site, title: &str) -> (String, String) {
    let id = live(acme, bolt, title);
    let entry = bolt.add(&["time", "add", &id, "--hours", "1"]);
    settle(acme, bolt);
    assert_status(acme, bolt, &id, "In Progress");
    let (li, pi) = (invoice(acme, &id, &[]), invoice(bolt, &id, &[]));
    assert_eq!(pi["total"], "80.00");
    assert_eq!(li["digest"], pi["digest"]);
    (id, entry)
}

#[test]
fn given_an_entry_the_lead_deleted_on_its_side_when_the_partner_edits_it_then_both_invoices_still_agree(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let (id, entry) = live_with_one_entry(&acme, &bolt, "Replace the UPS battery");
    // The lead removes the partner's entry from its own view only.
    acme.ok(&["time", "delete", &id, &entry]);
    settle(&acme, &bolt);
    assert_eq!(
        invoice(&acme, &id, &[])["digest"],
        invoice(&bolt, &id, &[])["digest"],
        "a local delete on the lead's side changed its invoice"
    );
    // The partner corrects its entry while the link is live: the edit is shared.
    bolt.ok(&["time", "edit", &id, &entry, "--hours", "4"]);
    settle(&acme, &bolt);
    let (li, pi) = (invoice(&acme, &id, &[]), invoice(&bolt, &id, &[]));
    assert_eq!(pi["total"], "320.00");
    assert_eq!(
        (li["total"].clone(), li["digest"].clone()),
        (pi["total"].clone(), pi["digest"].clone()),
        "the lead and the partner invoice different amounts"
    );
}

#[test]
fn given_an_entry_edited_while_waiting_approval_when_the_partner_edits_it_again_after_rejection_then_both_invoices_still_agree(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let (id, entry) = live_with_one_entry(&acme, &bolt, "Rewire the patch panel");
    bolt.ok(&["outsource", "complete", &id]);
    deliver(&bolt, &acme);
    // Not live: this edit stays on the partner's side (the entry diverges).
    bolt.ok(&["time", "edit", &id, &entry, "--hours", "2"]);
    settle(&acme, &bolt);
    acme.ok(&["outsource", "reject", &id, "--reason", "label the ports"]);
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "In Progress");
    // Live again, but the diverged entry is no longer synchronised.
    bolt.ok(&["time", "edit", &id, &entry, "--hours", "3"]);
    settle(&acme, &bolt);
    let (li, pi) = (invoice(&acme, &id, &[]), invoice(&bolt, &id, &[]));
    assert_eq!(
        li["total"], "80.00",
        "the lead holds the 1 h the partner shared"
    );
    assert_eq!(
        (pi["total"].clone(), pi["digest"].clone()),
        (li["total"].clone(), li["digest"].clone()),
        "the partner invoices a version of the entry the lead never received"
    );
}
