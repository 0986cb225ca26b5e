//! The C API called the way a careless C caller would: NULL pointers, bad documents, stopping
//! twice, using a stopped engine, tiny buffers. Every case must come back as a result code (and
//! a message naming what was wrong), never a crash.

use std::ffi::{c_char, CStr};
use std::ptr::{null, null_mut};

use engine_ffi::*;
use serde_json::json;

/// The thread's last error message.
fn last_error() -> String {
    let mut buf = [0 as c_char; 1024];
    let mut len = 0;
    // SAFETY: `buf` is writable for its length and `len` for a usize.
    let r = unsafe { mzn_last_error(buf.as_mut_ptr(), buf.len(), &mut len) };
    assert_eq!(r, mzn_result::Ok);
    // SAFETY: `mzn_last_error` NUL-terminates what it writes.
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
    assert_eq!(text.len(), len);
    text.to_owned()
}

fn new_engine(config: &str) -> Result<*mut mzn_engine, mzn_result> {
    let mut engine = null_mut();
    // SAFETY: `config` is valid for its length; `engine` is writable.
    match unsafe { mzn_engine_new(config.as_ptr().cast(), config.len(), &mut engine) } {
        mzn_result::Ok => Ok(engine),
        e => {
            assert!(engine.is_null(), "out must be NULL after a failure");
            Err(e)
        }
    }
}

fn inbound(tag: &str, listen: &str) -> serde_json::Value {
    json!({
        "tag": tag, "listen": listen, "network": ["tcp"], "protocol": "shadowsocks",
        "settings": {"method": "aes-128-gcm", "users": []},
    })
}

fn running_engine() -> *mut mzn_engine {
    let config = json!({"workers": 1, "inbounds": [inbound("ss", "127.0.0.1:0")]});
    new_engine(&config.to_string()).unwrap_or_else(|e| panic!("{e:?}: {}", last_error()))
}

fn upsert(engine: *const mzn_engine, users: &str) -> mzn_result {
    // SAFETY: `engine` is NULL or live; `users` is valid for its length.
    unsafe { mzn_engine_upsert_users(engine, users.as_ptr().cast(), users.len()) }
}

fn remove(engine: *const mzn_engine, names: &str, removed: *mut usize) -> mzn_result {
    // SAFETY: `engine` is NULL or live; `names` is valid for its length; `removed` is NULL or
    // writable.
    unsafe { mzn_engine_remove_users(engine, names.as_ptr().cast(), names.len(), removed) }
}

fn apply(engine: *const mzn_engine, inbounds: &str) -> mzn_result {
    // SAFETY: `engine` is NULL or live; `inbounds` is valid for its length.
    unsafe { mzn_engine_apply_inbounds(engine, inbounds.as_ptr().cast(), inbounds.len()) }
}

fn counters(engine: *const mzn_engine, name: &CStr) -> Result<mzn_user_counters, mzn_result> {
    let mut c = mzn_user_counters::default();
    // SAFETY: `engine` is NULL or live; `name` is NUL-terminated; `c` is writable.
    match unsafe { mzn_engine_user_counters(engine, name.as_ptr(), &mut c) } {
        mzn_result::Ok => Ok(c),
        e => Err(e),
    }
}

fn stats(engine: *const mzn_engine) -> serde_json::Value {
    let mut s = null_mut();
    // SAFETY: `engine` is live; `s` is writable.
    assert_eq!(
        unsafe { mzn_engine_stats_json(engine, &mut s) },
        mzn_result::Ok
    );
    // SAFETY: `s` is a live string from the library, freed right after.
    let text = unsafe { CStr::from_ptr(mzn_string_ptr(s)) }
        .to_str()
        .unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { mzn_string_len(s) }, text.len());
    let value = serde_json::from_str(text).unwrap();
    // SAFETY: `s` came from `mzn_engine_stats_json` and is not used again.
    unsafe { mzn_string_free(s) };
    value
}

