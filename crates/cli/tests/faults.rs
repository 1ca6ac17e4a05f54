//! Fault injection with real processes: live `ticketsync sync run` daemons for acme (lead)
//! and bolt (partner) over a real nats-server, real SQLite files, and thousands of events
//! the partner adds in-process (`Instance::execute`) on live outsourced tickets. Whatever
//! happens to the daemons (SIGKILL, SIGTERM), the broker (restart, wiped store) or the
//! messages (delivered twice, reordered), the lead must end up holding every event exactly
//! once, counted by event id in `replay --json`, with the channel heads in
//! `sync status --json` equal on both sides and nothing quarantined.
//!
//! Random choices come from a seeded RNG (`FAULTS_SEED` repeats a run). Nothing sleeps to
//! wait for a result: kills are placed by the number of events generated so far, and every
//! outcome is waited for with `wait_until` and a timeout.

mod common;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/two.rs"]
mod two;

use std::time::{Duration, Instant};

use faults::*;
use ticketsync_testkit::{poll_until, wait_until};
use ticketsync_wire::channel::{data_subject, stream_name};
use two::*;

/// Commands the partner runs in the kill test (one event each; a ticket's first item
/// also starts its link, one more event).
const KILL_RUN_EVENTS: usize = 3000;
/// Live tickets the events are spread over (a command's cost grows with its ticket).
const KILL_RUN_TICKETS: usize = 60;
/// SIGKILLs of the receiving daemon in the kill test.
const KILLS: usize = 12;
/// After which kills nats-server is restarted.
const NATS_RESTART_AFTER_KILLS: [usize; 2] = [4, 9];
/// Commands in each of the smaller runs.
const SMALL_RUN_EVENTS: usize = 400;
const SMALL_RUN_TICKETS: usize = 20;
/// How many entries a paused daemon is let fall behind before it gets SIGTERM.
const PILE_UP: u64 = 10;
/// How long the generator may make no progress while a daemon is paused before the pause is
/// taken for one inside a write transaction, and how often to try again.
const PAUSE_STALL: Duration = Duration::from_secs(3);
const PAUSE_TRIES: usize = 5;
/// How long the generator may take to reach a kill point.
const GEN_TIMEOUT: Duration = Duration::from_secs(180);

/// Asserts the end state every fault test wants and prints the figures.
fn assert_exactly_once(test: &str, sender: &Site, receiver: &Site, ids: &[String], extra: &str) {
    let t = tally(receiver, ids);
    let (out, inn) = heads(sender, receiver);
    let quarantined = receiver.channel(&sender.name)["quarantined"]
        .as_u64()
        .expect("quarantined");
    eprintln!(
        "{test}: events {}, {extra}, lost {}, duplicated {}, duplicated anywhere in the log {}, \
         quarantined {quarantined}, channel head {} (sender out) / {} (receiver in)",
        t.expected, t.lost, t.duplicated, t.duplicated_anywhere, out.0, inn.0,
    );
    assert_eq!(t.lost, 0, "{test}: events lost: {t:?}");
    assert_eq!(t.duplicated, 0, "{test}: events duplicated: {t:?}");
    assert_eq!(
        t.duplicated_anywhere, 0,
        "{test}: log holds duplicates: {t:?}"
    );
    assert_eq!(quarantined, 0, "{test}: something was quarantined");
    assert_eq!(
        out, inn,
        "{test}: the sender's outbound head differs from the receiver's inbound head"
    );
    // and both logs are intact (verify --json: chain and channels)
    assert!(receiver.log_len() > ids.len() as u64);
    assert!(sender.log_len() > ids.len() as u64);
}

/// Waits until the in-process generator has run at least `n` commands.
fn wait_generated(g: &Generator, n: usize) {
    wait_until(GEN_TIMEOUT, &format!("{n} commands generated"), || {
        g.count() >= n || g.finished()
    });
}

