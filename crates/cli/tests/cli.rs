//! End-to-end tests of `ticketsync`: init, the commands before init, authorship (--as and
//! TICKETSYNC_USER), and the ticket commands (create, show, list, status, references).
//! Items are in items.rs; replay, verify, rebuild, tampering and schemas in log.rs.

mod common;

use common::*;
use std::collections::HashSet;

use serde_json::Value;

// ---------------------------------------------------------------------------------------
// init
// ---------------------------------------------------------------------------------------

#[test]
fn given_empty_dir_when_init_then_config_and_database_are_created() {
    let ts = Ts::uninit();
    let out = ts.ok(&["init", "--instance", "acme"]);
    assert_eq!(
        out,
        format!("initialized instance acme in {}\n", ts.dir.display())
    );
    let cfg = std::fs::read_to_string(ts.config_path()).unwrap();
    assert!(cfg.contains("instance = \"acme\""), "{cfg}");
    assert!(cfg.contains("database = \"sqlite:ticketsync.db\""), "{cfg}");
    assert!(cfg.contains("[tickets]"), "{cfg}");
    assert!(cfg.contains("max_attachment_bytes = 26214400"), "{cfg}");
    assert!(ts.db_path().is_file());
    // A fresh instance has an empty, intact log and no tickets.
    assert_eq!(ts.log_len(), 0);
    assert_eq!(ts.ok(&["replay", "--json"]), "");
    assert_eq!(
        json(&ts.ok(&["ticket", "list", "--json"])),
        Value::Array(vec![])
    );
}

#[test]
fn given_initialized_dir_when_init_again_then_refused_with_exit_3_and_nothing_changes() {
    let ts = Ts::new();
    ts.create("Existing ticket");
    let cfg = std::fs::read_to_string(ts.config_path()).unwrap();
    let err = ts.refused(&["init", "--instance", "acme"], REFUSED);
    assert!(err.contains("already holds an instance"), "{err}");
    let err = ts.refused(&["init", "--instance", "other"], REFUSED);
    assert!(err.contains("already holds an instance"), "{err}");
    assert_eq!(std::fs::read_to_string(ts.config_path()).unwrap(), cfg);
    assert_eq!(ts.show("1")["title"], "Existing ticket");
}

#[test]
fn given_bad_instance_name_when_init_then_exit_2_and_nothing_is_created() {
    for name in ["Acme", "1acme", "ac me", "", "a_b"] {
        let ts = Ts::uninit();
        let err = ts.fail(&["init", "--instance", name], USAGE);
        assert!(err.contains("instance name"), "{name:?}: {err}");
        assert!(!ts.dir.exists(), "{name:?}: data dir was created");
    }
}

#[test]
fn given_unsupported_database_url_when_init_then_exit_2_and_nothing_is_created() {
    let ts = Ts::uninit();
    let err = ts.fail(
        &["init", "--instance", "acme", "--database", "mysql://db/x"],
        USAGE,
    );
    assert!(err.contains("unsupported database URL"), "{err}");
    assert!(!ts.dir.exists());
}

#[test]
fn given_explicit_sqlite_database_when_init_then_commands_use_that_file() {
    let ts = Ts::uninit();
    let db = ts.scratch().join("elsewhere.db");
    let url = format!("sqlite:{}", db.display());
    ts.ok(&["init", "--instance", "acme", "--database", &url]);
    assert!(db.is_file());
    assert!(!ts.db_path().exists());
    ts.create("Stored elsewhere");
    assert_eq!(ts.log_len(), 1);
}

