//! `service/dashboard/api.js` is exactly what `marzneshin openapi --client` prints: the
//! dashboard's API client never drifts from the spec.

use std::process::Command;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard/api.js");

#[test]
fn checked_in_client_is_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_marzneshin"))
        .args(["openapi", "--client"])
        .output()
        .expect("run marzneshin openapi --client");
    assert!(
        out.status.success(),
        "marzneshin openapi --client failed: {out:?}"
    );
    let generated = String::from_utf8(out.stdout).expect("UTF-8 client");
    assert!(generated.contains("export class Api extends ApiBase"));
    let regenerate = service::dashboard::client::REGENERATE;
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_else(|e| {
        panic!("cannot read service/dashboard/api.js ({e}); create it with `{regenerate}`")
    });
    if checked_in != generated {
        let line = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || {
                    format!(
                        "{} lines checked in, {} generated",
                        checked_in.lines().count(),
                        generated.lines().count()
                    )
                },
                |i| format!("first difference at line {}", i + 1),
            );
        panic!("service/dashboard/api.js is out of date ({line}).\nRegenerate it with:\n    {regenerate}");
    }
}

/// Every call the dashboard's pages make names a method the client has.
#[test]
fn pages_call_only_methods_the_client_has() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard");
    let client = std::fs::read_to_string(CHECKED_IN).unwrap();
    for page in ["app.js", "users.js", "pages.js"] {
        let text = std::fs::read_to_string(format!("{dir}/{page}")).unwrap();
        for (at, _) in text.match_indices("api.") {
            let name: String = text[at + 4..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if name.is_empty()
                || name == "js"
                || !name.starts_with(|c: char| c.is_ascii_lowercase())
            {
                continue;
            }
            assert!(
                client.contains(&format!("\n  {name}(")),
                "{page} calls api.{name}, which api.js does not have"
            );
        }
    }
}
