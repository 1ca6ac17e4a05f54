//! End-to-end tests of the item commands of `ticketsync`: notes, time entries, charges and
//! attachments (add, edit, delete), their validation and who may change them.

mod common;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// An instance with ticket #1 created by alice.
fn with_ticket() -> (Ts, String) {
    let ts = Ts::new();
    let id = ts.create("Printer jams");
    (ts, id)
}

fn last_event(ts: &Ts) -> Value {
    ts.replay(&[]).pop().expect("a log entry")
}

// ---------------------------------------------------------------------------------------
// notes
// ---------------------------------------------------------------------------------------

#[test]
fn given_ticket_when_note_add_then_prints_item_id_and_appends_note_added() {
    let (ts, tid) = with_ticket();
    let n = ts.add(&["note", "add", "1", "--text", "  Called the customer.  "]);
    let e = last_event(&ts);
    assert_eq!(e["type"], "note_added");
    assert_eq!(e["ticket_id"], tid.as_str());
    assert_eq!(e["version"], 2);
    assert_eq!(e["data"]["item"], n.as_str());
    assert_eq!(e["data"]["text"], "Called the customer.");
    assert_eq!(e["data"]["internal"], false);
    let v = ts.show("1");
    let i = item(&v, &n);
    assert_eq!(i["kind"], "note");
    assert_eq!(i["text"], "Called the customer.");
    assert_eq!(i["author"]["user"], ALICE);
    assert_eq!(i["deleted"], false);
    assert_eq!(i["internal"], false);
}

#[test]
fn given_ticket_when_internal_note_added_then_it_is_marked_internal() {
    let (ts, _) = with_ticket();
    let n = ts.add(&["note", "add", "1", "--text", "Premium plan", "--internal"]);
    assert_eq!(last_event(&ts)["data"]["internal"], true);
    assert_eq!(item(&ts.show("1"), &n)["internal"], true);
    let out = ts.ok(&["ticket", "show", "1"]);
    assert!(
        out.contains(&format!("{n}  alice@acme [internal]  Premium plan")),
        "{out}"
    );
}

#[test]
fn given_empty_note_text_when_note_add_then_exit_2_and_nothing_appended() {
    let (ts, _) = with_ticket();
    for text in ["", "  ", "\n\t"] {
        let err = ts.refused(&["note", "add", "1", "--text", text], USAGE);
        assert!(err.contains("invalid note: must not be empty"), "{err}");
    }
    let err = ts.refused(&["note", "add", "1", "--text", "bell\u{7}"], USAGE);
    assert!(err.contains("control characters"), "{err}");
}

#[test]
fn given_own_note_when_edited_then_ok_and_the_note_changes() {
    let (ts, _) = with_ticket();
    let n = ts.add(&["note", "add", "1", "--text", "draft"]);
    assert_eq!(ts.ok(&["note", "edit", "1", &n, "--text", "final"]), "ok\n");
    let e = last_event(&ts);
    assert_eq!(e["type"], "note_edited");
    assert_eq!(e["data"]["text"], "final");
    assert_eq!(
        ts.ok(&["note", "edit", "1", &n, "--internal", "true"]),
        "ok\n"
    );
    let v = ts.show("1");
    assert_eq!(item(&v, &n)["text"], "final");
    assert_eq!(item(&v, &n)["internal"], true);
    assert_eq!(ts.log_len(), 4);
}

#[test]
fn given_own_note_when_edited_to_the_same_values_then_unchanged_and_nothing_appended() {
    let (ts, _) = with_ticket();
    let n = ts.add(&["note", "add", "1", "--text", "same"]);
    let before = ts.ok(&["replay", "--json"]);
    assert_eq!(
        ts.ok(&[
            "note",
            "edit",
            "1",
            &n,
            "--text",
            " same ",
            "--internal",
            "false"
        ]),
        "unchanged\n"
    );
    assert_eq!(ts.ok(&["replay", "--json"]), before);
}

