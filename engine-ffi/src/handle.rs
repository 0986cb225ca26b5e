//! `mzn_engine`: the engine handle, and every operation on it.

use std::ffi::c_char;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use engine::config::InboundConfig;
use engine::rules::RulesConfig;
use engine::{Config, Engine, Handle, UserSpec};
use serde::de::DeserializeOwned;

use crate::boundary::{
    c_str_arg, call, catch, check_json_syntax, out_arg, parse_json, ref_arg, text_arg, write_text,
    Failure,
};
use crate::result::mzn_result;
use crate::string::mzn_string;

/// A running (or stopped) engine. Created by `mzn_engine_new`, released by `mzn_engine_free`.
/// Every function taking a `const mzn_engine *` may be called from any thread, concurrently.
pub struct mzn_engine {
    handle: Handle,
    /// Held while stopping, so a concurrent second stop waits for the first to finish and then
    /// reports `MZN_RESULT_ALREADY_STOPPED`.
    stopping: Mutex<()>,
}

impl mzn_engine {
    fn stop(&self, grace: Duration) -> Result<(), Failure> {
        let _stopping = self.stopping.lock().unwrap_or_else(PoisonError::into_inner);
        if self.handle.is_stopped() {
            return Err(Failure::new(
                mzn_result::AlreadyStopped,
                "the engine was already stopped",
            ));
        }
        self.handle.stop(grace);
        Ok(())
    }

    fn running(&self) -> Result<&Handle, Failure> {
        if self.handle.is_stopped() {
            return Err(engine::EngineError::Stopped.into());
        }
        Ok(&self.handle)
    }
}

/// The arguments of a control call: the engine, and the JSON document (argument `arg`) parsed
/// into `T`, its errors naming fields from `root`.
///
/// # Safety
///
/// `engine` must be NULL or a live engine; `json` must be NULL or valid for reads of `len`
/// bytes, unchanged for `'a`.
unsafe fn engine_and_document<'a, T: DeserializeOwned>(
    engine: *const mzn_engine,
    json: *const c_char,
    len: usize,
    arg: &str,
    root: &str,
) -> Result<(&'a mzn_engine, T), Failure> {
    // SAFETY: the caller's contract for `engine`.
    let engine = unsafe { ref_arg(engine, "engine") }?;
    // SAFETY: the caller's contract for `json` and `len`.
    let text = unsafe { text_arg(json, len, arg) }?;
    Ok((engine, parse_json(text, root)?))
}

/// One user's counters, summed over every inbound and worker. Counters are monotonic: they
/// survive removal of the user and are never reset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mzn_user_counters {
    /// Payload bytes from the user's clients toward destinations.
    pub uplink: u64,
    /// Payload bytes from destinations toward the user's clients.
    pub downlink: u64,
    /// TCP connections and UDP sessions open now.
    pub open_connections: u64,
    /// Last activity, Unix seconds; 0 if never seen.
    pub last_seen: u64,
    /// Distinct source addresses connected now.
    pub source_ips: u32,
    /// Whether the user may connect now (false once removed).
    pub active: bool,
}

/// The library's name and version, a static NUL-terminated string (never freed).
#[no_mangle]
pub extern "C" fn mzn_version() -> *const c_char {
    concat!("marzneshin-engine-ffi/", env!("CARGO_PKG_VERSION"), "\0")
        .as_ptr()
        .cast()
}

