//! The store contract for the replication tables, run against every backend: the outbox
//! written with the log in one transaction, its chain and `verify_channels`, the inbound
//! checkpoint of `apply_inbound` (duplicate, gap, broken chain, quarantine), partners.

#[macro_use]
mod support;

use support::{Db, Kind};
use ticketsync_domain::{Event, ItemId};
use ticketsync_store::{
    verify_channels, ChannelEntry, Inbound, Outgoing, Partner, PartnerState, Store, StoreError,
    StreamAppend,
};
use ticketsync_wire::{channel_hash, encode_event, NewEntry, GENESIS_HASH, SCHEMA_VERSION};
use ulid::Ulid;

fn note(n: u128, text: &str) -> NewEntry {
    let ev = Event::NoteAdded {
        item: ItemId(Ulid(n)),
        text: text.into(),
        internal: false,
    };
    NewEntry {
        event_id: Ulid(1000 + n),
        stream_id: Ulid(7),
        schema_version: SCHEMA_VERSION,
        event_type: ev.type_name().into(),
        occurred_at: 1,
        actor_instance: "acme".into(),
        actor_user: "alice".into(),
        link_seq: 3,
        payload: encode_event(&ev).expect("encode"),
    }
}

fn out(body: &[u8]) -> Outgoing {
    Outgoing {
        from: "acme".into(),
        to: "bolt".into(),
        event_id: None,
        body: body.to_vec(),
    }
}

async fn add_partner(s: &dyn Store, name: &str) {
    s.put_partner(&Partner {
        name: name.into(),
        state: PartnerState::Paired,
        secret: [9; 32],
        created_at: 1,
        expires_at: None,
        paired_at: Some(1),
        organization: None,
    })
    .await
    .expect("partner");
}

/// The entry that follows `prev` on the channel acme -> bolt.
fn next(prev: &ChannelEntry, body: &[u8]) -> ChannelEntry {
    let seq = prev.seq + 1;
    ChannelEntry {
        seq,
        prev_hash: prev.hash,
        hash: channel_hash(&prev.hash, seq, "acme", "bolt", body),
        body: body.to_vec(),
    }
}

fn genesis() -> ChannelEntry {
    ChannelEntry {
        seq: 0,
        prev_hash: GENESIS_HASH,
        hash: GENESIS_HASH,
        body: vec![],
    }
}

async fn given_routed_append_when_read_then_outbox_chain_continues_and_verifies(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    add_partner(s, "bolt").await;
    let batch = vec![StreamAppend {
        stream_id: Ulid(7),
        expected_version: 0,
        entries: vec![note(1, "a")],
    }];
    s.append_routed(1, batch, vec![out(b"one"), out(b"two")])
        .await
        .expect("append");
    let batch = vec![StreamAppend {
        stream_id: Ulid(7),
        expected_version: 1,
        entries: vec![note(2, "b")],
    }];
    s.append_routed(2, batch, vec![out(b"three")])
        .await
        .expect("append");
    let entries = s.read_outbox("bolt", 0, 100).await.expect("read");
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let mut prev = genesis();
    for e in &entries {
        assert_eq!(*e, next(&prev, &e.body));
        prev = e.clone();
    }
    let head = s.outbox_head("bolt").await.expect("head");
    assert_eq!((head.seq, head.hash), (3, entries[2].hash));
    let r = verify_channels(s, "acme").await.expect("verify");
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].checked, r[0].head, r[0].problem.clone()),
        (3, head, None)
    );
}

async fn given_stale_version_when_routed_append_then_neither_events_nor_outbox_written(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    add_partner(s, "bolt").await;
    let batch = vec![StreamAppend {
        stream_id: Ulid(7),
        expected_version: 4,
        entries: vec![note(1, "a")],
    }];
    let err = s
        .append_routed(1, batch, vec![out(b"one")])
        .await
        .expect_err("stale");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(s.count_entries().await.expect("count"), 0);
    assert_eq!(s.outbox_head("bolt").await.expect("head").seq, 0);
}

async fn given_outbox_row_changed_behind_the_triggers_when_verify_channels_then_seq_named(
    kind: Kind,
) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    add_partner(s, "bolt").await;
    s.append_routed(1, vec![], vec![out(b"one"), out(b"two"), out(b"three")])
        .await
        .expect("append");
    // The triggers refuse the change through the store's own connections.
    let tamper = format!(
        "UPDATE channel_out SET body = {} WHERE seq = 2",
        kind.blob_literal()
    );
    for sql in [tamper.as_str(), "DELETE FROM channel_out WHERE seq = 3"] {
        let refused = db.exec_as_app(sql).await;
        match refused {
            Err(e) => assert!(e.contains("append-only"), "{sql}: {e}"),
            Ok(n) => panic!("the outbox accepted {sql} ({n} rows)"),
        }
    }
    db.without_guards("channel_out", &tamper).await;
    let r = verify_channels(s, "acme").await.expect("verify");
    let (seq, detail) = r[0].problem.clone().expect("a problem");
    assert_eq!(seq, 2, "{detail}");
    assert_eq!(r[0].head.seq, 1);
}