#[test]
fn given_a_postgresql_database_that_does_not_exist_yet_when_init_then_it_is_created_and_used() {
    let ts = Ts::uninit();
    let pg = ticketsync_testkit::PgTestDb::uncreated("cli");
    let out = ts.ok(&["init", "--instance", "acme", "--database", pg.url()]);
    assert_eq!(
        out,
        format!("initialized instance acme in {}\n", ts.dir.display())
    );
    assert!(
        !ts.db_path().exists(),
        "no SQLite file next to a PostgreSQL instance"
    );
    let config = std::fs::read_to_string(ts.config_path()).expect("config");
    assert!(config.contains(pg.url()), "{config}");
    let id = ts.create("Stored in PostgreSQL");
    ts.ok(&["note", "add", &id, "--text", "hello"]);
    assert_eq!(ts.log_len(), 2);
    // The same database for a second instance is refused: it belongs to acme.
    let other = Ts::uninit();
    let err = other.fail(
        &["init", "--instance", "bolt", "--database", pg.url()],
        REFUSED,
    );
    assert!(err.contains("belongs to instance \"acme\""), "{err}");
}

#[test]
fn given_an_unreachable_postgresql_server_when_init_or_a_command_runs_then_one_line_exit_1() {
    let port = ticketsync_testkit::free_port();
    let dead = format!("postgres://ticketsync:s3cret@127.0.0.1:{port}/acme");
    let ts = Ts::uninit();
    let err = ts.fail(&["init", "--instance", "acme", "--database", &dead], 1);
    assert!(err.contains("database unavailable"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("s3cret"), "the password leaked: {err}");
    assert!(
        !ts.dir.exists(),
        "a failed init left the data directory behind"
    );

    // An instance whose server goes away: every command fails the same way.
    let pg = ticketsync_testkit::PgTestDb::create("cli");
    let ts = Ts::uninit();
    ts.ok(&["init", "--instance", "acme", "--database", pg.url()]);
    let id = ts.create("Before the outage");
    let config = std::fs::read_to_string(ts.config_path()).expect("config");
    std::fs::write(ts.config_path(), config.replace(pg.url(), &dead)).expect("config");
    for args in [
        vec!["ticket", "list"],
        vec!["note", "add", &id, "--text", "lost?"],
        vec!["verify"],
    ] {
        let err = ts.fail(&args, 1);
        assert!(err.contains("database unavailable"), "{args:?}: {err}");
    }
    std::fs::write(ts.config_path(), config).expect("config");
    assert_eq!(ts.log_len(), 1, "nothing was appended during the outage");
}

// ---------------------------------------------------------------------------------------
// before init
// ---------------------------------------------------------------------------------------

#[test]
fn given_no_instance_when_any_command_runs_then_exit_7_and_nothing_is_created() {
    let ts = Ts::uninit();
    let file = ts.file("a.txt", b"x");
    let item = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let commands: Vec<Vec<&str>> = vec![
        vec!["ticket", "create", "--title", "T"],
        vec!["ticket", "list"],
        vec!["ticket", "list", "--json"],
        vec!["ticket", "show", "1"],
        vec!["ticket", "status", "1", "Complete"],
        vec!["note", "add", "1", "--text", "n"],
        vec!["note", "edit", "1", item, "--text", "n"],
        vec!["note", "delete", "1", item],
        vec!["time", "add", "1", "--hours", "1"],
        vec!["time", "edit", "1", item, "--hours", "1"],
        vec!["time", "delete", "1", item],
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
        vec!["charge", "edit", "1", item, "--quantity", "2"],
        vec!["charge", "delete", "1", item],
        vec!["attach", "add", "1", &file],
        vec!["attach", "delete", "1", item],
        vec!["replay"],
        vec!["replay", "--json"],
        vec!["verify"],
        vec!["verify", "--json"],
        vec!["rebuild"],
    ];
    for args in &commands {
        let err = ts.fail(args, INCOMPATIBLE);
        assert!(err.contains("ticketsync init"), "{args:?}: {err}");
        assert!(!ts.dir.exists(), "{args:?} created the data directory");
    }
}

#[test]
fn given_config_but_no_database_when_command_runs_then_exit_7() {
    let ts = Ts::new();
    ts.create("T");
    for f in ["ticketsync.db", "ticketsync.db-wal", "ticketsync.db-shm"] {
        let _ = std::fs::remove_file(ts.dir.join(f));
    }
    let err = ts.fail(&["ticket", "list"], INCOMPATIBLE);
    assert!(err.contains("no database"), "{err}");
    let err = ts.fail(&["ticket", "create", "--title", "T2"], INCOMPATIBLE);
    assert!(err.contains("no database"), "{err}");
    assert!(
        !ts.db_path().exists(),
        "a failed command created the database"
    );
}

// ---------------------------------------------------------------------------------------
// authorship
// ---------------------------------------------------------------------------------------

#[test]
fn given_ticketsync_user_env_when_creating_then_the_env_user_is_the_author() {
    let ts = Ts::new();
    ts.ok_as("carol", &["ticket", "create", "--title", "By env"]);
    let v = ts.show("1");
    assert_eq!(v["created_by"]["user"], "carol");
    assert_eq!(v["created_by"]["instance"], "acme");
    let log = ts.replay(&[]);
    assert_eq!(log[0]["actor"]["user"], "carol");
    assert_eq!(log[0]["actor"]["instance"], "acme");
}

#[test]
fn given_as_flag_when_env_user_is_also_set_then_the_flag_wins() {
    let ts = Ts::new();
    ts.ok_as(
        "carol",
        &["--as", "dave", "ticket", "create", "--title", "By flag"],
    );
    // The flag is global: it may also come after the subcommand.
    ts.ok_as(
        "carol",
        &["note", "add", "1", "--text", "hi", "--as", "erin"],
    );
    let v = ts.show("1");
    assert_eq!(v["created_by"]["user"], "dave");
    assert_eq!(items(&v)[0]["author"]["user"], "erin");
    let users: Vec<Value> = ts
        .replay(&[])
        .iter()
        .map(|l| l["actor"]["user"].clone())
        .collect();
    assert_eq!(users, ["dave", "erin"]);
}

#[test]
fn given_blank_or_too_long_user_when_command_runs_then_exit_2_and_nothing_appended() {
    let ts = Ts::new();
    ts.create("T");
    let err = ts.refused(&["--as", "   ", "note", "add", "1", "--text", "x"], USAGE);
    assert!(err.contains("invalid user"), "{err}");
    let long = "u".repeat(65);
    let err = ts.refused(&["--as", &long, "note", "add", "1", "--text", "x"], USAGE);
    assert!(err.contains("invalid user"), "{err}");
}

// ---------------------------------------------------------------------------------------
// ticket create
// ---------------------------------------------------------------------------------------

#[test]
fn given_instance_when_ticket_create_then_prints_ulid_and_appends_ticket_created() {
    let ts = Ts::new();
    let out = ts.ok(&[
        "ticket",
        "create",
        "--title",
        "  Printer jams  ",
        "--description",
        "Paper jams on every page.",
        "--customer",
        "Contoso",
    ]);
    let id = single_ulid(&out);
    assert_eq!(ts.log_len(), 1);
    let log = ts.replay(&[]);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["type"], "ticket_created");
    assert_eq!(log[0]["ticket_id"], id.as_str());
    assert_eq!(log[0]["version"], 1);
    assert_eq!(log[0]["data"]["title"], "Printer jams", "title is trimmed");
    assert_eq!(log[0]["data"]["description"], "Paper jams on every page.");
    assert_eq!(log[0]["data"]["customer"], "Contoso");
    assert_eq!(log[0]["data"]["status"], "New");
    let v = ts.show(&id);
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["number"], 1);
    assert_eq!(v["status"], "New");
    assert_eq!(v["customer"], "Contoso");
}

