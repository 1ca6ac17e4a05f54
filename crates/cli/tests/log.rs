//! End-to-end tests of the log commands of `ticketsync`: replay (filters and the JSON line
//! format), verify (an intact log, and logs tampered with behind the triggers' back),
//! rebuild (digests), and databases written by a newer ticketsync.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::Value;
use sqlx::Connection;
use ticketsync_wire::{LogEntry, NewEntry};
use ulid::Ulid;

/// Two tickets and a few items: positions 1..=7.
///
/// | pos | ticket | type           |
/// |-----|--------|----------------|
/// | 1   | #1     | ticket_created |
/// | 2   | #2     | ticket_created |
/// | 3   | #1     | note_added ("the secret is 42") |
/// | 4   | #1     | status_changed |
/// | 5   | #2     | time_added     |
/// | 6   | #1     | charge_added   |
/// | 7   | #2     | note_added (by bob) |
fn seven_entries() -> (Ts, String, String) {
    let ts = Ts::new();
    let a = ts.create("Printer jams");
    let b = ts.create("VPN down");
    ts.add(&["note", "add", "1", "--text", "the secret is 42"]);
    ts.ok(&["ticket", "status", "1", "In Progress"]);
    ts.add(&["time", "add", "2", "--hours", "1.25"]);
    ts.add(&[
        "charge",
        "add",
        "#1",
        "--description",
        "Roller",
        "--quantity",
        "1",
        "--unit-cost",
        "5",
    ]);
    ts.add_as(BOB, &["note", "add", "2", "--text", "bob was here"]);
    assert_eq!(ts.log_len(), 7);
    (ts, a, b)
}

// ---------------------------------------------------------------------------------------
// replay
// ---------------------------------------------------------------------------------------

const REPLAY_FIELDS: [&str; 13] = [
    "position",
    "event_id",
    "ticket_id",
    "version",
    "schema_version",
    "type",
    "occurred_at",
    "recorded_at",
    "actor",
    "link_seq",
    "prev_hash",
    "hash",
    "data",
];