#[test]
fn null_pointers_are_refused_everywhere() {
    let mut out = null_mut();
    let (mut n, mut port) = (0usize, 0u16);
    let mut c = mzn_user_counters::default();
    let mut s = null_mut();
    let tag = c"ss";
    // SAFETY: every non-NULL pointer below is valid; the NULL ones are what is being tested.
    unsafe {
        assert_eq!(
            mzn_engine_new(null(), 0, &mut out),
            mzn_result::NullParameter
        );
        assert!(last_error().contains("config_json"));
        assert_eq!(
            mzn_engine_new(c"{}".as_ptr(), 2, null_mut()),
            mzn_result::NullParameter
        );
        assert!(last_error().contains("out"));
        assert_eq!(mzn_engine_stop(null(), 0), mzn_result::NullParameter);
        assert_eq!(upsert(null(), "[]"), mzn_result::NullParameter);
        assert_eq!(remove(null(), "[]", &mut n), mzn_result::NullParameter);
        assert_eq!(apply(null(), "[]"), mzn_result::NullParameter);
        assert_eq!(
            mzn_engine_local_port(null(), tag.as_ptr(), &mut port),
            mzn_result::NullParameter
        );
        assert_eq!(
            mzn_engine_user_counters(null(), tag.as_ptr(), &mut c),
            mzn_result::NullParameter
        );
        assert_eq!(
            mzn_engine_stats_json(null(), &mut s),
            mzn_result::NullParameter
        );
        assert!(s.is_null());
        assert_eq!(
            mzn_engine_stats_json_buf(null(), null_mut(), 0, &mut n),
            mzn_result::NullParameter
        );
        assert_eq!(last_error(), "engine: NULL pointer");
        mzn_engine_free(null_mut());
        mzn_string_free(null_mut());
        assert!(mzn_string_ptr(null()).is_null());
        assert_eq!(mzn_string_len(null()), 0);
    }

    let engine = running_engine();
    // SAFETY: `engine` is live until freed at the end; NULL arguments are what is tested.
    unsafe {
        assert_eq!(
            mzn_engine_upsert_users(engine, null(), 0),
            mzn_result::NullParameter
        );
        assert_eq!(
            mzn_engine_remove_users(engine, null(), 0, &mut n),
            mzn_result::NullParameter
        );
        assert_eq!(
            mzn_engine_apply_inbounds(engine, null(), 0),
            mzn_result::NullParameter
        );
        assert_eq!(
            mzn_engine_set_routing(engine, null(), 0),
            mzn_result::NullParameter
        );
        assert_eq!(
            mzn_engine_local_port(engine, null(), &mut port),
            mzn_result::NullParameter
        );
        assert_eq!(
            mzn_engine_local_port(engine, tag.as_ptr(), null_mut()),
            mzn_result::NullParameter
        );
        assert_eq!(
            mzn_engine_user_counters(engine, null(), &mut c),
            mzn_result::NullParameter
        );
        assert_eq!(
            mzn_engine_user_counters(engine, tag.as_ptr(), null_mut()),
            mzn_result::NullParameter
        );
        assert_eq!(
            mzn_engine_stats_json(engine, null_mut()),
            mzn_result::NullParameter
        );
        assert_eq!(
            mzn_engine_stats_json_buf(engine, null_mut(), 8, &mut n),
            mzn_result::NullParameter
        );
        // `removed_out` is optional.
        assert_eq!(remove(engine, "[]", null_mut()), mzn_result::Ok);
        mzn_engine_free(engine);
    }
}

