//! The checked-in C header must be exactly what cbindgen generates from the crate.
//!
//! Regenerate it with `MZN_UPDATE_HEADER=1 cargo test -p engine-ffi --test header`.

use std::path::Path;

#[test]
fn checked_in_header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("UTF-8 header");
    let path = dir.join("include/marzneshin.h");
    if std::env::var_os("MZN_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write include/marzneshin.h");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "engine-ffi/include/marzneshin.h is stale: regenerate it with \
         `MZN_UPDATE_HEADER=1 cargo test -p engine-ffi --test header` and commit it"
    );
}