#[test]
fn given_note_when_edit_has_no_fields_then_exit_2_and_nothing_appended() {
    let (ts, _) = with_ticket();
    let n = ts.add(&["note", "add", "1", "--text", "x"]);
    let err = ts.refused(&["note", "edit", "1", &n], USAGE);
    assert!(err.contains("--text"), "{err}");
    let err = ts.refused(&["note", "edit", "1", &n, "--text", ""], USAGE);
    assert!(err.contains("must not be empty"), "{err}");
}

#[test]
fn given_note_by_alice_when_bob_edits_or_deletes_it_then_refused_exit_3_and_nothing_appended() {
    let (ts, _) = with_ticket();
    let n = ts.add(&["note", "add", "1", "--text", "alice's"]);
    let err = ts.refused_as(BOB, &["note", "edit", "1", &n, "--text", "bob's"], REFUSED);
    assert!(
        err.contains("was added by alice@acme, and only its author may change it"),
        "{err}"
    );
    let err = ts.refused_as(BOB, &["note", "delete", "1", &n], REFUSED);
    assert!(err.contains("only its author"), "{err}");
    // Via --as, too.
    ts.refused(&["--as", BOB, "note", "delete", "1", &n], REFUSED);
    assert_eq!(item(&ts.show("1"), &n)["text"], "alice's");
    // Bob may still add his own note and change it.
    let b = ts.add_as(BOB, &["note", "add", "1", "--text", "bob's own"]);
    assert_eq!(
        ts.ok_as(BOB, &["note", "edit", "1", &b, "--text", "bob's edit"]),
        "ok\n"
    );
    ts.refused(
        &["note", "edit", "1", &b, "--text", "alice's edit"],
        REFUSED,
    );
}

#[test]
fn given_own_note_when_deleted_then_ok_and_it_is_marked_deleted_and_cannot_be_changed() {
    let (ts, _) = with_ticket();
    let n = ts.add(&["note", "add", "1", "--text", "oops"]);
    assert_eq!(ts.ok(&["note", "delete", "1", &n]), "ok\n");
    let e = last_event(&ts);
    assert_eq!(e["type"], "item_deleted");
    assert_eq!(e["data"]["item"], n.as_str());
    assert_eq!(e["data"]["kind"], "note");
    let v = ts.show("1");
    assert_eq!(item(&v, &n)["deleted"], true);
    let out = ts.ok(&["ticket", "show", "1"]);
    assert!(out.contains("items (0):"), "{out}");
    assert!(out.contains("(1 deleted;"), "{out}");
    let err = ts.refused(&["note", "delete", "1", &n], REFUSED);
    assert!(err.contains("is deleted"), "{err}");
    let err = ts.refused(&["note", "edit", "1", &n, "--text", "back"], REFUSED);
    assert!(err.contains("is deleted"), "{err}");
}