#[test]
fn given_tickets_when_created_then_numbers_count_up_from_one() {
    let ts = Ts::new();
    let a = ts.create("A");
    let b = ts.create("B");
    let c = ts.create("C");
    for (n, id) in [(1, &a), (2, &b), (3, &c)] {
        assert_eq!(ts.show(&n.to_string())["id"], id.as_str());
    }
    assert_ne!(a, b);
    assert_ne!(b, c);
}

#[test]
fn given_empty_or_malformed_title_when_ticket_create_then_exit_2_and_nothing_appended() {
    let ts = Ts::new();
    ts.create("Keep me");
    for title in ["", "   ", "\t"] {
        let err = ts.refused(&["ticket", "create", "--title", title], USAGE);
        assert!(err.contains("invalid title: must not be empty"), "{err}");
    }
    let err = ts.refused(&["ticket", "create", "--title", "two\nlines"], USAGE);
    assert!(err.contains("invalid title"), "{err}");
    let long = "x".repeat(201);
    let err = ts.refused(&["ticket", "create", "--title", &long], USAGE);
    assert!(err.contains("longer than 200"), "{err}");
    ts.create(&"y".repeat(200));
    assert_eq!(ts.log_len(), 2);
}

#[test]
fn given_missing_title_when_ticket_create_then_usage_error_exit_2_and_nothing_appended() {
    let ts = Ts::new();
    ts.create("T");
    let o = ts.run(&["ticket", "create", "--description", "no title"]);
    assert_eq!(o.code, USAGE, "{o:?}");
    assert_eq!(o.stdout, "");
    assert!(o.stderr.starts_with("error: "), "{o:?}");
    assert!(o.stderr.contains("--title"), "{o:?}");
    assert_eq!(ts.log_len(), 1);
}