#[test]
fn bad_documents_name_what_is_wrong() {
    assert_eq!(new_engine("{\"inbounds\": ["), Err(mzn_result::InvalidJson));
    assert!(last_error().starts_with("config: EOF while parsing"));
    assert_eq!(new_engine("\u{0}\u{0}"), Err(mzn_result::InvalidJson));
    let not_utf8 = b"{\xff}";
    let mut out = null_mut();
    // SAFETY: `not_utf8` is valid for its length; `out` is writable.
    let r = unsafe { mzn_engine_new(not_utf8.as_ptr().cast(), not_utf8.len(), &mut out) };
    assert_eq!(r, mzn_result::InvalidUtf8);
    assert!(last_error().starts_with("config_json: invalid utf-8"));

    let bad_method = json!({"inbounds": [{
        "tag": "a", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
        "settings": {"method": "rc4", "users": []},
    }]});
    assert_eq!(
        new_engine(&bad_method.to_string()),
        Err(mzn_result::InvalidConfig)
    );
    assert!(
        last_error().starts_with("inbounds[0].settings.method: unknown method"),
        "{}",
        last_error()
    );
    let bad_listen = json!({"inbounds": [{"tag": "a", "listen": "nowhere"}]});
    assert_eq!(
        new_engine(&bad_listen.to_string()),
        Err(mzn_result::InvalidConfig)
    );
    assert!(last_error().starts_with("inbounds[0].listen"));
    assert_eq!(
        new_engine(r#"{"inbounds":[],"bogus":1}"#),
        Err(mzn_result::InvalidConfig)
    );
    assert!(last_error().contains("bogus"));

    let engine = running_engine();
    assert_eq!(upsert(engine, "[1,"), mzn_result::InvalidJson);
    assert_eq!(
        upsert(engine, r#"[{"name":"a","inbounds":[{"tag":"ss"}]}]"#),
        mzn_result::InvalidConfig
    );
    assert!(
        last_error().starts_with("users[0].inbounds[0]: missing field `password`"),
        "{}",
        last_error()
    );
    assert_eq!(
        upsert(
            engine,
            r#"[{"name":"a","inbounds":[],"limits":{"max_ips":"x"}}]"#
        ),
        mzn_result::InvalidConfig
    );
    assert!(last_error().starts_with("users[0].limits.max_ips: invalid type"));
    assert_eq!(
        upsert(
            engine,
            r#"[{"name":"a","inbounds":[{"tag":"nope","password":"p"}]}]"#
        ),
        mzn_result::UnknownInbound
    );
    assert!(last_error().contains("\"nope\""));
    assert_eq!(
        upsert(
            engine,
            r#"[{"name":"a","inbounds":[]},{"name":"a","inbounds":[]}]"#
        ),
        mzn_result::BadBatch
    );
    assert_eq!(
        remove(engine, r#"{"names":[]}"#, null_mut()),
        mzn_result::InvalidConfig
    );
    assert_eq!(
        last_error(),
        "names: invalid type: map, expected a sequence at line 1 column 0"
    );
    let bad = json!([{"tag": "ss", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
                      "settings": {"method": "rc4", "users": []}}]);
    assert_eq!(apply(engine, &bad.to_string()), mzn_result::InvalidConfig);
    assert!(last_error().starts_with("inbounds[0].settings.method"));
    assert_eq!(apply(engine, "[{]"), mzn_result::InvalidJson);
    let mut port = 0;
    // SAFETY: `engine` is live; the tag is NUL-terminated; `port` is writable.
    let r = unsafe { mzn_engine_local_port(engine, c"nope".as_ptr(), &mut port) };
    assert_eq!(r, mzn_result::UnknownInbound);
    assert_eq!(counters(engine, c"nobody"), Err(mzn_result::UnknownUser));
    // SAFETY: `engine` came from `mzn_engine_new` and is not used again.
    unsafe { mzn_engine_free(engine) };
}

#[test]
fn a_taken_port_is_a_bind_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let config = json!({"workers": 1, "inbounds": [inbound("ss", &addr)]});
    assert_eq!(new_engine(&config.to_string()), Err(mzn_result::Bind));
    assert!(last_error().contains(&addr), "{}", last_error());
}

#[test]
fn stop_twice_and_use_after_stop_are_codes() {
    let engine = running_engine();
    let users = r#"[{"name":"alice","inbounds":[{"tag":"ss","password":"pw"}]}]"#;
    assert_eq!(upsert(engine, users), mzn_result::Ok);
    assert_eq!(last_error(), "", "a success clears the last error");
    // SAFETY: `engine` is live until freed at the end of the test.
    unsafe {
        assert_eq!(mzn_engine_stop(engine, 100), mzn_result::Ok);
        assert_eq!(mzn_engine_stop(engine, 100), mzn_result::AlreadyStopped);
        assert_eq!(mzn_engine_stop(engine, 0), mzn_result::AlreadyStopped);
    }
    assert_eq!(upsert(engine, users), mzn_result::EngineStopped);
    assert_eq!(last_error(), "the engine is stopped");
    assert_eq!(
        remove(engine, r#"["alice"]"#, null_mut()),
        mzn_result::EngineStopped
    );
    assert_eq!(apply(engine, "[]"), mzn_result::EngineStopped);
    let mut port = 0;
    // SAFETY: `engine` is live; the tag is NUL-terminated; `port` is writable.
    let r = unsafe { mzn_engine_local_port(engine, c"ss".as_ptr(), &mut port) };
    assert_eq!(r, mzn_result::EngineStopped);
    // Counters stay readable after a stop.
    let c = counters(engine, c"alice").unwrap();
    assert!(c.active);
    assert_eq!((c.uplink, c.downlink, c.open_connections), (0, 0, 0));
    assert_eq!(stats(engine)["users"][0]["name"], "alice");
    // SAFETY: `engine` came from `mzn_engine_new` and is not used again.
    unsafe { mzn_engine_free(engine) };
}

#[test]
fn concurrent_stops_stop_once() {
    struct Shared(*mut mzn_engine);
    // SAFETY: the engine handle is thread-safe for every call but `mzn_engine_free`, which
    // runs after both threads are joined.
    unsafe impl Sync for Shared {}
    let engine = Shared(running_engine());
    let results: Vec<mzn_result> = std::thread::scope(|s| {
        let stops: Vec<_> = (0..2)
            .map(|_| {
                let engine = &engine;
                // SAFETY: `engine.0` is live until both threads are joined.
                s.spawn(move || unsafe { mzn_engine_stop(engine.0, 200) })
            })
            .collect();
        stops.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut results = results;
    results.sort_by_key(|r| *r as u32);
    assert_eq!(results, [mzn_result::Ok, mzn_result::AlreadyStopped]);
    // SAFETY: both threads are done with the engine.
    unsafe { mzn_engine_free(engine.0) };
}

#[test]
fn free_without_stop_stops() {
    let engine = running_engine();
    let mut port = 0;
    // SAFETY: `engine` is live; the tag is NUL-terminated; `port` is writable.
    assert_eq!(
        unsafe { mzn_engine_local_port(engine, c"ss".as_ptr(), &mut port) },
        mzn_result::Ok
    );
    // SAFETY: `engine` came from `mzn_engine_new` and is not used again.
    unsafe { mzn_engine_free(engine) };
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the listener closes when the engine is freed"
    );
}

#[test]
fn every_code_has_a_message_and_buffers_are_never_overrun() {
    let message = |code: u32| {
        let mut buf = [0 as c_char; 128];
        let mut len = 0;
        // SAFETY: `buf` is writable for its length, `len` for a usize.
        let r = unsafe { mzn_result_message(code, buf.as_mut_ptr(), buf.len(), &mut len) };
        assert_eq!(r, mzn_result::Ok);
        // SAFETY: NUL-terminated by `mzn_result_message`.
        let s = unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(s.len(), len);
        s
    };
    let mut seen = std::collections::HashSet::new();
    for code in mzn_result::all() {
        let m = message(code as u32);
        assert!(!m.is_empty() && seen.insert(m), "{code:?}");
        assert_eq!(mzn_result::from_u32(code as u32), Some(code));
    }
    assert_eq!(message(7050), "unknown result code 7050");

    // Too small: cut at a character boundary, NUL-terminated, full length reported.
    let mut small = [1 as c_char; 8];
    let mut len = 0;
    // SAFETY: `small` is writable for its length, `len` for a usize.
    let r = unsafe { mzn_result_message(7000, small.as_mut_ptr(), small.len(), &mut len) };
    assert_eq!(r, mzn_result::InsufficientSize);
    assert_eq!(len, mzn_result::NullParameter.message().len());
    // SAFETY: NUL-terminated by `mzn_result_message`.
    assert_eq!(
        unsafe { CStr::from_ptr(small.as_ptr()) }.to_bytes().len(),
        7
    );
    // SAFETY: `len == 0` with a NULL buffer asks for the length only.
    let r = unsafe { mzn_result_message(0, null_mut(), 0, &mut len) };
    assert_eq!((r, len), (mzn_result::InsufficientSize, "success".len()));
    // SAFETY: a NULL buffer with a non-zero length is refused before any write.
    let r = unsafe { mzn_result_message(0, null_mut(), 4, null_mut()) };
    assert_eq!(r, mzn_result::NullParameter);
}

#[test]
fn last_error_is_per_thread() {
    assert_eq!(new_engine("nope"), Err(mzn_result::InvalidJson));
    let here = last_error();
    assert!(here.starts_with("config: "), "{here}");
    let there = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(there, "");
    assert_eq!(last_error(), here, "reading the message does not clear it");
}

#[test]
fn stats_json_lists_users_and_inbounds_and_fits_caller_buffers() {
    let engine = running_engine();
    let users = r#"[{"name":"bob","inbounds":[{"tag":"ss","password":"b"}]},
                    {"name":"alice","inbounds":[{"tag":"ss","password":"a"}],
                     "limits":{"max_connections":2}}]"#;
    assert_eq!(upsert(engine, users), mzn_result::Ok);
    let mut removed = 9;
    assert_eq!(
        remove(engine, r#"["bob","carol"]"#, &mut removed),
        mzn_result::Ok
    );
    assert_eq!(removed, 1);
    let v = stats(engine);
    assert_eq!(v["users"][0]["name"], "alice");
    assert_eq!(v["users"][0]["active"], true);
    assert_eq!(v["users"][1]["name"], "bob");
    assert_eq!(v["users"][1]["active"], false);
    assert_eq!(v["users"][1]["uplink"], 0);
    assert_eq!(v["inbounds"][0]["tag"], "ss");

    let mut need = 0;
    // SAFETY: `engine` is live; a NULL buffer of length 0 asks for the size.
    let r = unsafe { mzn_engine_stats_json_buf(engine, null_mut(), 0, &mut need) };
    assert_eq!(r, mzn_result::InsufficientSize);
    let mut buf = vec![0 as c_char; need + 1];
    // SAFETY: `buf` is writable for its length.
    let r = unsafe { mzn_engine_stats_json_buf(engine, buf.as_mut_ptr(), buf.len(), &mut need) };
    assert_eq!(r, mzn_result::Ok);
    // SAFETY: NUL-terminated by the call.
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(text).unwrap(), v);

    // Inbounds applied live: a second one gets its own port; the first keeps its users.
    let both = json!([inbound("ss", "127.0.0.1:0"), inbound("ss2", "127.0.0.1:0")]);
    assert_eq!(apply(engine, &both.to_string()), mzn_result::Ok);
    let mut port = 0;
    // SAFETY: `engine` is live; the tag is NUL-terminated; `port` is writable.
    let r = unsafe { mzn_engine_local_port(engine, c"ss2".as_ptr(), &mut port) };
    assert_eq!((r, port != 0), (mzn_result::Ok, true));
    assert!(counters(engine, c"alice").unwrap().active);
    // SAFETY: `engine` came from `mzn_engine_new` and is not used again.
    unsafe { mzn_engine_free(engine) };
}

#[test]
fn version_is_a_static_string() {
    // SAFETY: `mzn_version` returns a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(mzn_version()) }.to_str().unwrap();
    assert_eq!(
        v,
        concat!("marzneshin-engine-ffi/", env!("CARGO_PKG_VERSION"))
    );
}
