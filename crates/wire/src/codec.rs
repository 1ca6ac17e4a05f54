//! Encoding events to their stored bytes and back, upcasting older schema versions.

use ticketsync_domain::Event;

use crate::v1::EventV1;

/// The schema version new events are written with.
pub const SCHEMA_VERSION: u16 = 1;
/// Largest encoded event payload accepted, in bytes (text limits keep real events far below).
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("event schema version {found} is newer than this ticketsync understands (up to {SCHEMA_VERSION}); upgrade ticketsync")]
    TooNew { found: u16 },
    #[error("event schema version {0} does not exist")]
    UnknownVersion(u16),
    #[error("event payload of {0} bytes is larger than the limit of {MAX_PAYLOAD_BYTES}")]
    TooLarge(usize),
    #[error("event payload does not decode as schema version {version}: {source}")]
    Decode {
        version: u16,
        source: postcard::Error,
    },
    #[error("event payload decodes, but {0}")]
    Mismatch(String),
    #[error("cannot encode event: {0}")]
    Encode(postcard::Error),
}

/// Encodes a domain event with the current schema version.
pub fn encode_event(e: &Event) -> Result<Vec<u8>, WireError> {
    let v1 = EventV1::from(e);
    let bytes = postcard::to_stdvec(&v1).map_err(WireError::Encode)?;
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    // Never store bytes that would not read back as the same event.
    if decode_current(SCHEMA_VERSION, &bytes)? != v1 {
        return Err(WireError::Mismatch(
            "it does not read back as the event that was encoded".into(),
        ));
    }
    Ok(bytes)
}

/// Decodes stored bytes of any known schema version into the current domain event.
pub fn decode_event(schema_version: u16, bytes: &[u8]) -> Result<Event, WireError> {
    Event::try_from(decode_current(schema_version, bytes)?).map_err(WireError::Mismatch)
}

/// Decodes, upcasting to the current schema. Version 1 is the only one so far; a version 2
/// would decode its own layout here and map version 1 through an upcaster.
fn decode_current(schema_version: u16, bytes: &[u8]) -> Result<EventV1, WireError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    match schema_version {
        1 => {
            let (ev, rest) = postcard::take_from_bytes::<EventV1>(bytes)
                .map_err(|source| WireError::Decode { version: 1, source })?;
            if !rest.is_empty() {
                return Err(WireError::Mismatch(format!(
                    "{} trailing bytes follow it",
                    rest.len()
                )));
            }
            Ok(ev)
        }
        v if v > SCHEMA_VERSION => Err(WireError::TooNew { found: v }),
        v => Err(WireError::UnknownVersion(v)),
    }
}

/// The readable JSON `data` of a stored event, and its type name (e.g. `note_added`).
pub fn event_data_json(
    schema_version: u16,
    bytes: &[u8],
) -> Result<(String, serde_json::Value), WireError> {
    let ev = decode_current(schema_version, bytes)?;
    let tagged = serde_json::to_value(&ev).map_err(|e| WireError::Mismatch(e.to_string()))?;
    match tagged {
        serde_json::Value::Object(map) if map.len() == 1 => {
            let (k, v) = map.into_iter().next().expect("map has one entry");
            Ok((k, v))
        }
        other => Err(WireError::Mismatch(format!(
            "unexpected JSON shape {other}"
        ))),
    }
}