// ---------------------------------------------------------------------------------------
// references: ULID, number, #number
// ---------------------------------------------------------------------------------------

#[test]
fn given_ticket_when_referenced_by_ulid_number_or_hash_number_then_same_ticket() {
    let ts = Ts::new();
    ts.create("First");
    let id = ts.create("Second");
    for r in [id.as_str(), "2", "#2", " #2 ", &id.to_lowercase()] {
        let v = ts.show(r);
        assert_eq!(v["id"], id.as_str(), "reference {r:?}");
        assert_eq!(v["title"], "Second", "reference {r:?}");
    }
    // Mutating commands accept the same references.
    ts.add(&["note", "add", "#2", "--text", "by hash"]);
    ts.add(&["note", "add", "2", "--text", "by number"]);
    ts.add(&["note", "add", &id, "--text", "by ulid"]);
    let texts: Vec<Value> = items(&ts.show("2"))
        .iter()
        .map(|i| i["text"].clone())
        .collect();
    assert_eq!(texts, ["by hash", "by number", "by ulid"]);
    assert!(items(&ts.show("1")).is_empty());
}

#[test]
fn given_unknown_ticket_when_show_then_exit_5() {
    let ts = Ts::new();
    ts.create("Only one");
    for r in ["2", "#99", "01ARZ3NDEKTSV4RRFFQ69G5FAV"] {
        let err = ts.fail(&["ticket", "show", r], NOT_FOUND);
        assert!(err.contains("not found"), "{r}: {err}");
    }
}

#[test]
fn given_malformed_reference_when_show_then_exit_2() {
    let ts = Ts::new();
    ts.create("Only one");
    for r in ["nonsense", "#", "#x1", "1.5", "01ARZ3NDEKTSV4RRFFQ69G5FA"] {
        ts.fail(&["ticket", "show", r], USAGE);
    }
}

