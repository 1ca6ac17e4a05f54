//! Portal companies end to end on one real instance (SQLite file, the real binary): the
//! lead registers a subcontractor without an instance of its own, outsources a ticket to
//! it, the company's user works it in the lead's instance with `--portal`, and the lead
//! records the per-acceptance transaction fee exactly once. Nothing goes to any outbox.

mod common;

use common::*;
use serde_json::Value;

fn show(ts: &Ts, id: &str) -> Value {
    json(&ts.ok(&["ticket", "show", id, "--json"]))
}

fn replay_types_by(ts: &Ts, id: &str) -> Vec<(String, String)> {
    json_lines(&ts.ok(&["replay", "--json", "--ticket", id]))
        .iter()
        .map(|l| {
            (
                l["type"].as_str().unwrap_or_default().to_string(),
                l["actor"]["instance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn sent_to_fixit(ts: &Ts, title: &str) -> String {
    let id = ts
        .ok(&["ticket", "create", "--title", title])
        .trim()
        .to_string();
    ts.ok(&[
        "outsource",
        "send",
        &id,
        "--to",
        "fixit",
        "--hourly-rate",
        "60",
        "--currency",
        "EUR",
        "--respond-within",
        "2d",
    ]);
    id
}

#[test]
fn given_a_portal_company_with_a_fee_when_its_user_accepts_then_the_lead_records_the_fee_once_and_nothing_is_replicated(
) {
    let ts = Ts::new();
    let out = ts.ok(&[
        "partner",
        "add-portal",
        "fixit",
        "--transaction-fee",
        "2.50",
        "--currency",
        "EUR",
    ]);
    assert!(out.contains("transaction fee of 2.5 EUR"), "{out}");
    let list = json(&ts.ok(&["partner", "list", "--json"]));
    let fixit = list
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "fixit"))
        .cloned()
        .expect("fixit listed");
    assert_eq!(fixit["kind"], "portal", "{fixit}");
    assert_eq!(fixit["transaction_fee"]["amount"], "2.5", "{fixit}");
    assert_eq!(fixit["transaction_fee"]["currency"], "EUR", "{fixit}");

    let id = sent_to_fixit(&ts, "Air conditioning broken");
    assert_eq!(show(&ts, &id)["outsource_status"], "Assigned");
    assert_eq!(show(&ts, &id)["transaction_fees"], serde_json::json!([]));

    // The company's user accepts in the lead's instance: the partner's side.
    ts.ok_as("carol", &["--portal", "fixit", "outsource", "accept", &id]);
    let v = show(&ts, &id);
    assert_eq!(v["outsource_status"], "Accepted", "{v}");
    let fees = v["transaction_fees"].as_array().expect("fees");
    assert_eq!(fees.len(), 1, "{v}");
    assert_eq!(fees[0]["amount"], "2.5");
    assert_eq!(fees[0]["currency"], "EUR");
    assert_eq!(fees[0]["partner"], "fixit");
    let types = replay_types_by(&ts, &id);
    assert!(
        types.contains(&("outsource_accepted".into(), "fixit".into())),
        "the acceptance is the company's: {types:?}"
    );
    assert!(
        types.contains(&("transaction_fee_recorded".into(), "acme".into())),
        "the fee is the lead's record: {types:?}"
    );

    // The company's time is priced at the terms on the lead's instance; the link starts.
    ts.ok_as(
        "carol",
        &["--portal", "fixit", "time", "add", &id, "--hours", "2"],
    );
    assert_eq!(show(&ts, &id)["outsource_status"], "In Progress");
    let inv = json(&ts.ok(&["invoice", "show", &id, "--json"]));
    assert_eq!(inv["total"], "120.00", "{inv}");
    assert_eq!(inv["issuer"], "fixit", "{inv}");

    // The lead's own moves still are the lead's: the company may not approve.
    ts.refused_as(
        "carol",
        &["--portal", "fixit", "outsource", "approve", &id],
        REFUSED,
    );

    // One fee per acceptance, whatever else happens on the ticket.
    ts.ok_as(
        "carol",
        &[
            "--portal",
            "fixit",
            "note",
            "add",
            &id,
            "--text",
            "Compressor replaced",
        ],
    );
    let n = replay_types_by(&ts, &id)
        .iter()
        .filter(|(t, _)| t == "transaction_fee_recorded")
        .count();
    assert_eq!(n, 1, "fee events");

    // Nothing was queued for anyone: there is no channel at all.
    let v = json(&ts.ok(&["verify", "--json"]));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["channels"], serde_json::json!([]), "{v}");

    let summary = json(&ts.ok(&["report", "summary", "--json"]));
    let row = summary
        .as_array()
        .and_then(|a| a.iter().find(|r| r["ticket"] == id.as_str()))
        .cloned()
        .expect("a summary row");
    assert_eq!(row["transaction_fee"]["amount"], "2.5", "{row}");
    assert_eq!(row["partner"], "fixit", "{row}");
}

#[test]
fn given_a_portal_company_without_a_fee_when_its_user_accepts_then_no_fee_is_recorded() {
    let ts = Ts::new();
    ts.ok(&["partner", "add-portal", "fixit"]);
    let id = sent_to_fixit(&ts, "Door lock");
    ts.ok_as("carol", &["--portal", "fixit", "outsource", "accept", &id]);
    let v = show(&ts, &id);
    assert_eq!(v["outsource_status"], "Accepted", "{v}");
    assert_eq!(v["transaction_fees"], serde_json::json!([]), "{v}");
}

#[test]
fn given_bad_portal_input_then_each_is_refused_with_its_exit_code_and_nothing_is_written() {
    let ts = Ts::new();
    let id = ts
        .ok(&["ticket", "create", "--title", "T"])
        .trim()
        .to_string();
    let e = ts.refused(
        &["--portal", "nobody", "note", "add", &id, "--text", "x"],
        REFUSED,
    );
    assert!(e.contains("nobody is not a portal company"), "{e}");
    for (args, code, says) in [
        (
            vec![
                "partner",
                "add-portal",
                "fixit",
                "--transaction-fee",
                "-1",
                "--currency",
                "EUR",
            ],
            USAGE,
            "negative",
        ),
        (
            vec![
                "partner",
                "add-portal",
                "fixit",
                "--transaction-fee",
                "2.5",
                "--currency",
                "JPY",
            ],
            USAGE,
            "more decimal places than JPY",
        ),
        (
            vec![
                "partner",
                "add-portal",
                "fixit",
                "--transaction-fee",
                "2",
                "--currency",
                "XXX",
            ],
            USAGE,
            "XXX",
        ),
        (
            vec!["partner", "add-portal", "fixit", "--transaction-fee", "2"],
            USAGE,
            "--currency",
        ),
        (vec!["partner", "add-portal", "acme"], USAGE, "own name"),
        (
            vec!["partner", "add-portal", "Not A Name"],
            USAGE,
            "bad portal company name",
        ),
    ] {
        let e = ts.refused(&args, code);
        assert!(e.contains(says), "{args:?}: {e}");
        assert_eq!(
            json(&ts.ok(&["partner", "list", "--json"])),
            serde_json::json!([]),
            "{args:?} registered something"
        );
    }
    ts.ok(&["partner", "add-portal", "fixit"]);
    let e = ts.fail(&["partner", "add-portal", "fixit"], REFUSED);
    assert!(e.contains("already exists"), "{e}");
}