fn is_rfc3339_ms_utc(s: &str) -> bool {
    // 2024-05-06T07:08:09.123Z
    s.len() == 24
        && s.ends_with('Z')
        && s.as_bytes()[19] == b'.'
        && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

#[test]
fn given_log_when_replay_json_then_every_line_has_the_documented_fields() {
    let (ts, a, b) = seven_entries();
    let out = ts.ok(&["replay", "--json"]);
    assert_eq!(out.lines().count(), 7);
    assert!(out.ends_with('\n'));
    let lines = json_lines(&out);
    let mut event_ids = HashSet::new();
    let mut prev_hash = GENESIS.to_string();
    let mut versions = std::collections::HashMap::new();
    for (i, l) in lines.iter().enumerate() {
        let obj = l.as_object().expect("each line is an object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = REPLAY_FIELDS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want, "line {i}: {l}");
        assert_eq!(l["position"], i as u64 + 1);
        let eid = l["event_id"].as_str().unwrap();
        assert!(is_ulid(eid), "{eid}");
        assert!(
            event_ids.insert(eid.to_string()),
            "duplicate event id {eid}"
        );
        let tid = l["ticket_id"].as_str().unwrap();
        assert!(tid == a || tid == b, "{tid}");
        let v = versions.entry(tid.to_string()).or_insert(0u64);
        *v += 1;
        assert_eq!(l["version"], *v, "versions count up per ticket: {l}");
        assert_eq!(l["schema_version"], 1);
        assert!(l["type"].is_string());
        for k in ["occurred_at", "recorded_at"] {
            let t = l[k].as_str().unwrap();
            assert!(is_rfc3339_ms_utc(t), "{k} = {t}");
        }
        let actor = l["actor"].as_object().unwrap();
        assert_eq!(actor.len(), 2, "{l}");
        assert_eq!(l["actor"]["instance"], INSTANCE);
        assert!(is_hex_hash(l["prev_hash"].as_str().unwrap()));
        assert!(is_hex_hash(l["hash"].as_str().unwrap()));
        assert_eq!(l["prev_hash"], prev_hash.as_str(), "chain at line {i}");
        prev_hash = l["hash"].as_str().unwrap().to_string();
        assert!(l["data"].is_object(), "{l}");
    }
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "ticket_created",
            "ticket_created",
            "note_added",
            "status_changed",
            "time_added",
            "charge_added",
            "note_added"
        ]
    );
    let users: Vec<&str> = lines
        .iter()
        .map(|l| l["actor"]["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, [ALICE, ALICE, ALICE, ALICE, ALICE, ALICE, BOB]);
    assert_eq!(lines[2]["data"]["text"], "the secret is 42");
    assert_eq!(lines[3]["data"]["to"], "In Progress");
    // The head verify reports is the last line's hash.
    let v = ts.verify_json();
    assert_eq!(v["head"]["position"], 7);
    assert_eq!(v["head"]["hash"], lines[6]["hash"]);
}

#[test]
fn given_published_json_schema_when_replay_json_then_lines_match_its_fields() {
    let (ts, _, _) = seven_entries();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/replay-line.schema.json"
    );
    let schema = json(&std::fs::read_to_string(path).expect("the published schema"));
    let required: HashSet<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let documented: HashSet<&str> = REPLAY_FIELDS.into_iter().collect();
    assert_eq!(required, documented, "schema and docs/cli.md disagree");
    let properties = schema["properties"].as_object().unwrap();
    for l in ts.replay(&[]) {
        for k in l.as_object().unwrap().keys() {
            assert!(properties.contains_key(k), "{k} is not in the schema");
        }
    }
}

#[test]
fn given_log_when_replay_without_json_then_one_readable_line_per_entry() {
    let (ts, a, _) = seven_entries();
    let out = ts.ok(&["replay"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert!(lines[0].trim_start().starts_with("1  "), "{}", lines[0]);
    assert!(lines[0].contains(&format!("{a}@1")), "{}", lines[0]);
    assert!(lines[0].contains("ticket_created"), "{}", lines[0]);
    assert!(lines[0].contains("alice@acme"), "{}", lines[0]);
    assert!(
        lines[0].contains("\"title\":\"Printer jams\""),
        "{}",
        lines[0]
    );
    assert!(lines[6].trim_start().starts_with("7  "), "{}", lines[6]);
    assert!(lines[6].contains("bob@acme"), "{}", lines[6]);
    assert!(lines[3].contains("status_changed"), "{}", lines[3]);
}

#[test]
fn given_two_tickets_when_replay_ticket_then_only_that_tickets_entries_in_order() {
    let (ts, a, b) = seven_entries();
    for r in [a.as_str(), "1", "#1"] {
        let lines = ts.replay(&["--ticket", r]);
        assert_eq!(positions(&lines), [1, 3, 4, 6], "--ticket {r}");
        assert!(lines.iter().all(|l| l["ticket_id"] == a.as_str()));
        let versions: Vec<u64> = lines
            .iter()
            .map(|l| l["version"].as_u64().unwrap())
            .collect();
        assert_eq!(versions, [1, 2, 3, 4]);
    }
    let lines = ts.replay(&["--ticket", &b]);
    assert_eq!(positions(&lines), [2, 5, 7]);
    assert!(lines.iter().all(|l| l["ticket_id"] == b.as_str()));
    // The human form filters the same way.
    let out = ts.ok(&["replay", "--ticket", "2"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().all(|l| l.contains(&b)), "{out}");
}

#[test]
fn given_log_when_replay_from_to_then_the_inclusive_range() {
    let (ts, _, _) = seven_entries();
    assert_eq!(
        positions(&ts.replay(&["--from", "2", "--to", "4"])),
        [2, 3, 4]
    );
    assert_eq!(positions(&ts.replay(&["--from", "5"])), [5, 6, 7]);
    assert_eq!(positions(&ts.replay(&["--to", "2"])), [1, 2]);
    assert_eq!(positions(&ts.replay(&["--from", "4", "--to", "4"])), [4]);
    assert_eq!(
        positions(&ts.replay(&["--to", "100"])),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(
        positions(&ts.replay(&["--from", "0"])),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert!(ts.replay(&["--from", "8"]).is_empty());
    assert_eq!(ts.ok(&["replay", "--from", "8"]), "");
    // The lines of a range are the same as in the whole log.
    let all = ts.replay(&[]);
    assert_eq!(ts.replay(&["--from", "3", "--to", "5"]), all[2..5].to_vec());
    let out = ts.ok(&["replay", "--from", "6", "--to", "7"]);
    let pos: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(pos, ["6", "7"]);
}

#[test]
fn given_ticket_and_range_when_replay_then_both_filters_apply() {
    let (ts, _, _) = seven_entries();
    assert_eq!(
        positions(&ts.replay(&["--ticket", "1", "--from", "2", "--to", "5"])),
        [3, 4]
    );
    assert_eq!(
        positions(&ts.replay(&["--ticket", "2", "--from", "3"])),
        [5, 7]
    );
    assert_eq!(positions(&ts.replay(&["--ticket", "2", "--to", "4"])), [2]);
    assert!(ts.replay(&["--ticket", "1", "--from", "7"]).is_empty());
}

#[test]
fn given_to_before_from_when_replay_then_exit_2() {
    let (ts, _, _) = seven_entries();
    let err = ts.fail(&["replay", "--from", "5", "--to", "4"], USAGE);
    assert!(err.contains("--to 4 is before --from 5"), "{err}");
    ts.fail(
        &["replay", "--ticket", "1", "--from", "3", "--to", "2"],
        USAGE,
    );
}

// ---------------------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------------------

#[test]
fn given_intact_log_when_verify_then_ok_with_count_and_head() {
    let (ts, _, _) = seven_entries();
    let head = ts.replay(&[]).pop().unwrap()["hash"].clone();
    let out = ts.ok(&["verify"]);
    assert_eq!(
        out,
        format!(
            "ok: 7 entries, chain intact, head 7 {}\n",
            head.as_str().unwrap()
        )
    );
    let v = ts.verify_json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["checked"], 7);
    assert_eq!(v["head"]["position"], 7);
    assert_eq!(v["head"]["hash"], head);
    assert_eq!(v["problem"], Value::Null);
}

#[test]
fn given_empty_log_when_verify_then_ok_with_zero_entries() {
    let ts = Ts::new();
    assert_eq!(
        ts.ok(&["verify"]),
        format!("ok: 0 entries, chain intact, head 0 {GENESIS}\n")
    );
    let v = ts.verify_json();
    assert_eq!(v["checked"], 0);
    assert_eq!(v["head"]["hash"], GENESIS);
}

/// Runs `verify` on a damaged log: exit 4, the text names `position` and `kind`, and the
/// JSON report says the same. Returns the JSON report.
fn assert_verify_fails_at(ts: &Ts, position: u64, kind: &str) -> Value {
    let o = ts.run(&["verify"]);
    assert_eq!(o.code, VERIFY_FAILED, "{o:?}");
    let prefix = format!("FAILED at position {position} ({kind}): ");
    assert!(o.stdout.starts_with(&prefix), "{o:?}");
    assert_eq!(o.stdout.lines().count(), 1, "{o:?}");
    let o = ts.run(&["verify", "--json"]);
    assert_eq!(o.code, VERIFY_FAILED, "{o:?}");
    let v = json(&o.stdout);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["problem"]["position"], position, "{v}");
    assert_eq!(v["problem"]["kind"], kind, "{v}");
    assert!(v["problem"]["detail"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
    v
}

/// Replaces bytes inside one entry's payload, behind the triggers' back.
fn tamper_payload(ts: &Ts, position: i64, from: &[u8], to: &[u8]) {
    let db = ts.db_path();
    let (from, to) = (from.to_vec(), to.to_vec());
    block_on(async move {
        let mut c = connect(&db).await;
        let mut payload: Vec<u8> =
            sqlx::query_scalar("SELECT payload FROM events WHERE position = ?")
                .bind(position)
                .fetch_one(&mut c)
                .await
                .unwrap();
        let at = payload
            .windows(from.len())
            .position(|w| w == from.as_slice())
            .expect("the bytes to replace are in the payload");
        payload[at..at + to.len()].copy_from_slice(&to);
        sqlx::raw_sql("DROP TRIGGER IF EXISTS events_refuse_update")
            .execute(&mut c)
            .await
            .unwrap();
        let done = sqlx::query("UPDATE events SET payload = ? WHERE position = ?")
            .bind(&payload)
            .bind(position)
            .execute(&mut c)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
        c.close().await.unwrap();
    })
}

#[test]
fn given_log_when_updating_or_deleting_events_directly_then_the_triggers_refuse() {
    let (ts, _, _) = seven_entries();
    let err = ts.sql_err("UPDATE events SET actor_user = 'mallory' WHERE position = 3");
    assert!(err.contains("append-only"), "{err}");
    let err = ts.sql_err("DELETE FROM events WHERE position = 3");
    assert!(err.contains("append-only"), "{err}");
    assert_eq!(ts.log_len(), 7);
}

#[test]
fn given_byte_changed_in_a_payload_when_verify_then_exit_4_naming_that_position() {
    let (ts, _, _) = seven_entries();
    tamper_payload(&ts, 3, b"secret is 42", b"secret is 43");
    // The change is invisible to replay...
    assert_eq!(
        ts.replay(&["--from", "3", "--to", "3"])[0]["data"]["text"],
        "the secret is 43"
    );
    // ...but not to verify.
    let v = assert_verify_fails_at(&ts, 3, "hash_mismatch");
    assert_eq!(v["head"]["position"], 2, "last good position: {v}");
    assert_eq!(v["checked"], 3);
}

#[test]
fn given_two_tampered_entries_when_verify_then_the_first_is_named() {
    let (ts, _, _) = seven_entries();
    tamper_payload(&ts, 7, b"bob was here", b"bob was gone");
    tamper_payload(&ts, 3, b"the secret", b"THE secret");
    assert_verify_fails_at(&ts, 3, "hash_mismatch");
}

#[test]
fn given_actor_changed_behind_the_triggers_back_when_verify_then_exit_4_naming_that_position() {
    let (ts, _, _) = seven_entries();
    ts.sql(
        "DROP TRIGGER events_refuse_update;
         UPDATE events SET actor_user = 'alice' WHERE position = 7;",
    );
    assert_verify_fails_at(&ts, 7, "hash_mismatch");
}

#[test]
fn given_row_deleted_behind_the_triggers_back_when_verify_then_exit_4_naming_the_gap() {
    let (ts, _, _) = seven_entries();
    ts.sql(
        "DROP TRIGGER events_refuse_delete;
         DELETE FROM events WHERE position = 4;",
    );
    let v = assert_verify_fails_at(&ts, 4, "position_gap");
    assert_eq!(v["head"]["position"], 3);
}

#[test]
fn given_last_row_deleted_behind_the_triggers_back_when_verify_then_exit_4_naming_the_missing_tail()
{
    let (ts, _, _) = seven_entries();
    ts.sql(
        "DROP TRIGGER events_refuse_delete;
         DELETE FROM events WHERE position = 7;",
    );
    let v = assert_verify_fails_at(&ts, 7, "head_mismatch");
    assert_eq!(v["checked"], 6);
}

#[test]
fn given_rows_swapped_behind_the_triggers_back_when_verify_then_exit_4_naming_the_first_swapped() {
    let (ts, _, _) = seven_entries();
    ts.sql(
        "DROP TRIGGER events_refuse_update;
         UPDATE events SET position = -1 WHERE position = 5;
         UPDATE events SET position = 5 WHERE position = 6;
         UPDATE events SET position = 6 WHERE position = -1;",
    );
    // Every row is intact on its own; only the order changed.
    assert_eq!(ts.sql_i64("SELECT COUNT(*) FROM events"), 7);
    let v = assert_verify_fails_at(&ts, 5, "prev_hash_mismatch");
    assert_eq!(v["head"]["position"], 4);
}

// ---------------------------------------------------------------------------------------
// rebuild
// ---------------------------------------------------------------------------------------

#[test]
fn given_log_when_rebuild_then_the_digest_is_identical_to_the_live_one() {
    let (ts, _, _) = seven_entries();
    let views_before = (ts.show("1"), ts.show("2"));
    let out = ts.ok(&["rebuild"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let digest = lines[0]
        .strip_prefix("tickets: rebuilt to position 7 digest ")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(is_hex_hash(digest), "{digest}");
    assert_eq!(lines[1], "tickets: identical to the live projection");

    let v = json(&ts.ok(&["rebuild", "--json"]));
    assert_eq!(v["projection"], "tickets");
    assert_eq!(v["position"], 7);
    assert_eq!(v["identical"], true);
    assert_eq!(v["digest"], v["live_digest"]);
    assert_eq!(v["digest"], digest, "the digest is stable across rebuilds");
    assert!(v["seconds"].as_f64().is_some_and(|s| s >= 0.0));
    let v = json(&ts.ok(&["rebuild", "tickets", "--json"]));
    assert_eq!(v["digest"], digest);
    // Rebuilding changes neither the log nor the tickets.
    assert_eq!(ts.log_len(), 7);
    assert_eq!((ts.show("1"), ts.show("2")), views_before);
}

#[test]
fn given_new_events_when_rebuild_then_the_digest_moves_and_stays_identical() {
    let (ts, _, _) = seven_entries();
    let d1 = json(&ts.ok(&["rebuild", "--json"]))["digest"].clone();
    ts.add(&["note", "add", "2", "--text", "one more"]);
    let v = json(&ts.ok(&["rebuild", "--json"]));
    assert_eq!(v["position"], 8);
    assert_eq!(v["identical"], true);
    assert_ne!(v["digest"], d1);
}

#[test]
fn given_empty_log_when_rebuild_then_position_0_and_identical() {
    let ts = Ts::new();
    let v = json(&ts.ok(&["rebuild", "--json"]));
    assert_eq!(v["position"], 0);
    assert_eq!(v["identical"], true);
}

#[test]
fn given_damaged_live_projection_when_rebuild_then_warns_and_restores_it() {
    let (ts, a, _) = seven_entries();
    let good = ts.show("1");
    let digest = json(&ts.ok(&["rebuild", "--json"]))["digest"].clone();
    ts.sql_projections(&format!(
        "DELETE FROM projection_docs WHERE key = 't/{a}' AND generation = \
         (SELECT generation FROM projection_generations WHERE name = 'tickets')"
    ));
    ts.fail(&["ticket", "show", &a], NOT_FOUND);
    let o = ts.run(&["rebuild"]);
    assert_eq!(o.code, OK, "{o:?}");
    assert_eq!(
        o.stdout,
        format!(
            "tickets: rebuilt to position 7 digest {}\n",
            digest.as_str().unwrap()
        )
    );
    assert!(
        o.stderr
            .starts_with("warning: tickets: the live projection differed"),
        "{o:?}"
    );
    assert_eq!(ts.show("1"), good);
    let v = json(&ts.ok(&["rebuild", "--json"]));
    assert_eq!(v["identical"], true);
    assert_eq!(v["digest"], digest);
}

#[test]
fn given_unknown_projection_when_rebuild_then_exit_2() {
    let (ts, _, _) = seven_entries();
    let err = ts.fail(&["rebuild", "invoices"], USAGE);
    assert!(
        err.contains("unknown projection \"invoices\"; known: tickets"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// databases from a newer ticketsync
// ---------------------------------------------------------------------------------------

/// Every command, each of which must refuse a database it cannot read.
fn every_command(ts: &Ts) -> Vec<Vec<String>> {
    let file = ts.file("f.txt", b"f");
    let item = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    [
        vec!["ticket", "create", "--title", "T"],
        vec!["ticket", "list"],
        vec!["ticket", "show", "1"],
        vec!["ticket", "status", "1", "Complete"],
        vec!["note", "add", "1", "--text", "n"],
        vec!["note", "delete", "1", item],
        vec!["time", "add", "1", "--hours", "1"],
        vec![
            "charge",
            "add",
            "1",
            "--description",
            "d",
            "--quantity",
            "1",
            "--unit-cost",
            "1",
        ],
        vec!["attach", "add", "1", &file],
        vec!["replay"],
        vec!["replay", "--json"],
        vec!["verify"],
        vec!["rebuild"],
    ]
    .into_iter()
    .map(|a| a.into_iter().map(String::from).collect())
    .collect()
}

#[test]
fn given_database_with_newer_store_schema_when_any_command_runs_then_exit_7_and_nothing_changes() {
    let (ts, _, _) = seven_entries();
    let before = ts.ok(&["replay", "--json"]);
    let current = ts.sql_i64("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'store_schema'");
    ts.sql("UPDATE meta SET value = '99' WHERE key = 'store_schema'");
    for args in every_command(&ts) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = ts.fail(&args, INCOMPATIBLE);
        assert!(
            err.contains(&format!(
                "store schema 99, newer than this ticketsync supports ({current})"
            )),
            "{args:?}: {err}"
        );
    }
    assert_eq!(ts.sql_i64("SELECT COUNT(*) FROM events"), 7);
    assert_eq!(
        ts.sql_i64("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'store_schema'"),
        99,
        "the newer database was modified"
    );
    // Put back, the log is exactly as it was.
    ts.sql(&format!(
        "UPDATE meta SET value = '{current}' WHERE key = 'store_schema'"
    ));
    assert_eq!(ts.ok(&["replay", "--json"]), before);
    assert_eq!(ts.log_len(), 7);
}

/// Appends, correctly chained, an entry of event schema `schema_version` for a new stream.
fn append_foreign_entry(ts: &Ts, schema_version: u16) -> u64 {
    let db = ts.db_path();
    block_on(async move {
        let mut c = connect(&db).await;
        let (pos, hash): (i64, Vec<u8>) =
            sqlx::query_as("SELECT position, hash FROM log_head WHERE id = 1")
                .fetch_one(&mut c)
                .await
                .unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        let e = LogEntry::seal(
            NewEntry {
                link_seq: 0,
                event_id: Ulid::new(),
                stream_id: Ulid::new(),
                schema_version,
                event_type: "ticket_created".into(),
                occurred_at: now,
                actor_instance: INSTANCE.into(),
                actor_user: "future".into(),
                payload: vec![0xff, 0x01, 0x02, 0x03],
            },
            pos as u64 + 1,
            1,
            now,
            hash.try_into().unwrap(),
        );
        sqlx::query(
            "INSERT INTO events (position, event_id, stream_id, version, schema_version, \
             event_type, occurred_at, recorded_at, actor_instance, actor_user, payload, \
             prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(e.position as i64)
        .bind(e.event_id.to_string())
        .bind(e.stream_id.to_string())
        .bind(e.version as i64)
        .bind(i64::from(e.schema_version))
        .bind(&e.event_type)
        .bind(e.occurred_at)
        .bind(e.recorded_at)
        .bind(&e.actor_instance)
        .bind(&e.actor_user)
        .bind(&e.payload)
        .bind(&e.prev_hash[..])
        .bind(&e.hash[..])
        .execute(&mut c)
        .await
        .unwrap();
        sqlx::query("INSERT INTO streams (stream_id, version) VALUES (?, 1)")
            .bind(e.stream_id.to_string())
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("UPDATE log_head SET position = ?, hash = ? WHERE id = 1")
            .bind(e.position as i64)
            .bind(&e.hash[..])
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
        e.position
    })
}

#[test]
fn given_entry_with_newer_event_schema_when_replay_then_exit_7() {
    let (ts, _, _) = seven_entries();
    assert_eq!(append_foreign_entry(&ts, 2), 8);
    // The chain itself is intact: the entry is only newer than this build understands.
    assert_eq!(ts.log_len(), 8);
    for args in [
        vec!["replay", "--json"],
        vec!["replay"],
        vec!["replay", "--from", "8"],
    ] {
        let o = ts.run(&args);
        // Replay streams: the entries before the unreadable one may already be out.
        let printed = o.stdout.clone();
        assert_one_line_error(
            &Out {
                stdout: String::new(),
                ..o
            },
            INCOMPATIBLE,
            &args.join(" "),
        );
        assert!(printed.lines().count() <= 7, "{args:?}: {printed}");
        assert!(!printed.contains("future"), "{args:?}: {printed}");
    }
    let err = ts.fail(&["replay", "--from", "8"], INCOMPATIBLE);
    assert!(err.contains("event schema version 2 is newer"), "{err}");
    // Entries before it still replay.
    assert_eq!(ts.replay(&["--to", "7"]).len(), 7);
}

#[test]
fn given_entry_with_newer_event_schema_when_reading_tickets_then_exit_7() {
    let (ts, _, _) = seven_entries();
    append_foreign_entry(&ts, 2);
    for args in [
        vec!["ticket", "list"],
        vec!["ticket", "show", "1"],
        vec!["rebuild"],
    ] {
        let err = ts.fail(&args, INCOMPATIBLE);
        assert!(
            err.contains("event schema version 2 is newer"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn given_entry_with_newer_event_schema_when_writing_then_exit_7_and_nothing_appended() {
    let (ts, _, _) = seven_entries();
    append_foreign_entry(&ts, 2);
    let file = ts.file("f.txt", b"f");
    let mut appended = vec![];
    for args in [
        vec!["note", "add", "1", "--text", "n"],
        vec!["ticket", "status", "2", "Complete"],
        vec!["attach", "add", "1", &file],
        vec!["ticket", "create", "--title", "T"],
    ] {
        let len = ts.log_len();
        let err = ts.fail(&args, INCOMPATIBLE);
        assert!(
            err.contains("event schema version 2 is newer"),
            "{args:?}: {err}"
        );
        if ts.log_len() != len {
            appended.push(args.join(" "));
        }
    }
    assert!(
        appended.is_empty(),
        "failed with exit 7 but appended to a log it cannot read: {appended:?}"
    );
}