#[test]
fn given_unknown_ticket_when_mutating_then_exit_5_and_nothing_appended() {
    let ts = Ts::new();
    let t = ts.create("Only one");
    let note = ts.add(&["note", "add", &t, "--text", "n"]);
    let file = ts.file("a.txt", b"abc");
    let unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    for r in ["2", "#7", unknown] {
        let commands: Vec<Vec<&str>> = vec![
            vec!["ticket", "status", r, "Complete"],
            vec!["note", "add", r, "--text", "n"],
            vec!["note", "edit", r, &note, "--text", "changed"],
            vec!["note", "delete", r, &note],
            vec!["time", "add", r, "--hours", "1"],
            vec![
                "charge",
                "add",
                r,
                "--description",
                "d",
                "--quantity",
                "1",
                "--unit-cost",
                "1",
            ],
            vec!["attach", "add", r, &file],
            vec!["replay", "--ticket", r],
        ];
        for args in &commands {
            let err = ts.refused(args, NOT_FOUND);
            assert!(err.contains("not found"), "{args:?}: {err}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// ticket show
// ---------------------------------------------------------------------------------------

#[test]
fn given_ticket_with_items_when_show_then_human_output_has_header_totals_items_history() {
    let ts = Ts::new();
    let id = ts.ok(&[
        "ticket",
        "create",
        "--title",
        "Printer jams",
        "--customer",
        "Contoso",
        "--description",
        "Since Monday.",
    ]);
    let id = single_ulid(&id);
    let note = ts.add(&["note", "add", "1", "--text", "Called the customer"]);
    let time = ts.add(&[
        "time",
        "add",
        "1",
        "--hours",
        "1.5",
        "--offset",
        "0.25",
        "--summary",
        "Fixed",
        "--role",
        "Technician",
        "--date",
        "2024-05-06",
    ]);
    let charge = ts.add(&[
        "charge",
        "add",
        "1",
        "--description",
        "Roller",
        "--quantity",
        "2",
        "--unit-cost",
        "18.40",
        "--unit-price",
        "29.90",
    ]);
    let out = ts.ok(&["ticket", "show", "1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("#1 {id}  Printer jams"));
    assert!(
        lines[1].starts_with("status: New   customer: Contoso   created ")
            && lines[1].ends_with(" by alice@acme   version 4"),
        "{}",
        lines[1]
    );
    assert!(out.contains("\nSince Monday.\n"), "{out}");
    assert!(
        out.contains("totals: 1.5 h (1.25 h billable), charges cost 36.8 price 59.8"),
        "{out}"
    );
    assert!(out.contains("items (3):"), "{out}");
    assert!(out.contains(&format!(
        "note       {note}  alice@acme  Called the customer"
    )));
    assert!(
        out.contains(&format!(
            "time       {time}  alice@acme  1.5 h (offset 0.25) 2024-05-06 alice (Technician) Fixed"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "charge     {charge}  alice@acme  2 x Roller at cost 18.4, price 29.9"
        )),
        "{out}"
    );
    assert!(out.contains("history:"), "{out}");
    assert!(
        out.contains("alice@acme  created \"Printer jams\" as New"),
        "{out}"
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("alice@acme  ") && l.trim_start().starts_with(char::is_numeric))
            .count(),
        4,
        "four history lines: {out}"
    );
}

#[test]
fn given_ticket_when_show_json_then_documented_fields_are_present() {
    let ts = Ts::new();
    let id = ts.create("JSON ticket");
    ts.ok(&["ticket", "status", "1", "In Progress"]);
    let v = ts.show("1");
    for k in [
        "id",
        "number",
        "title",
        "description",
        "customer",
        "status",
        "created_at",
        "created_by",
        "updated_at",
        "version",
        "position",
        "totals",
        "items",
        "history",
    ] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["customer"], Value::Null);
    assert_eq!(v["description"], "");
    assert_eq!(v["status"], "In Progress");
    assert_eq!(v["version"], 2);
    assert_eq!(v["position"], 2);
    assert_eq!(v["totals"]["hours"], "0");
    let h = v["history"].as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["type"], "ticket_created");
    assert_eq!(h[1]["type"], "status_changed");
    assert_eq!(h[1]["summary"], "status New -> In Progress");
    assert_eq!(h[1]["actor"]["user"], "alice");
    // The history matches the log.
    let log = ts.replay(&[]);
    assert_eq!(h[1]["event_id"], log[1]["event_id"]);
    assert_eq!(v["updated_at"], log[1]["occurred_at"]);
    assert_eq!(v["created_at"], log[0]["occurred_at"]);
}

#[test]
fn given_history_when_show_as_of_position_then_the_ticket_as_it_was_then() {
    let ts = Ts::new();
    let a = ts.create("Alpha"); // 1
    ts.create("Beta"); // 2
    ts.add(&["note", "add", "1", "--text", "first"]); // 3
    ts.ok(&["ticket", "status", "1", "In Progress"]); // 4
    ts.add(&["time", "add", "1", "--hours", "2"]); // 5
    ts.ok(&["ticket", "status", "2", "Complete"]); // 6

    let at = |pos: &str| json(&ts.ok(&["ticket", "show", "1", "--as-of", pos, "--json"]));
    let v1 = at("1");
    assert_eq!(v1["id"], a.as_str());
    assert_eq!(v1["number"], 1);
    assert_eq!(v1["status"], "New");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["position"], 1);
    assert!(items(&v1).is_empty());
    // Position 2 belongs to another ticket: ticket 1 is unchanged.
    assert_eq!(at("2"), v1);
    let v3 = at("3");
    assert_eq!(v3["version"], 2);
    assert_eq!(items(&v3).len(), 1);
    assert_eq!(v3["status"], "New");
    let v4 = at("4");
    assert_eq!(v4["status"], "In Progress");
    assert_eq!(v4["totals"]["hours"], "0");
    let v5 = at("5");
    assert_eq!(v5["totals"]["hours"], "2");
    assert_eq!(v5["history"].as_array().unwrap().len(), 4);
    // At or past the head it is the current ticket.
    assert_eq!(at("6"), ts.show("1"));
    assert_eq!(at("1000"), ts.show("1"));
    // Ticket 2 as of position 1 did not exist yet.
    let err = ts.fail(&["ticket", "show", "2", "--as-of", "1"], NOT_FOUND);
    assert!(err.contains("did not exist yet at log position 1"), "{err}");
    ts.fail(&["ticket", "show", "1", "--as-of", "0"], NOT_FOUND);
    // Human output works as of a position too.
    let out = ts.ok(&["ticket", "show", "#1", "--as-of", "3"]);
    assert!(out.contains("status: New"), "{out}");
    assert!(out.contains("version 2"), "{out}");
}

// ---------------------------------------------------------------------------------------
// ticket list
// ---------------------------------------------------------------------------------------

fn three_tickets() -> Ts {
    let ts = Ts::new();
    ts.ok(&[
        "ticket",
        "create",
        "--title",
        "Printer jams",
        "--customer",
        "Contoso",
    ]);
    ts.ok(&[
        "ticket",
        "create",
        "--title",
        "VPN down",
        "--description",
        "The PRINTER in room 2 is fine.",
    ]);
    ts.ok(&[
        "ticket",
        "create",
        "--title",
        "New laptop",
        "--customer",
        "Fabrikam Printers",
    ]);
    ts.ok(&["ticket", "status", "2", "In Progress"]);
    ts.ok(&["ticket", "status", "3", "Complete"]);
    ts
}

fn list_titles(ts: &Ts, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["ticket", "list", "--json"];
    args.extend_from_slice(extra);
    json(&ts.ok(&args))
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn given_tickets_when_list_then_table_in_number_order() {
    let ts = three_tickets();
    let out = ts.ok(&["ticket", "list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].contains("ID") && lines[0].contains("STATUS") && lines[0].contains("TITLE"));
    assert!(lines[1].trim_start().starts_with("1  "), "{}", lines[1]);
    assert!(lines[1].contains("Printer jams") && lines[1].contains("Contoso"));
    assert!(lines[2].contains("VPN down") && lines[2].contains("In Progress"));
    assert!(lines[3].contains("New laptop") && lines[3].contains("Complete"));
}

#[test]
fn given_tickets_when_list_json_then_rows_have_documented_fields() {
    let ts = three_tickets();
    let rows = json(&ts.ok(&["ticket", "list", "--json"]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["number"], i as u64 + 1);
        assert!(is_ulid(r["id"].as_str().unwrap()));
        for k in [
            "id",
            "number",
            "title",
            "customer",
            "status",
            "created_at",
            "updated_at",
            "version",
            "totals",
        ] {
            assert!(r.get(k).is_some(), "missing {k} in {r}");
        }
    }
    assert_eq!(rows[0]["customer"], "Contoso");
    assert_eq!(rows[1]["customer"], Value::Null);
    assert_eq!(rows[1]["status"], "In Progress");
    assert_eq!(rows[1]["version"], 2);
}

#[test]
fn given_tickets_when_list_by_status_then_only_that_status_in_any_spelling() {
    let ts = three_tickets();
    assert_eq!(list_titles(&ts, &["--status", "New"]), ["Printer jams"]);
    assert_eq!(list_titles(&ts, &["--status", "in-progress"]), ["VPN down"]);
    assert_eq!(list_titles(&ts, &["--status", "IN_PROGRESS"]), ["VPN down"]);
    assert_eq!(list_titles(&ts, &["--status", "complete"]), ["New laptop"]);
    assert!(list_titles(&ts, &["--status", "Waiting Customer"]).is_empty());
    let out = ts.ok(&["ticket", "list", "--status", "complete"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("New laptop"));
}

#[test]
fn given_unknown_status_when_list_then_exit_2() {
    let ts = three_tickets();
    let err = ts.fail(&["ticket", "list", "--status", "Closed"], USAGE);
    assert!(err.contains("unknown status"), "{err}");
}

#[test]
fn given_tickets_when_list_with_search_then_case_insensitive_match_on_title_description_customer() {
    let ts = three_tickets();
    // Title of 1, description of 2, customer of 3.
    assert_eq!(
        list_titles(&ts, &["--search", "printer"]),
        ["Printer jams", "VPN down", "New laptop"]
    );
    assert_eq!(list_titles(&ts, &["--search", "CONTOSO"]), ["Printer jams"]);
    assert_eq!(list_titles(&ts, &["--search", "room 2"]), ["VPN down"]);
    assert!(list_titles(&ts, &["--search", "no such text"]).is_empty());
    // Combined with a status filter.
    assert_eq!(
        list_titles(&ts, &["--search", "print", "--status", "complete"]),
        ["New laptop"]
    );
}

// ---------------------------------------------------------------------------------------
// ticket status
// ---------------------------------------------------------------------------------------

#[test]
fn given_ticket_when_status_changes_then_prints_id_and_new_status_and_appends_one_event() {
    let ts = Ts::new();
    let id = ts.create("T");
    assert_eq!(
        ts.ok(&["ticket", "status", "1", "waiting-customer"]),
        format!("{id} Waiting Customer\n")
    );
    assert_eq!(
        ts.ok(&["ticket", "status", &id, "Complete"]),
        format!("{id} Complete\n")
    );
    let log = ts.replay(&[]);
    assert_eq!(log.len(), 3);
    assert_eq!(log[1]["type"], "status_changed");
    assert_eq!(log[1]["data"]["from"], "New");
    assert_eq!(log[1]["data"]["to"], "Waiting Customer");
    assert_eq!(log[2]["data"]["to"], "Complete");
    assert_eq!(ts.show("1")["status"], "Complete");
}

#[test]
fn given_ticket_when_status_is_unknown_or_unchanged_then_refused_exit_3_and_nothing_appended() {
    let ts = Ts::new();
    ts.create("T");
    let err = ts.refused(&["ticket", "status", "1", "Closed"], REFUSED);
    assert!(err.contains("not a configured status"), "{err}");
    let err = ts.refused(&["ticket", "status", "1", "new"], REFUSED);
    assert!(err.contains("already New"), "{err}");
}

#[test]
fn given_custom_statuses_in_config_when_status_changes_then_they_apply() {
    let ts = Ts::new();
    set_statuses(&ts, &["Open", "Doing", "Complete"]);
    ts.create("T");
    assert_eq!(ts.show("1")["status"], "Open");
    ts.ok(&["ticket", "status", "1", "doing"]);
    assert_eq!(ts.show("1")["status"], "Doing");
    ts.refused(&["ticket", "status", "1", "In Progress"], REFUSED);
}

/// Replaces the configured statuses.
fn set_statuses(ts: &Ts, names: &[&str]) {
    let text = std::fs::read_to_string(ts.config_path()).unwrap();
    let start = text.find("statuses = [").expect("statuses in config");
    let end = start + text[start..].find(']').unwrap() + 1;
    let list: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    let new = format!(
        "{}statuses = [{}]{}",
        &text[..start],
        list.join(", "),
        &text[end..]
    );
    std::fs::write(ts.config_path(), new).unwrap();
}

#[test]
fn given_malformed_config_when_command_runs_then_exit_2() {
    let ts = Ts::new();
    ts.create("T");
    ts.set_config("max_attachment_bytes", "\"lots\"");
    ts.fail(&["ticket", "list"], USAGE);
}

// ---------------------------------------------------------------------------------------
// concurrent writers (separate processes on the same data directory)
// ---------------------------------------------------------------------------------------

/// Runs `per_worker` commands in each of `workers` threads at once, each its own process.
fn concurrently(
    ts: &Ts,
    workers: usize,
    per_worker: usize,
    args: impl Fn(usize, usize) -> Vec<String> + Sync,
) -> Vec<Out> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let args = &args;
                s.spawn(move || {
                    (0..per_worker)
                        .map(|k| {
                            let a = args(w, k);
                            let a: Vec<&str> = a.iter().map(String::as_str).collect();
                            ts.run_as(&format!("worker{w}"), &a)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread"))
            .collect()
    })
}

#[test]
fn given_concurrent_writers_on_one_ticket_when_adding_notes_then_each_lands_once_and_the_chain_holds(
) {
    let ts = Ts::new();
    ts.create("Busy ticket");
    let outs = concurrently(&ts, 6, 3, |w, k| {
        ["note", "add", "1", "--text", &format!("w{w} n{k}")]
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    let mut ids = HashSet::new();
    for o in &outs {
        assert_eq!(o.code, OK, "{o:?}");
        assert!(ids.insert(single_ulid(&o.stdout)));
    }
    assert_eq!(ts.log_len(), 1 + 18);
    let v = ts.show("1");
    assert_eq!(v["version"], 19);
    let texts: HashSet<String> = items(&v)
        .iter()
        .map(|i| i["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 18);
    let versions: Vec<u64> = ts
        .replay(&["--ticket", "1"])
        .iter()
        .map(|l| l["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (1..=19).collect::<Vec<u64>>());
    assert_eq!(json(&ts.ok(&["rebuild", "--json"]))["identical"], true);
}

#[test]
fn given_concurrent_creators_when_creating_tickets_then_numbers_are_unique_and_contiguous() {
    let ts = Ts::new();
    let outs = concurrently(&ts, 6, 2, |w, k| {
        ["ticket", "create", "--title", &format!("w{w} t{k}")]
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    let mut created = HashSet::new();
    for o in &outs {
        assert_eq!(o.code, OK, "{o:?}");
        created.insert(single_ulid(&o.stdout));
    }
    assert_eq!(created.len(), 12);
    let rows = json(&ts.ok(&["ticket", "list", "--json"]));
    let rows = rows.as_array().unwrap();
    let numbers: Vec<u64> = rows.iter().map(|r| r["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (1..=12).collect::<Vec<u64>>());
    let listed: HashSet<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, created);
    // Numbers follow log order.
    let log_order: Vec<Value> = ts
        .replay(&[])
        .iter()
        .map(|l| l["ticket_id"].clone())
        .collect();
    let list_order: Vec<Value> = rows.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(log_order, list_order);
    assert_eq!(json(&ts.ok(&["rebuild", "--json"]))["identical"], true);
}