/// SIGSTOPs `d` and waits until the generator has put `PILE_UP` entries (or, once it has
/// finished, any) between the sender's outbox and the receiver's inbound head; returns how
/// many. A daemon stopped or killed after this is stopped mid-stream by construction.
///
/// A daemon frozen inside a write transaction holds the writer's lock (SQLite's write lock,
/// PostgreSQL's `log_head` row) and the generator's next command waits for it; when the
/// generator makes no progress within `PAUSE_STALL`, the daemon is continued until the
/// generator moves on and frozen again, up to `PAUSE_TRIES` times.
fn pause_until_behind(d: &Daemon, probe: &Probe, gen: &Generator) -> u64 {
    let mut pending = 0;
    let mut behind = || {
        pending = probe.sent().saturating_sub(probe.received());
        pending >= PILE_UP || (gen.finished() && pending > 0)
    };
    for _ in 0..PAUSE_TRIES {
        d.pause();
        loop {
            let at = gen.count();
            if poll_until(PAUSE_STALL, &mut behind) {
                return pending;
            }
            assert!(
                !gen.finished(),
                "the generator finished with nothing pending for the paused {} daemon",
                d.name
            );
            if gen.count() == at {
                break;
            }
        }
        d.resume();
        let at = gen.count();
        wait_until(
            GEN_TIMEOUT,
            &format!(
                "the generator to go on once the {} daemon runs again",
                d.name
            ),
            || gen.count() > at || gen.finished(),
        );
    }
    panic!(
        "the generator stalled each of {PAUSE_TRIES} times the {} daemon was paused",
        d.name
    );
}

/// `k` points in `0..n`, spread out: one in each of `k` equal slices, at a random offset.
fn spread_points(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let slice = n / (k + 1);
    (1..=k)
        .map(|i| i * slice + rng.range(0, slice as u64 / 2) as usize)
        .collect()
}

#[test]
fn given_thousands_of_partner_events_when_the_receiving_daemon_is_killed_again_and_again_and_nats_restarts_then_every_event_arrives_exactly_once(
) {
    let started = Instant::now();
    let (mut net, acme, bolt) = acme_and_bolt();
    let tickets = live_tickets(&acme, &bolt, KILL_RUN_TICKETS);
    let probe = Probe::new(&bolt, &acme);
    let seed = seed(0x7105_4A11);
    let mut rng = Rng::new(seed);
    let points = spread_points(&mut rng, KILL_RUN_EVENTS, KILLS);

    let sender = Daemon::start(&bolt);
    let mut receiver = Some(Daemon::start(&acme));
    let gen = Generator::start(&bolt, &tickets, KILL_RUN_EVENTS, Mix::NotesAndTimeEvery(4));
    let (mut kills, mut restarts) = (0, 0);
    let (mut at, mut logs) = (vec![], vec![]);
    for &p in &points {
        wait_generated(&gen, p);
        let r = receiver.take().expect("running");
        // Each kill lands with entries pending for the receiver (the pause sees to it).
        pause_until_behind(&r, &probe, &gen);
        at.push((gen.count(), probe.received(), probe.sent()));
        logs.push(r.log_text());
        r.kill9();
        kills += 1;
        if NATS_RESTART_AFTER_KILLS.contains(&kills) {
            net.nats.restart();
            restarts += 1;
        }
        receiver = Some(Daemon::start(&acme));
    }
    let ids = gen.join();
    let generated = started.elapsed();
    wait_drained(&probe, "acme to hold bolt's whole channel after the kills");
    let drained = started.elapsed();
    let last = receiver.take().expect("running");
    logs.push(last.log_text());
    let rs = last.stop();
    let ss = sender.stop();
    eprintln!(
        "kill -9 run: seed {seed}; kills at (commands done, receiver seq, sender seq): {at:?}; \
         generated by {generated:?}, drained by {drained:?}; last receiver run {rs:?}; sender {ss:?}; \
         receiver warnings over all runs: {:?}",
        warnings(&logs)
    );
    assert_eq!(kills, KILLS);
    assert_eq!(restarts, NATS_RESTART_AFTER_KILLS.len());
    assert_exactly_once(
        "kill -9 run",
        &bolt,
        &acme,
        &ids,
        &format!(
            "kills {kills} (each with entries pending), nats restarts {restarts}, \
             elapsed {:?}",
            started.elapsed()
        ),
    );
}

