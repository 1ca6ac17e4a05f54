//! End-to-end tests of partnering over a real nats-server: the invitation code, its
//! expiry, joining on the wrong instance, sending before the pairing completes, and a lead
//! with two partners that never see each other's tickets.

mod common;
#[path = "common/two.rs"]
mod two;

use std::time::Duration;

use common::{GENESIS, REFUSED};
use ticketsync_testkit::wait_until;
use two::*;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn rfc3339_ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("not RFC 3339 ({e}): {s:?}"))
        .timestamp_millis()
}

fn send(lead: &Site, id: &str, to: &str) -> common::Out {
    lead.run(&["outsource", "send", id, "--to", to, "--hourly-rate", "80"])
}

#[test]
fn given_an_instance_when_it_invites_a_partner_then_the_code_is_alone_on_the_last_line_and_joins() {
    let net = Net::start();
    let acme = net.instance("acme", "alice");
    let bolt = net.instance("bolt", "bob");
    let out = acme.ok(&["partner", "invite", "bolt"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.len() >= 2,
        "expected instructions before the code: {out:?}"
    );
    let code = *lines.last().expect("a last line");
    assert!(out.ends_with(&format!("{code}\n")), "{out:?}");
    assert!(
        !code.is_empty() && !code.contains(char::is_whitespace),
        "the last line is not a bare code: {code:?}"
    );
    assert!(
        lines[..lines.len() - 1].iter().all(|l| !l.contains(code)),
        "the code is repeated on another line: {out:?}"
    );
    assert_eq!(acme.partner_state("bolt").as_deref(), Some("invited"));

    let joined = bolt.ok(&["partner", "join", code]);
    assert!(joined.contains("acme"), "{joined:?}");
    assert_eq!(bolt.partner_state("acme").as_deref(), Some("paired"));
    assert_eq!(
        acme.partner_state("bolt").as_deref(),
        Some("invited"),
        "the lead is paired only once the partner's hello arrives"
    );
    deliver(&bolt, &acme);
    assert_eq!(acme.partner_state("bolt").as_deref(), Some("paired"));
    // a paired partner cannot be invited again
    let err = acme.refused(&["partner", "invite", "bolt"], REFUSED);
    assert!(err.contains("already paired"), "{err}");
}

#[test]
fn given_an_expired_invitation_when_the_partner_joins_then_exit_3_and_nothing_is_paired() {
    let net = Net::start();
    let acme = net.instance("acme", "alice");
    let bolt = net.instance("bolt", "bob");
    let code = acme.invite("bolt", &["--expires-in", "1s"]);
    let expires_at = acme
        .partners()
        .iter()
        .find(|p| p["name"] == "bolt")
        .and_then(|p| p["expires_at"].as_str().map(rfc3339_ms))
        .expect("the invitation's expires_at");
    wait_until(Duration::from_secs(10), "the invitation to expire", || {
        now_ms() > expires_at + 5
    });
    let err = bolt.refused(&["partner", "join", &code], REFUSED);
    assert!(err.contains("expired"), "{err}");
    assert!(bolt.partners().is_empty(), "{:?}", bolt.partners());
    settle(&bolt, &acme);
    assert_eq!(acme.partner_state("bolt").as_deref(), Some("invited"));
}

#[test]
fn given_an_invitation_for_bolt_when_cato_joins_with_it_then_exit_3_and_bolt_still_can() {
    let net = Net::start();
    let acme = net.instance("acme", "alice");
    let bolt = net.instance("bolt", "bob");
    let cato = net.instance("cato", "carl");
    let code = acme.invite("bolt", &[]);
    let err = cato.refused(&["partner", "join", &code], REFUSED);
    assert!(err.contains("bolt") && err.contains("cato"), "{err}");
    assert!(cato.partners().is_empty(), "{:?}", cato.partners());
    cato.sync();
    acme.sync();
    assert_eq!(acme.partner_state("cato"), None);
    assert_eq!(acme.partner_state("bolt").as_deref(), Some("invited"));

    bolt.ok(&["partner", "join", &code]);
    deliver(&bolt, &acme);
    assert_eq!(acme.partner_state("bolt").as_deref(), Some("paired"));
}

#[test]
fn given_a_partner_that_has_not_joined_when_the_lead_sends_to_it_then_exit_3_until_the_pairing_completes(
) {
    let net = Net::start();
    let acme = net.instance("acme", "alice");
    let bolt = net.instance("bolt", "bob");
    let id = acme.create("Too early");

    let err = acme.refused(
        &[
            "outsource",
            "send",
            &id,
            "--to",
            "bolt",
            "--hourly-rate",
            "80",
        ],
        REFUSED,
    );
    assert!(err.contains("not a partner"), "never invited: {err}");

    let code = acme.invite("bolt", &[]);
    let err = acme.refused(
        &[
            "outsource",
            "send",
            &id,
            "--to",
            "bolt",
            "--hourly-rate",
            "80",
        ],
        REFUSED,
    );
    assert!(err.contains("not joined"), "invited, not joined: {err}");

    bolt.ok(&["partner", "join", &code]);
    let err = acme.refused(
        &[
            "outsource",
            "send",
            &id,
            "--to",
            "bolt",
            "--hourly-rate",
            "80",
        ],
        REFUSED,
    );
    assert!(
        err.contains("not joined"),
        "joined, but the hello has not arrived: {err}"
    );
    assert_eq!(acme.outsource_status(&id), None);

    deliver(&bolt, &acme);
    let o = send(&acme, &id, "bolt");
    assert_eq!(o.code, 0, "{o:?}");
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Assigned");
}

#[test]
fn given_a_lead_with_two_partners_when_a_ticket_goes_to_bolt_then_cato_never_sees_it() {
    let net = Net::start();
    let acme = net.instance("acme", "alice");
    let bolt = net.instance("bolt", "bob");
    let cato = net.instance("cato", "carl");
    pair(&acme, &bolt);
    pair(&acme, &cato);

    let id = acme.create("For bolt only");
    assert_eq!(send(&acme, &id, "bolt").code, 0);
    for _ in 0..2 {
        acme.sync();
        bolt.sync();
        cato.sync();
    }
    bolt.ok(&["outsource", "accept", &id]);
    bolt.add(&["note", "add", &id, "--text", "bolt's work"]);
    acme.add(&["note", "add", &id, "--text", "acme's reply"]);
    for _ in 0..2 {
        bolt.sync();
        acme.sync();
        cato.sync();
    }
    assert_status(&acme, &bolt, &id, "In Progress");

    assert!(cato.tickets().is_empty(), "cato: {:?}", cato.tickets());
    assert!(!cato.has_ticket(&id));
    let c = cato.channel("acme");
    assert_eq!(
        (&c["inbound"]["seq"], c["inbound"]["hash"].as_str()),
        (&serde_json::Value::from(0), Some(GENESIS)),
        "cato received something from acme: {c}"
    );
    assert_eq!(c["quarantined"], 0, "{c}");
    let a = acme.channel("cato");
    assert_eq!(
        a["outbound"]["seq"], 0,
        "acme queued something for cato: {a}"
    );
    // partners do not learn of each other
    let names = |s: &Site| -> Vec<String> {
        s.partners()
            .iter()
            .map(|p| p["name"].as_str().expect("name").to_string())
            .collect()
    };
    assert_eq!(names(&bolt), vec!["acme"]);
    assert_eq!(names(&cato), vec!["acme"]);

    // and the other way round: a ticket for cato never reaches bolt
    let other = acme.create("For cato only");
    assert_eq!(send(&acme, &other, "cato").code, 0);
    for _ in 0..2 {
        acme.sync();
        bolt.sync();
        cato.sync();
    }
    assert_eq!(cato.outsource_status(&other).as_deref(), Some("Assigned"));
    assert!(!cato.has_ticket(&id));
    assert!(!bolt.has_ticket(&other));
    assert_eq!(bolt.tickets().len(), 1);
    assert_eq!(
        (acme.quarantined(), bolt.quarantined(), cato.quarantined()),
        (0, 0, 0)
    );
}

#[test]
fn given_a_ticket_whose_link_with_bolt_ended_when_it_is_sent_to_cato_then_cato_can_accept_and_never_receives_bolt_items(
) {
    let net = Net::start();
    let acme = net.instance("acme", "alice");
    let bolt = net.instance("bolt", "bob");
    let cato = net.instance("cato", "carl");
    pair(&acme, &bolt);
    pair(&acme, &cato);

    // first link: with bolt, live, a shared note, then taken back
    let id = live(&acme, &bolt, "Second opinion");
    let note = acme.add(&["note", "add", &id, "--text", "for bolt"]);
    deliver(&acme, &bolt);
    assert_eq!(get_item(&bolt, &id, &note)["sharing"], "shared");
    acme.ok(&["outsource", "force-complete", &id]);
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Complete");

    // second link: with cato
    assert_eq!(send(&acme, &id, "cato").code, 0);
    deliver(&acme, &cato);
    assert_status(&acme, &cato, &id, "Assigned");
    let out = cato.ok(&["outsource", "accept", &id]);
    assert_eq!(
        out,
        format!("{id} Accepted (lead acme)\n"),
        "cato's acceptance of the second link did not take effect; its links: {}",
        cato.show(&id)["links"]
    );
    deliver(&cato, &acme);
    assert_status(&acme, &cato, &id, "Accepted");

    // an edit of the note shared with bolt in the first link must not go to cato
    acme.ok(&["note", "edit", &id, &note, "--text", "for bolt, edited"]);
    deliver(&acme, &cato);
    assert!(
        find_item(&cato.show(&id), &note).is_none(),
        "bolt's note reached cato"
    );
    let c = cato.channel("acme");
    assert_eq!(
        c["quarantined"], 0,
        "acme sent cato something about bolt's items: {c}"
    );
}
