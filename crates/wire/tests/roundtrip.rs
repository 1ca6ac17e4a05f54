//! Property tests of the codec: any domain event encodes to bytes that decode to the same
//! event and re-encode to the same bytes, and a `replay --json` line survives JSON and
//! renders its event losslessly.

use chrono::NaiveDate;
use proptest::prelude::*;
use rust_decimal::Decimal;
use ticketsync_domain::{Attachment, Charge, Event, ItemId, ItemKind, Sha256Digest, TimeEntry};
use ticketsync_wire::replay::ReplayActor;
use ticketsync_wire::v1::EventV1;
use ticketsync_wire::{
    decode_event, encode_event, event_data_json, LogEntry, NewEntry, ReplayLine, GENESIS_HASH,
    SCHEMA_VERSION,
};
use ulid::Ulid;

/// Text as users type it (letters, accents, CJK, emoji, newlines, tabs) and, sometimes,
/// any Unicode at all: the codec must carry every string, validation is the domain's job.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 .,:;!?'\"()&/@#%-]{0,40}",
        3 => "[a-zäöüßéèçñ漢字日本語한국어😀🖨️✓€ \n\t]{0,24}",
        2 => any::<String>(),
        1 => Just(String::new()),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

/// Decimals as the domain carries them (scale 0 to 4), and now and then any scale the
/// type allows, negative ones included: the wire must not lose a digit or the scale.
fn decimal() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        4 => (any::<i64>(), 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s)),
        2 => (0i64..=2_400, 0u32..=2).prop_map(|(m, s)| Decimal::new(m, s)),
        1 => (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s)),
    ]
}

fn date() -> impl Strategy<Value = NaiveDate> {
    // 1900-01-01 to 2199-12-31, as days from the common era.
    (693_596i32..=803_533).prop_map(|d| NaiveDate::from_num_days_from_ce_opt(d).expect("in range"))
}

fn item_id() -> impl Strategy<Value = ItemId> {
    any::<u128>().prop_map(|u| ItemId(Ulid(u)))
}

fn time_entry() -> impl Strategy<Value = TimeEntry> {
    (
        decimal(),
        decimal(),
        text(),
        opt_text(),
        text(),
        date(),
        any::<bool>(),
    )
        .prop_map(
            |(hours, offset_hours, resource, role, summary, date, billable)| TimeEntry {
                hours,
                offset_hours,
                resource,
                role,
                summary,
                date,
                billable,
            },
        )
}

fn charge() -> impl Strategy<Value = Charge> {
    (text(), decimal(), decimal(), decimal(), any::<bool>()).prop_map(
        |(description, quantity, unit_cost, unit_price, billable)| Charge {
            description,
            quantity,
            unit_cost,
            unit_price,
            billable,
        },
    )
}

fn attachment() -> impl Strategy<Value = Attachment> {
    (
        any::<[u8; 32]>(),
        text(),
        any::<u64>(),
        text(),
        any::<bool>(),
    )
        .prop_map(|(sha, filename, size, media_type, internal)| Attachment {
            sha256: Sha256Digest(sha),
            filename,
            size,
            media_type,
            internal,
        })
}

fn item_kind() -> impl Strategy<Value = ItemKind> {
    prop_oneof![
        Just(ItemKind::Note),
        Just(ItemKind::Time),
        Just(ItemKind::Charge),
        Just(ItemKind::Attachment),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (text(), text(), opt_text(), text()).prop_map(|(title, description, customer, status)| {
            Event::TicketCreated {
                title,
                description,
                customer,
                status,
            }
        }),
        (text(), text()).prop_map(|(from, to)| Event::StatusChanged { from, to }),
        (item_id(), text(), any::<bool>()).prop_map(|(item, text, internal)| {
            Event::NoteAdded {
                item,
                text,
                internal,
            }
        }),
        (item_id(), text(), any::<bool>()).prop_map(|(item, text, internal)| {
            Event::NoteEdited {
                item,
                text,
                internal,
            }
        }),
        (item_id(), time_entry()).prop_map(|(item, entry)| Event::TimeAdded { item, entry }),
        (item_id(), time_entry()).prop_map(|(item, entry)| Event::TimeEdited { item, entry }),
        (item_id(), charge()).prop_map(|(item, charge)| Event::ChargeAdded { item, charge }),
        (item_id(), charge()).prop_map(|(item, charge)| Event::ChargeEdited { item, charge }),
        (item_id(), attachment())
            .prop_map(|(item, attachment)| Event::AttachmentAdded { item, attachment }),
        (item_id(), item_kind()).prop_map(|(item, kind)| Event::ItemDeleted { item, kind }),
    ]
}

