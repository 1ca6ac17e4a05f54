//! The JSON Schemas in `schemas/` are generated from the wire types; this test fails when
//! the committed files drift from the code. Regenerate with `TICKETSYNC_BLESS=1 cargo test`.

use std::path::PathBuf;

use schemars::schema_for;
use ticketsync_wire::v1::EventV1;
use ticketsync_wire::ReplayLine;

fn check(name: &str, schema: schemars::Schema) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas")
        .join(name);
    let generated = serde_json::to_string_pretty(&schema).expect("schema renders") + "\n";
    if std::env::var_os("TICKETSYNC_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with TICKETSYNC_BLESS=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        committed,
        generated,
        "{} drifted from the code; regenerate with TICKETSYNC_BLESS=1",
        path.display()
    );
}

#[test]
fn events_v1_schema_matches_the_committed_file() {
    check("events-v1.schema.json", schema_for!(EventV1));
}

#[test]
fn replay_line_schema_matches_the_committed_file() {
    check("replay-line.schema.json", schema_for!(ReplayLine));
}