/// Parses and validates a configuration (the JSON document of `docs/engine-config.md`), binds
/// every inbound and starts the engine's workers. On success `*out` receives the new engine,
/// to be released with `mzn_engine_free`; on failure `*out` is set to NULL (when `out` is not
/// NULL) and `mzn_last_error` names the field at fault, such as `inbounds[0].listen`.
///
/// Returns `MZN_RESULT_INVALID_JSON`, `MZN_RESULT_INVALID_CONFIG`, `MZN_RESULT_BIND` or
/// `MZN_RESULT_RUNTIME` on failure.
///
/// # Safety
///
/// `config_json` must be NULL or valid for reads of `len` bytes; `out` must be NULL or valid
/// for a write of a pointer.
#[no_mangle]
pub unsafe extern "C" fn mzn_engine_new(
    config_json: *const c_char,
    len: usize,
    out: *mut *mut mzn_engine,
) -> mzn_result {
    call(|| {
        // SAFETY: the caller's contract for `out`.
        let out = unsafe { out_arg(out, "out") }?;
        out.write(std::ptr::null_mut());
        // SAFETY: the caller's contract for `config_json` and `len`.
        let text = unsafe { text_arg(config_json, len, "config_json") }?;
        check_json_syntax(text, "config")?;
        let config = Config::from_json(text)?;
        let handle = Engine::start(config)?;
        out.write(Box::into_raw(Box::new(mzn_engine {
            handle,
            stopping: Mutex::new(()),
        })));
        Ok(())
    })
}

/// Stops the engine gracefully: listeners close at once, live connections get `grace_ms`
/// milliseconds to finish and are then closed. Returns when every worker has exited. A second
/// stop returns `MZN_RESULT_ALREADY_STOPPED` and does nothing else. After a stop, control
/// operations return `MZN_RESULT_ENGINE_STOPPED`; counters stay readable.
///
/// # Safety
///
/// `engine` must be NULL or a live engine from `mzn_engine_new`.
#[no_mangle]
pub unsafe extern "C" fn mzn_engine_stop(engine: *const mzn_engine, grace_ms: u32) -> mzn_result {
    call(|| {
        // SAFETY: the caller's contract for `engine`.
        let engine = unsafe { ref_arg(engine, "engine") }?;
        engine.stop(Duration::from_millis(grace_ms.into()))
    })
}

/// Stops the engine if it is running (with no grace period: live connections close at once)
/// and releases it. NULL is fine.
///
/// # Safety
///
/// `engine` must be NULL or an engine from `mzn_engine_new` not freed before, and no other
/// thread may be using it; it must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn mzn_engine_free(engine: *mut mzn_engine) {
    if engine.is_null() {
        return;
    }
    // SAFETY: `engine` came from `Box::into_raw` in `mzn_engine_new`, and the caller hands
    // over ownership with no other user left.
    let engine = unsafe { Box::from_raw(engine) };
    let _ = catch(|| {
        if !engine.handle.is_stopped() {
            engine.stop(Duration::ZERO)?;
        }
        drop(engine);
        Ok(())
    });
}

/// Adds users or updates them, as one batch: either all of it is applied or nothing changes.
/// `users_json` is a JSON array of users:
///
/// ```json
/// [{"name": "alice", "inbounds": [{"tag": "ss", "password": "..."}],
///   "limits": {"max_connections": 8}}]
/// ```
///
/// Each user gets exactly the inbounds listed (they are taken off any other); `limits` is
/// optional. Fails with `MZN_RESULT_INVALID_JSON`, `MZN_RESULT_INVALID_CONFIG` (naming the
/// field, as `users[0].inbounds[0].tag`), `MZN_RESULT_UNKNOWN_INBOUND`,
/// `MZN_RESULT_BAD_CREDENTIAL`, `MZN_RESULT_BAD_BATCH` or `MZN_RESULT_ENGINE_STOPPED`.
///
/// # Safety
///
/// `engine` must be NULL or a live engine; `users_json` must be NULL or valid for reads of
/// `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mzn_engine_upsert_users(
    engine: *const mzn_engine,
    users_json: *const c_char,
    len: usize,
) -> mzn_result {
    call(|| {
        // SAFETY: the caller's contract for `engine`, `users_json` and `len`.
        let (engine, users): (_, Vec<UserSpec>) =
            unsafe { engine_and_document(engine, users_json, len, "users_json", "users") }?;
        engine.running()?.upsert_users(users)?;
        Ok(())
    })
}