async fn given_inbound_entries_when_applied_in_order_then_duplicates_gaps_and_forgeries_write_nothing(
    kind: Kind,
) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    let e1 = next(&genesis(), b"first");
    let batch = vec![StreamAppend {
        stream_id: Ulid(7),
        expected_version: 0,
        entries: vec![note(1, "a")],
    }];
    assert_eq!(
        s.apply_inbound("acme", "bolt", &e1, 5, batch, None)
            .await
            .expect("apply"),
        Inbound::Applied { appended: 1 }
    );
    // The same entry again: a duplicate, nothing written.
    let batch = vec![StreamAppend {
        stream_id: Ulid(7),
        expected_version: 1,
        entries: vec![note(2, "b")],
    }];
    assert_eq!(
        s.apply_inbound("acme", "bolt", &e1, 5, batch, None)
            .await
            .expect("apply"),
        Inbound::Duplicate
    );
    assert_eq!(s.count_entries().await.expect("count"), 1);
    // Entry 3 before 2: a gap, nothing written.
    let e2 = next(&e1, b"second");
    let e3 = next(&e2, b"third");
    assert_eq!(
        s.apply_inbound("acme", "bolt", &e3, 5, vec![], None)
            .await
            .expect("apply"),
        Inbound::Gap { expected: 2 }
    );
    // Entry 2 with a body that does not hash to it: a broken chain, nothing written.
    let mut forged = e2.clone();
    forged.body = b"forged".to_vec();
    assert_eq!(
        s.apply_inbound("acme", "bolt", &forged, 5, vec![], None)
            .await
            .expect("apply"),
        Inbound::BrokenChain
    );
    // The same chain on another channel does not fit either (the hash names the channel).
    assert_eq!(
        s.apply_inbound("cato", "bolt", &e1, 5, vec![], None)
            .await
            .expect("apply"),
        Inbound::BrokenChain
    );
    assert_eq!(s.inbound_head("acme").await.expect("head").seq, 1);
    // Entry 2 refused by the domain: quarantined, and the channel moves on.
    let q = Some((
        "role_forbidden".to_string(),
        "a partner may not approve".to_string(),
        Some("E".to_string()),
    ));
    assert_eq!(
        s.apply_inbound("acme", "bolt", &e2, 6, vec![], q)
            .await
            .expect("apply"),
        Inbound::Applied { appended: 0 }
    );
    let head = s.inbound_head("acme").await.expect("head");
    assert_eq!((head.seq, head.hash), (2, e2.hash));
    let records = s.list_quarantine().await.expect("list");
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].seq, records[0].kind.as_str()),
        (Some(2), "role_forbidden")
    );
    // An event already held is left out when it arrives again inside a later entry.
    let batch = vec![StreamAppend {
        stream_id: Ulid(7),
        expected_version: 1,
        entries: vec![note(1, "a")],
    }];
    assert_eq!(
        s.apply_inbound("acme", "bolt", &e3, 7, batch, None)
            .await
            .expect("apply"),
        Inbound::Applied { appended: 0 }
    );
    assert_eq!(s.count_entries().await.expect("count"), 1);
}

async fn given_acked_seq_when_set_lower_then_it_never_moves_back(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    s.set_outbox_acked("bolt", 5).await.expect("set");
    s.set_outbox_acked("bolt", 3).await.expect("set");
    assert_eq!(s.outbox_acked("bolt").await.expect("get"), 5);
}

fn one_note(version: u64, n: u128) -> Vec<StreamAppend> {
    vec![StreamAppend {
        stream_id: Ulid(7),
        expected_version: version,
        entries: vec![note(n, "run")],
    }]
}

async fn given_a_run_of_inbound_entries_when_applied_together_then_each_applies_in_order_and_a_broken_link_stops_the_run(
    kind: Kind,
) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    let e1 = next(&genesis(), b"one");
    let e2 = next(&e1, b"two");
    let e3 = next(&e2, b"three");
    let r = s
        .apply_inbound_many(
            "acme",
            "bolt",
            5,
            vec![
                (e1.clone(), one_note(0, 11)),
                (e2.clone(), one_note(1, 12)),
                (e3.clone(), one_note(2, 13)),
            ],
        )
        .await
        .expect("apply run");
    assert_eq!(r, vec![Inbound::Applied { appended: 1 }; 3]);
    assert_eq!(s.count_entries().await.expect("count"), 3);
    let head = s.inbound_head("acme").await.expect("head");
    assert_eq!((head.seq, head.hash), (e3.seq, e3.hash));

    // Again: the first is a duplicate and the run stops there, writing nothing.
    let r = s
        .apply_inbound_many("acme", "bolt", 5, vec![(e1.clone(), one_note(3, 14))])
        .await
        .expect("apply duplicate");
    assert_eq!(r, vec![Inbound::Duplicate]);
    // A run whose second entry does not continue the chain: the first applies, the run stops.
    let e4 = next(&e3, b"four");
    let mut forged = next(&e4, b"five");
    forged.prev_hash = [0x42; 32];
    let r = s
        .apply_inbound_many(
            "acme",
            "bolt",
            5,
            vec![(e4.clone(), one_note(3, 15)), (forged, one_note(4, 16))],
        )
        .await
        .expect("apply with a forgery");
    assert_eq!(
        r,
        vec![Inbound::Applied { appended: 1 }, Inbound::BrokenChain]
    );
    assert_eq!(s.count_entries().await.expect("count"), 4);
    assert_eq!(s.inbound_head("acme").await.expect("head").seq, 4);
}

contract_tests!(
    given_routed_append_when_read_then_outbox_chain_continues_and_verifies,
    given_stale_version_when_routed_append_then_neither_events_nor_outbox_written,
    given_outbox_row_changed_behind_the_triggers_when_verify_channels_then_seq_named,
    given_inbound_entries_when_applied_in_order_then_duplicates_gaps_and_forgeries_write_nothing,
    given_acked_seq_when_set_lower_then_it_never_moves_back,
    given_a_run_of_inbound_entries_when_applied_together_then_each_applies_in_order_and_a_broken_link_stops_the_run,
);
