//! End-to-end tests of what syncs between a lead (`acme`) and its service partner (`bolt`)
//! over a real nats-server, one rule at a time: nothing before acceptance, never anything
//! internal, own edits and deletes, local edits of the other side's items ("diverged"),
//! nothing during Waiting Approval, and attachments with their content.

mod common;
#[path = "common/two.rs"]
mod two;

use serde_json::Value;
use sha2::{Digest, Sha256};
use two::*;

/// Asserts the item is on `site` with this sharing.
#[track_caller]
fn assert_sharing(site: &Site, ticket: &str, item: &str, want: &str) {
    let i = get_item(site, ticket, item);
    assert_eq!(
        i["sharing"], want,
        "sharing of {item} on {}: {i}",
        site.name
    );
}

/// Asserts the item never reached `site`.
#[track_caller]
fn assert_absent(site: &Site, ticket: &str, item: &str) {
    let v = site.show(ticket);
    assert!(
        find_item(&v, item).is_none(),
        "{item} reached {}: {}",
        site.name,
        find_item(&v, item).unwrap_or_default()
    );
}

fn charge(site: &Site, id: &str, description: &str) -> String {
    site.add(&[
        "charge",
        "add",
        id,
        "--description",
        description,
        "--quantity",
        "2",
        "--unit-cost",
        "10",
    ])
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// before acceptance
// ---------------------------------------------------------------------------------------

#[test]
fn given_items_added_before_acceptance_when_both_sides_sync_then_they_are_not_shared_and_never_reach_the_other_side(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = acme.create("Before acceptance");
    let before_send = acme.add(&["note", "add", &id, "--text", "before send"]);
    acme.ok(&[
        "outsource",
        "send",
        &id,
        "--to",
        "bolt",
        "--hourly-rate",
        "80",
    ]);
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Assigned");

    let lead_note = acme.add(&["note", "add", &id, "--text", "while assigned"]);
    let lead_time = acme.add(&["time", "add", &id, "--hours", "1"]);
    let lead_charge = charge(&acme, &id, "cable");
    let partner_note = bolt.add(&["note", "add", &id, "--text", "looking at it"]);
    let partner_time = bolt.add(&["time", "add", &id, "--hours", "0.25"]);
    for i in [&before_send, &lead_note, &lead_time, &lead_charge] {
        assert_sharing(&acme, &id, i, "not shared");
    }
    for i in [&partner_note, &partner_time] {
        assert_sharing(&bolt, &id, i, "not shared");
    }
    // the partner's items while Assigned do not start the work
    assert_eq!(bolt.outsource_status(&id).as_deref(), Some("Assigned"));
    settle(&acme, &bolt);

    bolt.ok(&["outsource", "accept", &id]);
    settle(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Accepted");
    for i in [&before_send, &lead_note, &lead_time, &lead_charge] {
        assert_absent(&bolt, &id, i);
        assert_sharing(&acme, &id, i, "not shared");
    }
    for i in [&partner_note, &partner_time] {
        assert_absent(&acme, &id, i);
        assert_sharing(&bolt, &id, i, "not shared");
    }

    // control: once accepted, new items do travel
    let after = acme.add(&["note", "add", &id, "--text", "after acceptance"]);
    deliver(&acme, &bolt);
    assert_eq!(get_item(&bolt, &id, &after)["text"], "after acceptance");
    assert_eq!((acme.quarantined(), bolt.quarantined()), (0, 0));
}

// ---------------------------------------------------------------------------------------
// internal items
// ---------------------------------------------------------------------------------------

#[test]
fn given_a_live_link_when_either_side_adds_internal_notes_and_attachments_then_they_never_reach_the_other_side(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = live(&acme, &bolt, "Internal items");
    let secret_a = b"acme internal: customer's admin password hint".to_vec();
    let secret_b = b"bolt internal: our margin on this job".to_vec();

    let a_note = acme.add(&["note", "add", &id, "--text", "acme only", "--internal"]);
    let a_file = acme.file("acme-secret.txt", &secret_a);
    let a_att = acme.add(&["attach", "add", &id, &a_file, "--internal"]);
    let a_shared = acme.add(&["note", "add", &id, "--text", "for bolt"]);
    let b_note = bolt.add(&["note", "add", &id, "--text", "bolt only", "--internal"]);
    let b_file = bolt.file("bolt-secret.txt", &secret_b);
    let b_att = bolt.add(&["attach", "add", &id, &b_file, "--internal"]);
    let b_shared = bolt.add(&["note", "add", &id, "--text", "for acme"]);
    settle(&acme, &bolt);

    for i in [&a_note, &a_att] {
        assert_sharing(&acme, &id, i, "internal");
        assert_absent(&bolt, &id, i);
    }
    for i in [&b_note, &b_att] {
        assert_sharing(&bolt, &id, i, "internal");
        assert_absent(&acme, &id, i);
    }
    assert!(
        !bolt.blob_path(&sha256_hex(&secret_a)).exists(),
        "acme's internal attachment content reached bolt"
    );
    assert!(
        !acme.blob_path(&sha256_hex(&secret_b)).exists(),
        "bolt's internal attachment content reached acme"
    );
    // control: the shared notes made it, so the channels did run
    assert_eq!(get_item(&bolt, &id, &a_shared)["text"], "for bolt");
    assert_eq!(get_item(&acme, &id, &b_shared)["text"], "for acme");
    // the senders held them back: the receivers had nothing to refuse
    assert_eq!((acme.quarantined(), bolt.quarantined()), (0, 0));

    // making a shared note internal is refused (exit 3): the flag is fixed once outsourced
    acme.refused(
        &[
            "note",
            "edit",
            &id,
            &a_shared,
            "--text",
            "now private",
            "--internal",
            "true",
        ],
        3,
    );
    settle(&acme, &bolt);
    assert_eq!(get_item(&bolt, &id, &a_shared)["text"], "for bolt");
    assert_eq!((acme.quarantined(), bolt.quarantined()), (0, 0));
}

// ---------------------------------------------------------------------------------------
// own edits and deletes
// ---------------------------------------------------------------------------------------

#[test]
fn given_shared_items_when_their_authors_edit_and_delete_them_then_the_changes_reach_the_other_side(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = live(&acme, &bolt, "Own edits");
    let a_note = acme.add(&["note", "add", &id, "--text", "first"]);
    let a_time = acme.add(&["time", "add", &id, "--hours", "1", "--summary", "call"]);
    let a_charge = charge(&acme, &id, "adapter");
    let b_note = bolt.add(&["note", "add", &id, "--text", "on site"]);
    let b_time = bolt.add(&["time", "add", &id, "--hours", "2"]);
    let b_charge = charge(&bolt, &id, "fuse");
    settle(&acme, &bolt);
    for i in [&a_note, &a_time, &a_charge] {
        assert_sharing(&bolt, &id, i, "shared");
    }
    for i in [&b_note, &b_time, &b_charge] {
        assert_sharing(&acme, &id, i, "shared");
    }

    // edits
    assert_eq!(
        acme.ok(&["note", "edit", &id, &a_note, "--text", "second"]),
        "ok\n"
    );
    acme.ok(&["time", "edit", &id, &a_time, "--hours", "3"]);
    acme.ok(&["charge", "edit", &id, &a_charge, "--quantity", "5"]);
    bolt.ok(&["note", "edit", &id, &b_note, "--text", "on site, fixed"]);
    bolt.ok(&["time", "edit", &id, &b_time, "--hours", "2.75"]);
    bolt.ok(&["charge", "edit", &id, &b_charge, "--unit-cost", "12.5"]);
    settle(&acme, &bolt);

    assert_eq!(get_item(&bolt, &id, &a_note)["text"], "second");
    let t = get_item(&bolt, &id, &a_time);
    assert_eq!(t["kind"], "note", "{t}");
    let text = t["text"].as_str().expect("text");
    assert!(
        text.starts_with("Time logged by alice@acme") && text.contains("3 h"),
        "the lead's time edit must update the partner's note: {text:?}"
    );
    assert_eq!(get_item(&bolt, &id, &a_charge)["quantity"], "5");
    let n = get_item(&acme, &id, &b_note);
    assert_eq!(n["text"], "on site, fixed");
    assert_eq!(
        n["internal"], true,
        "a partner note stays internal on the lead: {n}"
    );
    assert_eq!(get_item(&acme, &id, &b_time)["hours"], "2.75");
    assert_eq!(get_item(&acme, &id, &b_charge)["unit_cost"], "12.5");
    for (site, items) in [
        (
            &acme,
            [&a_note, &a_time, &a_charge, &b_note, &b_time, &b_charge],
        ),
        (
            &bolt,
            [&a_note, &a_time, &a_charge, &b_note, &b_time, &b_charge],
        ),
    ] {
        for i in items {
            let v = get_item(site, &id, i);
            assert_eq!(v["sharing"], "shared", "on {}: {v}", site.name);
            assert_eq!(v["diverged"], false, "on {}: {v}", site.name);
        }
    }

    // deletes
    assert_eq!(acme.ok(&["note", "delete", &id, &a_note]), "ok\n");
    acme.ok(&["time", "delete", &id, &a_time]);
    bolt.ok(&["time", "delete", &id, &b_time]);
    bolt.ok(&["charge", "delete", &id, &b_charge]);
    settle(&acme, &bolt);
    for i in [&a_note, &a_time] {
        let v = get_item(&bolt, &id, i);
        assert_eq!(v["deleted"], true, "{v}");
        assert_eq!(v["sharing"], "shared", "{v}");
    }
    for i in [&b_time, &b_charge] {
        let v = get_item(&acme, &id, i);
        assert_eq!(v["deleted"], true, "{v}");
    }
    let totals = &acme.show(&id)["totals"];
    assert_eq!(totals["hours"], "0", "{totals}");
    assert_eq!(totals["charges_cost"], "50", "{totals}");
    let totals = &bolt.show(&id)["totals"];
    assert_eq!(totals["hours"], "0", "{totals}");
    assert_eq!(totals["charges_cost"], "50", "{totals}");
    assert_eq!((acme.quarantined(), bolt.quarantined()), (0, 0));
}

// ---------------------------------------------------------------------------------------
// edits of the other side's items
// ---------------------------------------------------------------------------------------

#[test]
fn given_a_received_item_when_the_receiving_side_edits_or_deletes_it_then_the_change_stays_local_and_only_that_side_shows_diverged(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = live(&acme, &bolt, "Diverge");
    let b_note = bolt.add(&["note", "add", &id, "--text", "partner wrote this"]);
    let b_charge = charge(&bolt, &id, "partner charge");
    let a_time = acme.add(&["time", "add", &id, "--hours", "1", "--summary", "lead"]);
    settle(&acme, &bolt);
    let a_time_on_bolt = get_item(&bolt, &id, &a_time)["text"].clone();
    let heads = (acme.outbound_heads(), bolt.outbound_heads());

    // the lead edits the partner's note and deletes its charge
    assert_eq!(
        acme.ok(&["note", "edit", &id, &b_note, "--text", "lead's version"]),
        "ok\n"
    );
    assert_eq!(acme.ok(&["charge", "delete", &id, &b_charge]), "ok\n");
    // the partner edits the note the lead's time became
    bolt.ok(&["note", "edit", &id, &a_time, "--text", "partner's version"]);
    assert_eq!(
        (acme.outbound_heads(), bolt.outbound_heads()),
        heads,
        "an edit of the other side's item was queued for sending"
    );
    settle(&acme, &bolt);

    let n = get_item(&acme, &id, &b_note);
    assert_eq!(n["text"], "lead's version");
    assert_eq!(n["sharing"], "diverged", "{n}");
    assert_eq!(n["diverged"], true, "{n}");
    let c = get_item(&acme, &id, &b_charge);
    assert_eq!(
        (&c["deleted"], &c["sharing"]),
        (&Value::Bool(true), &Value::from("diverged"))
    );
    let t = get_item(&bolt, &id, &a_time);
    assert_eq!(t["text"], "partner's version");
    assert_eq!(t["sharing"], "diverged", "{t}");

    // the authors' copies are untouched and not marked
    let n = get_item(&bolt, &id, &b_note);
    assert_eq!(n["text"], "partner wrote this");
    assert_eq!(
        (&n["sharing"], &n["diverged"]),
        (&Value::from("shared"), &Value::Bool(false))
    );
    let c = get_item(&bolt, &id, &b_charge);
    assert_eq!(
        (&c["deleted"], &c["sharing"]),
        (&Value::Bool(false), &Value::from("shared"))
    );
    let t = get_item(&acme, &id, &a_time);
    assert_eq!(
        (&t["kind"], &t["hours"]),
        (&Value::from("time"), &Value::from("1"))
    );
    assert_eq!(
        (&t["sharing"], &t["diverged"]),
        (&Value::from("shared"), &Value::Bool(false))
    );
    assert_ne!(a_time_on_bolt, t["text"]);
    assert_eq!((acme.quarantined(), bolt.quarantined()), (0, 0));
}

// ---------------------------------------------------------------------------------------
// Waiting Approval and after
// ---------------------------------------------------------------------------------------

#[test]
fn given_waiting_approval_when_either_side_adds_or_edits_items_then_they_stay_local_marked_not_shared(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = live(&acme, &bolt, "Review");
    let b_time = bolt.add(&["time", "add", &id, "--hours", "4"]);
    bolt.ok(&["outsource", "complete", &id]);
    deliver(&bolt, &acme);
    assert_status(&acme, &bolt, &id, "Waiting Approval");

    let b_note = bolt.add(&["note", "add", &id, "--text", "forgot one thing"]);
    let b_more = bolt.add(&["time", "add", &id, "--hours", "0.5"]);
    let a_note = acme.add(&["note", "add", &id, "--text", "reviewing"]);
    let a_charge = charge(&acme, &id, "review fee");
    for i in [&b_note, &b_more] {
        assert_sharing(&bolt, &id, i, "not shared");
    }
    for i in [&a_note, &a_charge] {
        assert_sharing(&acme, &id, i, "not shared");
    }
    // an edit of a shared item during review stays local too
    bolt.ok(&["time", "edit", &id, &b_time, "--hours", "5"]);
    assert_sharing(&bolt, &id, &b_time, "diverged");
    settle(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Waiting Approval");
    for i in [&b_note, &b_more] {
        assert_absent(&acme, &id, i);
    }
    for i in [&a_note, &a_charge] {
        assert_absent(&bolt, &id, i);
    }
    assert_eq!(get_item(&acme, &id, &b_time)["hours"], "4");

    // after approval (Complete) nothing is shared either
    acme.ok(&["outsource", "approve", &id]);
    settle(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Complete");
    let late_b = bolt.add(&["note", "add", &id, "--text", "after complete"]);
    let late_a = acme.add(&["note", "add", &id, "--text", "closing"]);
    assert_sharing(&bolt, &id, &late_b, "not shared");
    assert_sharing(&acme, &id, &late_a, "not shared");
    settle(&acme, &bolt);
    assert_absent(&acme, &id, &late_b);
    assert_absent(&bolt, &id, &late_a);
    assert_eq!((acme.quarantined(), bolt.quarantined()), (0, 0));
}

// ---------------------------------------------------------------------------------------
// attachments
// ---------------------------------------------------------------------------------------

#[test]
fn given_a_live_link_when_attachments_are_added_on_either_side_then_each_arrives_with_identical_content(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = live(&acme, &bolt, "Attachments");
    let small = b"Serial: SW-1234\nFirmware: 9.1\n".to_vec();
    let photo = pseudo_random_bytes(40_000, 7);
    let a_file = acme.file("serials.txt", &small);
    let b_file = bolt.file("photo.jpg", &photo);
    let a_att = acme.add(&["attach", "add", &id, &a_file]);
    let b_att = bolt.add(&["attach", "add", &id, &b_file]);
    settle(&acme, &bolt);

    for (site, other, att, bytes, name) in [
        (&bolt, &acme, &a_att, &small, "serials.txt"),
        (&acme, &bolt, &b_att, &photo, "photo.jpg"),
    ] {
        let i = get_item(site, &id, att);
        let sha = sha256_hex(bytes);
        assert_eq!(i["kind"], "attachment", "{i}");
        assert_eq!(i["sha256"], sha.as_str(), "{i}");
        assert_eq!(i["size"], bytes.len() as u64, "{i}");
        assert_eq!(i["filename"], name, "{i}");
        assert_eq!(i["received"], true, "{i}");
        assert_eq!(i["sharing"], "shared", "{i}");
        assert_eq!(get_item(other, &id, att)["sha256"], sha.as_str());
        let path = site.blob_path(&sha);
        let got = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{} has no content for {att} at {}: {e}",
                site.name,
                path.display()
            )
        });
        assert!(got == *bytes, "{}'s copy of {name} differs", site.name);
    }
    assert_eq!((acme.quarantined(), bolt.quarantined()), (0, 0));
}

#[test]
fn given_a_live_link_when_a_600_kib_attachment_is_added_then_it_arrives_in_several_chunks_intact() {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = live(&acme, &bolt, "Big attachment");
    let bytes = pseudo_random_bytes(600 * 1024, 42);
    let sha = sha256_hex(&bytes);
    let file = acme.file("capture.pcap", &bytes);
    let att = acme.add(&["attach", "add", &id, &file]);
    let published = acme.sync();
    assert!(
        published.published >= 4,
        "600 KiB should travel as several chunks and the event: {published:?}"
    );
    let applied = bolt.sync();
    assert_eq!(applied.quarantined, 0, "{applied:?}");

    let i = get_item(&bolt, &id, &att);
    assert_eq!(i["sha256"], sha.as_str(), "{i}");
    assert_eq!(i["size"], bytes.len() as u64, "{i}");
    let got = std::fs::read(bolt.blob_path(&sha)).expect("bolt holds the content");
    assert_eq!(got.len(), bytes.len());
    assert!(
        got == bytes,
        "bolt's copy of the 600 KiB attachment differs"
    );
    assert!(
        !bolt.dir.join("blobs-incoming").join(&sha).exists(),
        "a staging file was left behind"
    );
    assert_eq!((acme.quarantined(), bolt.quarantined()), (0, 0));
}