#[test]
fn given_every_message_delivered_twice_and_shuffled_ahead_of_the_originals_when_the_receiver_runs_then_nothing_is_applied_twice(
) {
    let started = Instant::now();
    let (net, acme, bolt) = acme_and_bolt();
    let tickets = live_tickets(&acme, &bolt, SMALL_RUN_TICKETS);
    let probe = Probe::new(&bolt, &acme);
    let mut rng = Rng::new(seed(0x00D0_B1E5));
    let base = probe.received();
    assert_eq!(base, probe.sent(), "the set-up left entries undelivered");

    // The partner's events are in its outbox; its daemon is not running yet.
    let ids = generate(&bolt, &tickets, SMALL_RUN_EVENTS, Mix::NotesAndTimeEvery(3));
    let msgs = signed_messages(&bolt, "acme", base, &mut rng);
    let raw = Raw::connect(&net.nats.url());
    let subject = data_subject("bolt", "acme");
    let stream = stream_name("bolt", "acme");

    // Two copies of every message, shuffled, ahead of anything the sender publishes.
    let mut copies: Vec<(String, &Vec<u8>)> = msgs
        .iter()
        .enumerate()
        .flat_map(|(i, m)| [(format!("copy-a.{i}"), m), (format!("copy-b.{i}"), m)])
        .collect();
    rng.shuffle(&mut copies);
    for (id, m) in &copies {
        raw.publish(&subject, id, (*m).clone());
    }
    // Then the sender publishes its originals behind them.
    let sender = Daemon::start(&bolt);
    wait_until(DRAIN_TIMEOUT, "bolt's originals to be acknowledged", || {
        probe.acked() == probe.sent()
    });
    let in_stream = raw.stream_len(&stream);
    // The receiver meets the shuffled copies first: gaps, resend requests, republished
    // batches interleaved with the rest; and a third copy of everything, shuffled again,
    // arrives while it runs.
    let receiver = Daemon::start(&acme);
    let mut late: Vec<(String, &Vec<u8>)> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("copy-c.{i}"), m))
        .collect();
    rng.shuffle(&mut late);
    for (id, m) in &late {
        raw.publish(&subject, id, (*m).clone());
    }
    wait_drained(&probe, "acme to hold bolt's whole channel");
    wait_until(DRAIN_TIMEOUT, "acme to consume every copy", || {
        raw.consumer_idle(&stream, "ticketsync-acme")
    });
    let rs = receiver.stop();
    let ss = sender.stop();
    eprintln!(
        "duplicates run: {} signed messages, {} copies published ahead ({in_stream} messages in \
         the stream before the receiver started), {} more while it ran; receiver {rs:?}; sender {ss:?}; \
         elapsed {:?}",
        msgs.len(),
        copies.len(),
        late.len(),
        started.elapsed()
    );
    assert!(
        msgs.len() >= 40,
        "too few messages to shuffle: {}",
        msgs.len()
    );
    assert!(
        rs.duplicates > 0,
        "the receiver saw no duplicate entries: {rs:?}"
    );
    assert!(
        rs.resend_requests > 0,
        "shuffled copies ahead of the originals left no gap: {rs:?}"
    );
    assert_exactly_once(
        "duplicates run",
        &bolt,
        &acme,
        &ids,
        &format!(
            "messages delivered 3 or 4 times (copies {}), duplicate entries skipped {}, \
             resend requests {}",
            copies.len() + late.len(),
            rs.duplicates,
            rs.resend_requests
        ),
    );
}

#[test]
fn given_a_jetstream_store_wiped_after_the_sender_published_when_the_receiver_comes_back_then_the_gap_is_detected_and_healed_by_resend(
) {
    let started = Instant::now();
    let (mut net, acme, bolt) = acme_and_bolt();
    let tickets = live_tickets(&acme, &bolt, SMALL_RUN_TICKETS);
    let probe = Probe::new(&bolt, &acme);
    let stream = stream_name("bolt", "acme");
    let mut ids = vec![];

    let sender = Daemon::start_ready(&bolt);
    let mut receiver = Daemon::start_ready(&acme);
    ids.extend(generate(&bolt, &tickets, 100, Mix::Notes));
    wait_drained(&probe, "acme to hold bolt's channel before the wipe");

    let mut lost_by_broker = vec![];
    let mut resends = 0;
    // Wipe 1: nothing newer follows; only the sender's head announcements tell the
    // receiver that it is behind. Wipe 2: newer events follow the wipe as well.
    for newer_after_wipe in [0, 100] {
        let (status, stats, log) = receiver.term();
        assert!(
            status.code() == Some(0) && stats.is_some(),
            "the receiver did not stop cleanly: {status:?}; log:\n{log}"
        );
        let before = probe.received();
        ids.extend(generate(
            &bolt,
            &tickets,
            SMALL_RUN_EVENTS / 2,
            Mix::NotesAndTimeEvery(5),
        ));
        wait_until(
            DRAIN_TIMEOUT,
            "bolt's publishes to be acknowledged by the broker",
            || probe.acked() == probe.sent(),
        );
        assert!(
            Raw::connect(&net.nats.url()).stream_len(&stream) > 0,
            "the stream should hold what the receiver has not consumed"
        );
        net.nats.restart_wiped();
        assert_eq!(
            Raw::connect(&net.nats.url()).stream_len(&stream),
            0,
            "the wiped broker still holds messages"
        );
        assert_eq!(
            probe.received(),
            before,
            "the receiver moved while it was stopped"
        );
        lost_by_broker.push(probe.sent() - before);
        receiver = Daemon::start_ready(&acme);
        if newer_after_wipe > 0 {
            ids.extend(generate(&bolt, &tickets, newer_after_wipe, Mix::Notes));
        }
        wait_drained(&probe, "acme to recover what the wiped broker lost");
        let (st, stats, log) = receiver.term();
        assert_eq!(st.code(), Some(0), "receiver exit: {log}");
        let stats = stats.expect("counters");
        assert!(
            stats.resend_requests > 0,
            "the receiver healed without asking for a resend: {stats:?}"
        );
        resends += stats.resend_requests;
        receiver = Daemon::start_ready(&acme);
    }
    let rs = receiver.stop();
    let ss = sender.stop();
    eprintln!("wipe run: last receiver {rs:?}; sender {ss:?}");
    assert_exactly_once(
        "wiped-store run",
        &bolt,
        &acme,
        &ids,
        &format!(
            "wipes 2, entries the broker lost {lost_by_broker:?}, resend requests {resends}, \
             elapsed {:?}",
            started.elapsed()
        ),
    );
}