#[test]
fn given_unknown_item_when_edit_or_delete_then_exit_5_and_nothing_appended() {
    let (ts, _) = with_ticket();
    let missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let commands: Vec<Vec<&str>> = vec![
        vec!["note", "edit", "1", missing, "--text", "x"],
        vec!["note", "delete", "1", missing],
        vec!["time", "edit", "1", missing, "--hours", "1"],
        vec!["time", "delete", "1", missing],
        vec!["charge", "edit", "1", missing, "--quantity", "1"],
        vec!["charge", "delete", "1", missing],
        vec!["attach", "delete", "1", missing],
    ];
    for args in &commands {
        let err = ts.refused(args, NOT_FOUND);
        assert!(
            err.contains(&format!("item {missing} not found")),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn given_item_on_another_ticket_when_edited_through_the_wrong_ticket_then_exit_5() {
    let (ts, _) = with_ticket();
    ts.create("Other");
    let n = ts.add(&["note", "add", "1", "--text", "on one"]);
    ts.refused(&["note", "edit", "2", &n, "--text", "x"], NOT_FOUND);
    ts.refused(&["note", "delete", "#2", &n], NOT_FOUND);
}

#[test]
fn given_malformed_item_id_when_edit_or_delete_then_exit_2_and_nothing_appended() {
    let (ts, _) = with_ticket();
    for args in [
        vec!["note", "edit", "1", "not-a-ulid", "--text", "x"],
        vec!["time", "delete", "1", "123"],
        vec!["charge", "delete", "1", "ZZZZ"],
        vec!["attach", "delete", "1", "x"],
    ] {
        let err = ts.refused(&args, USAGE);
        assert!(err.contains("is not a ULID"), "{args:?}: {err}");
    }
}

#[test]
fn given_note_when_edited_or_deleted_as_another_kind_then_refused_exit_3() {
    let (ts, _) = with_ticket();
    let n = ts.add(&["note", "add", "1", "--text", "a note"]);
    let err = ts.refused(&["time", "edit", "1", &n, "--hours", "1"], REFUSED);
    assert!(err.contains("is a note, not a time entry"), "{err}");
    ts.refused(&["charge", "delete", "1", &n], REFUSED);
    ts.refused(&["attach", "delete", "1", &n], REFUSED);
    assert_eq!(item(&ts.show("1"), &n)["deleted"], false);
}

// ---------------------------------------------------------------------------------------
// time
// ---------------------------------------------------------------------------------------

#[test]
fn given_ticket_when_time_added_then_entry_and_totals_are_recorded() {
    let (ts, _) = with_ticket();
    let t = ts.add(&[
        "time",
        "add",
        "1",
        "--hours",
        "1.50",
        "--offset",
        "0.25",
        "--summary",
        "Replaced roller",
        "--role",
        "Technician",
        "--resource",
        "Carol",
        "--date",
        "2024-05-06",
    ]);
    let e = last_event(&ts);
    assert_eq!(e["type"], "time_added");
    let d = &e["data"];
    assert_eq!(d["item"], t.as_str());
    assert_eq!(d["hours"], "1.5");
    assert_eq!(d["offset_hours"], "0.25");
    assert_eq!(d["resource"], "Carol");
    assert_eq!(d["role"], "Technician");
    assert_eq!(d["summary"], "Replaced roller");
    assert_eq!(d["date"], "2024-05-06");
    assert_eq!(d["billable"], true);
    let v = ts.show("1");
    assert_eq!(item(&v, &t)["kind"], "time");
    assert_eq!(v["totals"]["hours"], "1.5");
    assert_eq!(v["totals"]["billable_hours"], "1.25");
}

#[test]
fn given_time_without_resource_or_date_when_added_then_defaults_to_user_and_today() {
    let (ts, _) = with_ticket();
    let before = chrono::Utc::now().date_naive().to_string();
    let t = ts.add(&["time", "add", "1", "--hours", "2"]);
    let after = chrono::Utc::now().date_naive().to_string();
    let v = ts.show("1");
    let i = item(&v, &t);
    assert_eq!(i["resource"], ALICE);
    assert_eq!(i["offset_hours"], "0");
    assert_eq!(i["role"], Value::Null);
    let date = i["date"].as_str().unwrap();
    assert!(date == before || date == after, "{date}");
}

#[test]
fn given_non_billable_time_when_added_then_it_counts_in_hours_but_not_billable_hours() {
    let (ts, _) = with_ticket();
    ts.add(&["time", "add", "1", "--hours", "1"]);
    ts.add(&["time", "add", "1", "--hours", "2", "--non-billable"]);
    let v = ts.show("1");
    assert_eq!(v["totals"]["hours"], "3");
    assert_eq!(v["totals"]["billable_hours"], "1");
    assert_eq!(last_event(&ts)["data"]["billable"], false);
}

#[test]
fn given_invalid_hours_when_time_add_then_exit_2_and_nothing_appended() {
    let (ts, _) = with_ticket();
    let cases: &[(&[&str], &str)] = &[
        (&["--hours", "-1"], "-1 is negative"),
        (&["--hours", "-0.5"], "is negative"),
        (&["--hours", "0"], "must be more than 0"),
        (&["--hours", "24.01"], "more than 24 hours"),
        (&["--hours", "1.555"], "more than 2 decimal places"),
        (&["--hours", "1", "--offset", "-0.5"], "is negative"),
        (
            &["--hours", "1", "--offset", "1.5"],
            "more than the 1 hours worked",
        ),
        (&["--hours", "1", "--resource", "  "], "invalid resource"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["time", "add", "1"];
        args.extend_from_slice(extra);
        let err = ts.refused(&args, USAGE);
        assert!(err.contains(want), "{extra:?}: {err}");
    }
    // The limits themselves are accepted.
    ts.add(&["time", "add", "1", "--hours", "24", "--offset", "24"]);
    ts.add(&["time", "add", "1", "--hours", "0.01"]);
}

#[test]
fn given_missing_hours_when_time_add_then_exit_2_and_nothing_appended() {
    let (ts, _) = with_ticket();
    let err = ts.refused(&["time", "add", "1", "--summary", "no hours"], USAGE);
    assert!(err.contains("--hours is required"), "{err}");
}

#[test]
fn given_malformed_hours_when_time_add_then_one_line_error_exit_2_and_nothing_appended() {
    let (ts, _) = with_ticket();
    for bad in ["abc", "1,5", "1.2.3", "", "1h"] {
        let err = ts.refused(&["time", "add", "1", "--hours", bad], USAGE);
        assert!(err.contains("--hours"), "{bad:?}: {err}");
    }
    let err = ts.refused(
        &["time", "add", "1", "--hours", "1", "--offset", "x"],
        USAGE,
    );
    assert!(err.contains("--offset"), "{err}");
    let err = ts.refused(
        &["time", "add", "1", "--hours", "1", "--date", "2024-13-01"],
        USAGE,
    );
    assert!(err.contains("--date"), "{err}");
}

#[test]
fn given_own_time_entry_when_edited_then_ok_and_totals_follow() {
    let (ts, _) = with_ticket();
    let t = ts.add(&["time", "add", "1", "--hours", "1", "--role", "Tech"]);
    assert_eq!(
        ts.ok(&["time", "edit", "1", &t, "--hours", "3", "--offset", "1", "--role", ""]),
        "ok\n"
    );
    let e = last_event(&ts);
    assert_eq!(e["type"], "time_edited");
    assert_eq!(e["data"]["hours"], "3");
    assert_eq!(e["data"]["role"], Value::Null);
    let v = ts.show("1");
    assert_eq!(v["totals"]["hours"], "3");
    assert_eq!(v["totals"]["billable_hours"], "2");
    assert_eq!(
        ts.ok(&["time", "edit", "1", &t, "--billable", "false"]),
        "ok\n"
    );
    assert_eq!(ts.show("1")["totals"]["billable_hours"], "0");
    let n = ts.log_len();
    assert_eq!(
        ts.ok(&["time", "edit", "1", &t, "--hours", "3.00"]),
        "unchanged\n"
    );
    assert_eq!(ts.log_len(), n);
}

#[test]
fn given_time_entry_when_edit_is_invalid_then_exit_2_and_nothing_appended() {
    let (ts, _) = with_ticket();
    let t = ts.add(&["time", "add", "1", "--hours", "2", "--offset", "1"]);
    let err = ts.refused(&["time", "edit", "1", &t, "--hours", "-2"], USAGE);
    assert!(err.contains("is negative"), "{err}");
    // Lowering the hours below the existing offset is refused too.
    let err = ts.refused(&["time", "edit", "1", &t, "--hours", "0.5"], USAGE);
    assert!(err.contains("offset hours"), "{err}");
    let err = ts.refused(&["time", "edit", "1", &t], USAGE);
    assert!(err.contains("at least one field"), "{err}");
}

#[test]
fn given_time_by_alice_when_bob_edits_or_deletes_it_then_refused_exit_3_and_nothing_appended() {
    let (ts, _) = with_ticket();
    let t = ts.add(&["time", "add", "1", "--hours", "2"]);
    let err = ts.refused_as(BOB, &["time", "edit", "1", &t, "--hours", "8"], REFUSED);
    assert!(err.contains("only its author"), "{err}");
    ts.refused_as(BOB, &["time", "delete", "1", &t], REFUSED);
    assert_eq!(ts.show("1")["totals"]["hours"], "2");
}

#[test]
fn given_own_time_entry_when_deleted_then_it_leaves_the_totals() {
    let (ts, _) = with_ticket();
    let t = ts.add(&["time", "add", "1", "--hours", "2"]);
    ts.add(&["time", "add", "1", "--hours", "1"]);
    assert_eq!(ts.ok(&["time", "delete", "1", &t]), "ok\n");
    assert_eq!(last_event(&ts)["data"]["kind"], "time");
    let v = ts.show("1");
    assert_eq!(item(&v, &t)["deleted"], true);
    assert_eq!(v["totals"]["hours"], "1");
    ts.refused(&["time", "edit", "1", &t, "--hours", "5"], REFUSED);
}

// ---------------------------------------------------------------------------------------
// charges
// ---------------------------------------------------------------------------------------

#[test]
fn given_ticket_when_charge_added_then_charge_and_totals_are_recorded() {
    let (ts, _) = with_ticket();
    let c = ts.add(&[
        "charge",
        "add",
        "1",
        "--description",
        "Pickup roller",
        "--quantity",
        "2",
        "--unit-cost",
        "18.40",
        "--unit-price",
        "29.90",
    ]);
    let e = last_event(&ts);
    assert_eq!(e["type"], "charge_added");
    assert_eq!(e["data"]["item"], c.as_str());
    assert_eq!(e["data"]["description"], "Pickup roller");
    assert_eq!(e["data"]["quantity"], "2");
    assert_eq!(e["data"]["unit_cost"], "18.4");
    assert_eq!(e["data"]["unit_price"], "29.9");
    assert_eq!(e["data"]["billable"], true);
    // Without --unit-price the price is the cost.
    let c2 = ts.add(&[
        "charge",
        "add",
        "1",
        "--description",
        "Travel",
        "--quantity",
        "0.5",
        "--unit-cost",
        "10",
        "--non-billable",
    ]);
    let v = ts.show("1");
    assert_eq!(item(&v, &c2)["unit_price"], "10");
    assert_eq!(item(&v, &c2)["billable"], false);
    assert_eq!(v["totals"]["charges_cost"], "41.8");
    assert_eq!(v["totals"]["charges_price"], "64.8");
}

#[test]
fn given_invalid_money_when_charge_add_then_exit_2_and_nothing_appended() {
    let (ts, _) = with_ticket();
    let base = |q: &'static str, c: &'static str, p: &'static str| -> Vec<&'static str> {
        vec![
            "charge",
            "add",
            "1",
            "--description",
            "Part",
            "--quantity",
            q,
            "--unit-cost",
            c,
            "--unit-price",
            p,
        ]
    };
    let cases = [
        (base("-1", "1", "1"), "invalid quantity: -1 is negative"),
        (base("0", "1", "1"), "invalid quantity: must be more than 0"),
        (
            base("1", "-0.01", "1"),
            "invalid unit cost: -0.01 is negative",
        ),
        (base("1", "1", "-5"), "invalid unit price: -5 is negative"),
        (base("1", "1.00001", "1"), "more than 4 decimal places"),
        (
            base("1", "1000000000001", "1"),
            "is more than 1000000000000",
        ),
    ];
    for (args, want) in &cases {
        let err = ts.refused(args, USAGE);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let err = ts.refused(
        &[
            "charge",
            "add",
            "1",
            "--description",
            " ",
            "--quantity",
            "1",
            "--unit-cost",
            "1",
        ],
        USAGE,
    );
    assert!(
        err.contains("invalid description: must not be empty"),
        "{err}"
    );
    // Zero cost and price are allowed (free parts).
    ts.add(&base("1", "0", "0"));
}

#[test]
fn given_malformed_money_when_charge_add_then_one_line_error_exit_2_and_nothing_appended() {
    let (ts, _) = with_ticket();
    for (flag, bad) in [
        ("--quantity", "two"),
        ("--unit-cost", "1.2.3"),
        ("--unit-cost", "€5"),
        ("--unit-price", "1e3x"),
    ] {
        let mut args = vec![
            "charge",
            "add",
            "1",
            "--description",
            "Part",
            "--quantity",
            "1",
            "--unit-cost",
            "1",
        ];
        match args.iter().position(|a| *a == flag) {
            Some(i) => args[i + 1] = bad,
            None => args.extend([flag, bad]),
        }
        let err = ts.refused(&args, USAGE);
        assert!(err.contains(flag), "{flag} {bad}: {err}");
    }
}

#[test]
fn given_own_charge_when_edited_then_ok_and_totals_follow() {
    let (ts, _) = with_ticket();
    let c = ts.add(&[
        "charge",
        "add",
        "1",
        "--description",
        "Part",
        "--quantity",
        "1",
        "--unit-cost",
        "10",
    ]);
    assert_eq!(
        ts.ok(&[
            "charge",
            "edit",
            "1",
            &c,
            "--quantity",
            "3",
            "--unit-price",
            "12.5"
        ]),
        "ok\n"
    );
    let e = last_event(&ts);
    assert_eq!(e["type"], "charge_edited");
    assert_eq!(e["data"]["quantity"], "3");
    assert_eq!(e["data"]["unit_cost"], "10");
    assert_eq!(e["data"]["unit_price"], "12.5");
    let v = ts.show("1");
    assert_eq!(v["totals"]["charges_cost"], "30");
    assert_eq!(v["totals"]["charges_price"], "37.5");
    let n = ts.log_len();
    assert_eq!(
        ts.ok(&["charge", "edit", "1", &c, "--description", "Part"]),
        "unchanged\n"
    );
    assert_eq!(ts.log_len(), n);
}

#[test]
fn given_charge_when_edit_is_invalid_then_exit_2_and_nothing_appended() {
    let (ts, _) = with_ticket();
    let c = ts.add(&[
        "charge",
        "add",
        "1",
        "--description",
        "Part",
        "--quantity",
        "1",
        "--unit-cost",
        "10",
    ]);
    let err = ts.refused(&["charge", "edit", "1", &c, "--unit-cost", "-10"], USAGE);
    assert!(err.contains("is negative"), "{err}");
    ts.refused(&["charge", "edit", "1", &c, "--quantity", "0"], USAGE);
    ts.refused(&["charge", "edit", "1", &c, "--description", ""], USAGE);
    let err = ts.refused(&["charge", "edit", "1", &c], USAGE);
    assert!(err.contains("at least one field"), "{err}");
}

#[test]
fn given_charge_by_alice_when_bob_edits_or_deletes_it_then_refused_exit_3_and_nothing_appended() {
    let (ts, _) = with_ticket();
    let c = ts.add(&[
        "charge",
        "add",
        "1",
        "--description",
        "Part",
        "--quantity",
        "1",
        "--unit-cost",
        "10",
    ]);
    let err = ts.refused_as(
        BOB,
        &["charge", "edit", "1", &c, "--quantity", "9"],
        REFUSED,
    );
    assert!(err.contains("only its author"), "{err}");
    ts.refused_as(BOB, &["charge", "delete", "1", &c], REFUSED);
    assert_eq!(ts.ok(&["charge", "delete", "1", &c]), "ok\n");
    assert_eq!(ts.show("1")["totals"]["charges_cost"], "0");
}

// ---------------------------------------------------------------------------------------
// attachments
// ---------------------------------------------------------------------------------------

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn given_file_when_attached_then_blob_is_stored_and_item_recorded() {
    let (ts, _) = with_ticket();
    let content = b"roller part no. RM1-0037\n";
    let path = ts.file("part.txt", content);
    let a = ts.add(&["attach", "add", "1", &path]);
    let sha = sha256_hex(content);
    let blob = ts.dir.join("blobs").join(&sha[..2]).join(&sha);
    assert_eq!(std::fs::read(&blob).expect("blob stored"), content);
    let e = last_event(&ts);
    assert_eq!(e["type"], "attachment_added");
    assert_eq!(e["data"]["item"], a.as_str());
    assert_eq!(e["data"]["filename"], "part.txt");
    assert_eq!(e["data"]["size"], content.len());
    assert_eq!(e["data"]["sha256"], sha.as_str());
    assert_eq!(e["data"]["media_type"], "text/plain");
    assert_eq!(e["data"]["internal"], false);
    let v = ts.show("1");
    let i = item(&v, &a);
    assert_eq!(i["kind"], "attachment");
    assert_eq!(i["filename"], "part.txt");
    assert_eq!(i["sha256"], sha.as_str());
    // Same content again: a second item, the same blob.
    let path2 = ts.file("copy.bin", content);
    let a2 = ts.add(&["attach", "add", "1", &path2, "--internal"]);
    let v = ts.show("1");
    assert_eq!(item(&v, &a2)["media_type"], "application/octet-stream");
    assert_eq!(item(&v, &a2)["internal"], true);
    assert_eq!(item(&v, &a2)["sha256"], sha.as_str());
    let blobs = std::fs::read_dir(ts.dir.join("blobs").join(&sha[..2]))
        .unwrap()
        .count();
    assert_eq!(blobs, 1);
}

#[test]
fn given_configured_limit_when_attachment_is_larger_then_exit_2_nothing_appended_nothing_stored() {
    let (ts, _) = with_ticket();
    ts.set_config("max_attachment_bytes", "10");
    let big = ts.file("big.txt", b"0123456789A");
    let err = ts.refused(&["attach", "add", "1", &big], USAGE);
    assert!(
        err.contains("11 bytes, more than the limit of 10 bytes"),
        "{err}"
    );
    assert!(
        !ts.dir.join("blobs").exists(),
        "the oversized file was stored"
    );
    // Exactly at the limit is accepted.
    let ok = ts.file("ok.txt", b"0123456789");
    ts.add(&["attach", "add", "1", &ok]);
    assert_eq!(ts.log_len(), 2);
}

#[test]
fn given_missing_file_or_directory_when_attached_then_exit_2_and_nothing_appended() {
    let (ts, _) = with_ticket();
    let missing = ts.scratch().join("nope.txt");
    let err = ts.refused(&["attach", "add", "1", missing.to_str().unwrap()], USAGE);
    assert!(err.contains("cannot read"), "{err}");
    let dir = ts.scratch().to_str().unwrap().to_string();
    let err = ts.refused(&["attach", "add", "1", &dir], USAGE);
    assert!(err.contains("is not a file"), "{err}");
}

#[test]
fn given_attachment_by_alice_when_bob_deletes_it_then_refused_and_alice_may() {
    let (ts, _) = with_ticket();
    let content = b"evidence";
    let path = ts.file("e.log", content);
    let a = ts.add(&["attach", "add", "1", &path]);
    let err = ts.refused_as(BOB, &["attach", "delete", "1", &a], REFUSED);
    assert!(err.contains("only its author"), "{err}");
    assert_eq!(ts.ok(&["attach", "delete", "1", &a]), "ok\n");
    assert_eq!(last_event(&ts)["data"]["kind"], "attachment");
    assert_eq!(item(&ts.show("1"), &a)["deleted"], true);
    // The content is kept: the log refers to it.
    let sha = sha256_hex(content);
    assert!(ts.dir.join("blobs").join(&sha[..2]).join(&sha).is_file());
    ts.refused(&["attach", "delete", "1", &a], REFUSED);
}
