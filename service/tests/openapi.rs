//! `openapi/openapi.json` is exactly what `marzneshin openapi` prints: the checked-in spec
//! never drifts from the code.

use std::process::Command;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
const REGENERATE: &str = "cargo run -p service -- openapi > openapi/openapi.json";

#[test]
fn checked_in_spec_is_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_marzneshin"))
        .arg("openapi")
        .output()
        .expect("run marzneshin openapi");
    assert!(out.status.success(), "marzneshin openapi failed: {out:?}");
    let generated = String::from_utf8(out.stdout).expect("UTF-8 spec");
    let spec: serde_json::Value = serde_json::from_str(&generated).expect("the spec is JSON");
    assert!(spec["paths"].as_object().is_some_and(|p| !p.is_empty()));
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_else(|e| {
        panic!("cannot read openapi/openapi.json ({e}); create it with `{REGENERATE}`")
    });
    if checked_in != generated {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map(|i| {
                format!(
                    "line {}: checked in {:?}, generated {:?}",
                    i + 1,
                    checked_in.lines().nth(i).unwrap_or_default(),
                    generated.lines().nth(i).unwrap_or_default()
                )
            })
            .unwrap_or_else(|| {
                format!(
                    "{} lines checked in, {} generated",
                    checked_in.lines().count(),
                    generated.lines().count()
                )
            });
        panic!(
            "openapi/openapi.json is out of date ({first_difference}).\nRegenerate it with:\n    {REGENERATE}"
        );
    }
}