#[test]
fn given_a_stream_of_events_when_either_daemon_gets_sigterm_mid_stream_then_it_exits_0_and_after_a_restart_nothing_is_lost_or_duplicated(
) {
    sigterm_mid_stream(false);
}

#[test]
fn given_a_sender_on_postgresql_when_either_daemon_gets_sigterm_mid_stream_then_nothing_is_lost_or_duplicated(
) {
    // bolt's relay reads its outbox from PostgreSQL while its commands append to it.
    sigterm_mid_stream(true);
}

/// bolt sends a stream of events to acme; the daemons get SIGTERM in turn mid-stream.
fn sigterm_mid_stream(bolt_on_postgres: bool) {
    let started = Instant::now();
    let (_net, acme, bolt) = acme_and_bolt_on(bolt_on_postgres);
    let tickets = live_tickets(&acme, &bolt, SMALL_RUN_TICKETS);
    let probe = Probe::new(&bolt, &acme);
    let mut rng = Rng::new(seed(0x5167_7E44));
    let events = SMALL_RUN_EVENTS * 3 / 2;
    let points = spread_points(&mut rng, events, 6);

    let mut sender = Some(Daemon::start_ready(&bolt));
    let mut receiver = Some(Daemon::start_ready(&acme));
    let gen = Generator::start(&bolt, &tickets, events, Mix::NotesAndTimeEvery(4));
    let mut stops = vec![];
    for (i, &p) in points.iter().enumerate() {
        wait_generated(&gen, p);
        // receiver, sender, receiver, sender, …
        let (slot, site) = if i % 2 == 0 {
            (&mut receiver, &acme)
        } else {
            (&mut sender, &bolt)
        };
        let d = slot.take().expect("running");
        let name = d.name.clone();
        // Frozen, the daemon falls behind the generator (a receiver has entries published to
        // it and not applied, a sender entries committed and not published), so the SIGTERM
        // lands mid-stream by construction, not by the luck of timing.
        let pending = pause_until_behind(&d, &probe, &gen);
        let (status, stats, log) = d.term();
        assert_eq!(
            status.code(),
            Some(0),
            "the {name} daemon did not exit 0 on SIGTERM mid-stream: {status:?}; log:\n{log}"
        );
        assert!(
            stats.is_some(),
            "the {name} daemon printed no counters on SIGTERM; log:\n{log}"
        );
        stops.push((name, gen.count(), pending));
        *slot = Some(Daemon::start_ready(site));
    }
    let ids = gen.join();
    wait_drained(
        &probe,
        "acme to hold bolt's whole channel after the SIGTERMs",
    );
    receiver.take().expect("running").stop();
    sender.take().expect("running").stop();
    eprintln!("sigterm run: stops (daemon, commands done, entries pending): {stops:?}");
    assert_exactly_once(
        "SIGTERM run",
        &bolt,
        &acme,
        &ids,
        &format!(
            "SIGTERMs {} (all exit 0), elapsed {:?}",
            stops.len(),
            started.elapsed()
        ),
    );
}