/// Removes users by name (`names_json` is a JSON array of strings): they can no longer
/// connect and their connections close at once; their counters stay readable. When
/// `removed_out` is not NULL it receives how many of the names were known.
///
/// # Safety
///
/// `engine` must be NULL or a live engine; `names_json` must be NULL or valid for reads of
/// `len` bytes; `removed_out` must be NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn mzn_engine_remove_users(
    engine: *const mzn_engine,
    names_json: *const c_char,
    len: usize,
    removed_out: *mut usize,
) -> mzn_result {
    call(|| {
        // SAFETY: the caller's contract for `engine`, `names_json` and `len`.
        let (engine, names): (_, Vec<String>) =
            unsafe { engine_and_document(engine, names_json, len, "names_json", "names") }?;
        let removed_out = if removed_out.is_null() {
            None
        } else {
            // SAFETY: the caller's contract for `removed_out`, which is not NULL.
            Some(unsafe { out_arg(removed_out, "removed_out") }?)
        };
        let removed = engine.running()?.remove_users(&names)?;
        if let Some(out) = removed_out {
            out.write(removed);
        }
        Ok(())
    })
}

/// Makes the engine's inbounds equal to `inbounds_json`, a JSON array of inbound objects as in
/// the configuration's `inbounds`: new tags are bound, missing tags are closed, changed ones
/// rebound, unchanged ones keep their connections. Errors name the field
/// (`inbounds[0].settings.method`).
///
/// # Safety
///
/// `engine` must be NULL or a live engine; `inbounds_json` must be NULL or valid for reads of
/// `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mzn_engine_apply_inbounds(
    engine: *const mzn_engine,
    inbounds_json: *const c_char,
    len: usize,
) -> mzn_result {
    call(|| {
        // SAFETY: the caller's contract for `engine`, `inbounds_json` and `len`.
        let (engine, inbounds): (_, Vec<InboundConfig>) = unsafe {
            engine_and_document(engine, inbounds_json, len, "inbounds_json", "inbounds")
        }?;
        engine.running()?.apply_inbounds(inbounds)?;
        Ok(())
    })
}

/// Replaces the routing rules with `routing_json`, a JSON object as in the configuration's
/// `routing`, or `null` for none (only the built-in block of special ranges). New
/// connections and every UDP packet from then on follow the new rules; relaying TCP
/// connections keep their destinations. Errors name the field
/// (`routing.rules[0].ports[0]`) and leave the current rules in place.
///
/// # Safety
///
/// `engine` must be NULL or a live engine; `routing_json` must be NULL or valid for reads of
/// `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mzn_engine_set_routing(
    engine: *const mzn_engine,
    routing_json: *const c_char,
    len: usize,
) -> mzn_result {
    call(|| {
        // SAFETY: the caller's contract for `engine`, `routing_json` and `len`.
        let (engine, routing): (_, Option<RulesConfig>) =
            unsafe { engine_and_document(engine, routing_json, len, "routing_json", "routing") }?;
        engine.running()?.set_routing(routing)?;
        Ok(())
    })
}

/// The port the inbound tagged `tag` listens on (its real port when configured as 0).
/// `MZN_RESULT_UNKNOWN_INBOUND` if no inbound has that tag, `MZN_RESULT_ENGINE_STOPPED` after
/// a stop.
///
/// # Safety
///
/// `engine` must be NULL or a live engine; `tag` must be NULL or NUL-terminated; `port_out`
/// must be NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn mzn_engine_local_port(
    engine: *const mzn_engine,
    tag: *const c_char,
    port_out: *mut u16,
) -> mzn_result {
    call(|| {
        // SAFETY: the caller's contract for `engine`.
        let engine = unsafe { ref_arg(engine, "engine") }?;
        // SAFETY: the caller's contract for `tag`.
        let tag = unsafe { c_str_arg(tag, "tag") }?;
        // SAFETY: the caller's contract for `port_out`.
        let out = unsafe { out_arg(port_out, "port_out") }?;
        let addr = engine.running()?.local_addr(tag).ok_or_else(|| {
            Failure::new(
                mzn_result::UnknownInbound,
                format!("no inbound tagged {tag:?}"),
            )
        })?;
        out.write(addr.port());
        Ok(())
    })
}