/// Every decimal of an event, to compare scales (Decimal's `==` ignores them).
fn decimals(e: &Event) -> Vec<Decimal> {
    match e {
        Event::TimeAdded { entry, .. } | Event::TimeEdited { entry, .. } => {
            vec![entry.hours, entry.offset_hours]
        }
        Event::ChargeAdded { charge, .. } | Event::ChargeEdited { charge, .. } => {
            vec![charge.quantity, charge.unit_cost, charge.unit_price]
        }
        _ => vec![],
    }
}

fn scales(e: &Event) -> Vec<u32> {
    decimals(e).iter().map(Decimal::scale).collect()
}

/// The externally tagged JSON of an event, `{"<type>": data}`, as `replay` splits it.
fn tagged(type_name: &str, data: serde_json::Value) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert(type_name.to_string(), data);
    serde_json::Value::Object(map)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_the_same_event(e in event()) {
        let bytes = encode_event(&e).expect("every domain event encodes");
        let back = decode_event(SCHEMA_VERSION, &bytes).expect("its bytes decode");
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(scales(&back), scales(&e), "a decimal lost its scale");
        // Byte-stable: decode then encode reproduces the stored bytes exactly.
        prop_assert_eq!(encode_event(&back).expect("re-encodes"), bytes);
    }

    #[test]
    fn the_json_rendering_is_lossless_and_named_by_type(e in event()) {
        let bytes = encode_event(&e).expect("encodes");
        let (type_name, data) = event_data_json(SCHEMA_VERSION, &bytes).expect("renders");
        prop_assert_eq!(type_name.as_str(), e.type_name());
        // The JSON a `replay` line carries reads back as the very same event.
        let v1: EventV1 =
            serde_json::from_value(tagged(&type_name, data)).expect("replay JSON reads back");
        let back = Event::try_from(v1).expect("known values");
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(scales(&back), scales(&e));
    }

    #[test]
    fn a_stray_byte_after_any_event_is_refused(e in event(), extra in any::<u8>()) {
        let mut bytes = encode_event(&e).expect("encodes");
        bytes.push(extra);
        prop_assert!(decode_event(SCHEMA_VERSION, &bytes).is_err());
    }

    #[test]
    fn a_replay_line_of_any_entry_survives_json(
        e in event(),
        position in 1u64..=u64::MAX,
        version in 1u64..=u64::MAX,
        ids in any::<(u128, u128)>(),
        occurred_at in any::<i64>(),
        recorded_at in any::<i64>(),
        actor in (text(), text()),
        prev in any::<[u8; 32]>(),
    ) {
        let new = NewEntry {
            link_seq: 0,
            event_id: Ulid(ids.0),
            stream_id: Ulid(ids.1),
            schema_version: SCHEMA_VERSION,
            event_type: e.type_name().to_string(),
            occurred_at,
            actor_instance: actor.0.clone(),
            actor_user: actor.1.clone(),
            payload: encode_event(&e).expect("encodes"),
        };
        let entry = LogEntry::seal(new, position, version, recorded_at, prev);
        let line = ReplayLine::from_entry(&entry).expect("renders");
        prop_assert_eq!(line.position, position);
        prop_assert_eq!(&line.event_id, &Ulid(ids.0).to_string());
        prop_assert_eq!(&line.prev_hash, &hex::encode(prev));
        prop_assert_eq!(&line.hash, &hex::encode(entry.hash));
        prop_assert_eq!(&line.event_type, e.type_name());

        let json = serde_json::to_string(&line).expect("serializes");
        prop_assert!(!json.contains('\n'), "a replay line is one line");
        let back: ReplayLine = serde_json::from_str(&json).expect("deserializes");
        prop_assert_eq!(&back, &line);

        let v1: EventV1 = serde_json::from_value(tagged(&back.event_type, back.data.clone()))
            .expect("data reads back");
        prop_assert_eq!(Event::try_from(v1).expect("known values"), e);
    }

    #[test]
    fn any_replay_line_survives_json(
        position in any::<u64>(),
        version in any::<u64>(),
        schema_version in any::<u16>(),
        link_seq in any::<u32>(),
        strings in prop::collection::vec(text(), 9),
        n in any::<i64>(),
        flag in any::<bool>(),
    ) {
        let line = ReplayLine {
            position,
            event_id: strings[0].clone(),
            ticket_id: strings[1].clone(),
            version,
            schema_version,
            event_type: strings[2].clone(),
            occurred_at: strings[3].clone(),
            recorded_at: strings[4].clone(),
            actor: ReplayActor { instance: strings[5].clone(), user: strings[6].clone() },
            link_seq,
            prev_hash: strings[7].clone(),
            hash: hex::encode(GENESIS_HASH),
            data: serde_json::json!({
                "text": strings[8].clone(),
                "n": n,
                "flag": flag,
                "nested": { "list": [n, null, strings[0].clone()] },
            }),
        };
        let json = serde_json::to_string(&line).expect("serializes");
        let back: ReplayLine = serde_json::from_str(&json).expect("deserializes");
        prop_assert_eq!(back, line);
    }
}