/// One user's counters. `MZN_RESULT_UNKNOWN_USER` if the engine never knew the name. Readable
/// after removal and after a stop.
///
/// # Safety
///
/// `engine` must be NULL or a live engine; `name` must be NULL or NUL-terminated; `out` must
/// be NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn mzn_engine_user_counters(
    engine: *const mzn_engine,
    name: *const c_char,
    out: *mut mzn_user_counters,
) -> mzn_result {
    call(|| {
        // SAFETY: the caller's contract for `engine`.
        let engine = unsafe { ref_arg(engine, "engine") }?;
        // SAFETY: the caller's contract for `name`.
        let name = unsafe { c_str_arg(name, "name") }?;
        // SAFETY: the caller's contract for `out`.
        let out = unsafe { out_arg(out, "out") }?;
        let user = engine
            .handle
            .user_stats()
            .into_iter()
            .find(|u| u.name == name)
            .ok_or_else(|| {
                Failure::new(mzn_result::UnknownUser, format!("no user named {name:?}"))
            })?;
        out.write(mzn_user_counters {
            uplink: user.traffic.uplink,
            downlink: user.traffic.downlink,
            open_connections: user.traffic.open,
            last_seen: user.last_seen.unwrap_or(0),
            source_ips: u32::try_from(user.source_ips.len()).unwrap_or(u32::MAX),
            active: user.active,
        });
        Ok(())
    })
}

/// Every counter as one JSON document:
///
/// ```json
/// {"users": [{"name": "alice", "uplink": 10, "downlink": 20, "open": 0, "active": true,
///             "source_ips": ["127.0.0.1"], "last_seen": 1700000000}],
///  "inbounds": [{"tag": "ss", "uplink": 10, "downlink": 20, "open": 0}]}
/// ```
///
/// Users and inbounds are sorted by name and tag; `last_seen` is null for a user never seen.
fn stats_json(engine: &mzn_engine) -> String {
    let mut users = engine.handle.user_stats();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    serde_json::json!({ "users": users, "inbounds": engine.handle.inbound_stats() }).to_string()
}

/// Every counter as a JSON document (shape in `docs/ffi.md`), in a new string that the caller
/// frees with `mzn_string_free`. Readable after a stop.
///
/// # Safety
///
/// `engine` must be NULL or a live engine; `out` must be NULL or valid for a write of a
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn mzn_engine_stats_json(
    engine: *const mzn_engine,
    out: *mut *mut mzn_string,
) -> mzn_result {
    call(|| {
        // SAFETY: the caller's contract for `out`.
        let out = unsafe { out_arg(out, "out") }?;
        out.write(std::ptr::null_mut());
        // SAFETY: the caller's contract for `engine`.
        let engine = unsafe { ref_arg(engine, "engine") }?;
        out.write(mzn_string::boxed(stats_json(engine)));
        Ok(())
    })
}

/// The document of `mzn_engine_stats_json`, written into the caller's buffer instead.
/// `*out_len` (when `out_len` is not NULL) receives the document's length without the NUL;
/// `MZN_RESULT_INSUFFICIENT_SIZE` means `buf` needs at least `*out_len + 1` bytes (what was
/// written is then cut short and is not a valid document). Call with `len == 0` (and `buf`
/// NULL) to learn the size; counters may grow between two calls, so leave some room.
///
/// # Safety
///
/// `engine` must be NULL or a live engine; `buf` must be NULL or valid for writes of `len`
/// bytes; `out_len` must be NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn mzn_engine_stats_json_buf(
    engine: *const mzn_engine,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> mzn_result {
    call(|| {
        // SAFETY: the caller's contract for `engine`.
        let engine = unsafe { ref_arg(engine, "engine") }?;
        // SAFETY: the caller's contract for `buf`, `len` and `out_len`.
        unsafe { write_text(&stats_json(engine), buf, len, out_len) }
    })
}
