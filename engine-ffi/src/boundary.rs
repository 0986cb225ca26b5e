//! The panic boundary and the checks every argument passes before it is used.
//!
//! Each export runs its body through [`call`] (or [`catch`] when it returns something other
//! than a result code), and turns each raw argument into a Rust value through one of the
//! `*_arg` functions here, which is where NULL and UTF-8 are checked. The `unsafe` these need
//! stays in this module and in the thin exports that forward their caller's contract.

use std::any::Any;
use std::ffi::{c_char, CStr};
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};

use engine::{ConfigError, EngineError};
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::result::{mzn_result, record};

/// Why a call failed: its code and the detailed message `mzn_last_error` returns.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: mzn_result,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: mzn_result, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    fn null(what: &str) -> Failure {
        Failure::new(mzn_result::NullParameter, format!("{what}: NULL pointer"))
    }

    fn panic(payload: Box<dyn Any + Send>) -> Failure {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic payload".to_owned());
        Failure::new(mzn_result::Panic, format!("panic: {what}"))
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        Failure::new(mzn_result::InvalidConfig, e.to_string())
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Failure {
        let code = match &e {
            EngineError::Bind { .. } => mzn_result::Bind,
            EngineError::Runtime(_) => mzn_result::Runtime,
            EngineError::Config(_) => mzn_result::InvalidConfig,
            EngineError::UnknownInbound { .. } => mzn_result::UnknownInbound,
            EngineError::BadCredential { .. } => mzn_result::BadCredential,
            EngineError::BadBatch(_) => mzn_result::BadBatch,
            EngineError::Stopped => mzn_result::EngineStopped,
            EngineError::CountersFile(_) => mzn_result::CountersFile,
        };
        Failure::new(code, e.to_string())
    }
}

/// Runs an export's body behind the panic boundary and records its outcome as the thread's
/// last error.
pub(crate) fn call(body: impl FnOnce() -> Result<(), Failure>) -> mzn_result {
    let outcome = catch(body);
    record(outcome.as_ref().map(|_| ()));
    match outcome {
        Ok(()) => mzn_result::Ok,
        Err(f) => f.code,
    }
}

/// Runs an export's body behind the panic boundary, leaving the thread's last error as it was
/// (for the functions that read messages).
pub(crate) fn call_quietly(body: impl FnOnce() -> Result<(), Failure>) -> mzn_result {
    match catch(body) {
        Ok(()) => mzn_result::Ok,
        Err(f) => f.code,
    }
}

/// Runs `body`, turning a panic into a [`mzn_result::Panic`] failure.
pub(crate) fn catch<T>(body: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    // The engine's state is guarded by mutexes that poison on panic, so nothing observes a
    // half-done update after a panic: asserting unwind safety is sound.
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| Err(Failure::panic(payload)))
}

/// Borrows `len` bytes at `ptr` as UTF-8 text; `what` names the argument in errors.
///
/// # Safety
///
/// `ptr` must be NULL or valid for reads of `len` bytes, unchanged for `'a`.
pub(crate) unsafe fn text_arg<'a>(
    ptr: *const c_char,
    len: usize,
    what: &str,
) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: `ptr` is not NULL, and the caller guarantees it is valid for `len` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    std::str::from_utf8(bytes)
        .map_err(|e| Failure::new(mzn_result::InvalidUtf8, format!("{what}: {e}")))
}

/// Borrows a NUL-terminated UTF-8 string.
///
/// # Safety
///
/// `ptr` must be NULL or point to a NUL-terminated string, unchanged for `'a`.
pub(crate) unsafe fn c_str_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: `ptr` is not NULL, and the caller guarantees it is NUL-terminated.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str()
        .map_err(|e| Failure::new(mzn_result::InvalidUtf8, format!("{what}: {e}")))
}

/// Borrows the object `ptr` points to.
///
/// # Safety
///
/// `ptr` must be NULL or point to a live `T` that nothing mutates for `'a`.
pub(crate) unsafe fn ref_arg<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: `as_ref` checks for NULL; the caller guarantees a non-NULL `ptr` is live.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// The place an output argument points to, to be written once the result is known (the
/// previous contents are neither read nor dropped).
///
/// # Safety
///
/// `ptr` must be NULL or valid for writes of a `T`, and aligned, for `'a`.
pub(crate) unsafe fn out_arg<'a, T>(
    ptr: *mut T,
    what: &str,
) -> Result<&'a mut MaybeUninit<T>, Failure> {
    // SAFETY: `as_mut` checks for NULL; the caller guarantees a non-NULL `ptr` is valid for
    // writes, and `MaybeUninit<T>` has `T`'s layout and accepts any (even uninitialised)
    // contents.
    unsafe { ptr.cast::<MaybeUninit<T>>().as_mut() }.ok_or_else(|| Failure::null(what))
}

/// Parses a JSON document into `T`. A document that is not JSON at all (syntax error,
/// truncated) is [`mzn_result::InvalidJson`]; a missing, unknown or wrongly typed field is
/// [`mzn_result::InvalidConfig`], with the field's path after `root`
/// (`users[0].inbounds[1]: missing field `password``).
pub(crate) fn parse_json<T: DeserializeOwned>(text: &str, root: &str) -> Result<T, Failure> {
    // Syntax first: a typed parse would report the first wrongly typed field of a document
    // that is also cut short.
    check_json_syntax(text, root)?;
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = match e.path().to_string().as_str() {
            "." => root.to_owned(),
            p if p.starts_with('[') => format!("{root}{p}"),
            p => format!("{root}.{p}"),
        };
        Failure::new(
            mzn_result::InvalidConfig,
            format!("{at}: {}", e.into_inner()),
        )
    })
}

/// Fails with [`mzn_result::InvalidJson`] unless `text` is one well-formed JSON value.
pub(crate) fn check_json_syntax(text: &str, root: &str) -> Result<(), Failure> {
    serde_json::from_str::<IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| Failure::new(mzn_result::InvalidJson, format!("{root}: {e}")))
}

/// Writes `text` into the caller's buffer, NUL-terminated, and its full length (without the
/// NUL) into `*out_len` when `out_len` is not NULL. Writes as much as fits and fails with
/// [`mzn_result::InsufficientSize`] when that is not all of it; with `len == 0`, `buf` may be
/// NULL and nothing is written to it.
///
/// # Safety
///
/// `buf` must be NULL or valid for writes of `len` bytes; `out_len` must be NULL or valid for
/// a write of a `usize`.
pub(crate) unsafe fn write_text(
    text: &str,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> Result<(), Failure> {
    if buf.is_null() && len > 0 {
        return Err(Failure::null("buf"));
    }
    if !out_len.is_null() {
        // SAFETY: `out_len` is not NULL, and the caller guarantees it is valid for a write.
        unsafe { out_len.write(text.len()) };
    }
    if len == 0 {
        return Err(too_small(text, len));
    }
    let mut n = text.len().min(len - 1);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: `buf` is not NULL and valid for `len > n` bytes; the source is our own string,
    // which cannot overlap the caller's buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
        buf.add(n).write(0);
    }
    if n < text.len() {
        return Err(too_small(text, len));
    }
    Ok(())
}

fn too_small(text: &str, len: usize) -> Failure {
    Failure::new(
        mzn_result::InsufficientSize,
        format!(
            "a buffer of {len} bytes is too small: {} bytes and a NUL are needed",
            text.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::last_error_message;

    #[test]
    fn a_panic_becomes_a_code_and_a_message() {
        assert_eq!(call(|| panic!("boom {}", 42)), mzn_result::Panic);
        assert_eq!(last_error_message(), "panic: boom 42");
        assert_eq!(call(|| std::panic::panic_any(7u8)), mzn_result::Panic);
        assert_eq!(last_error_message(), "panic: unknown panic payload");
        assert_eq!(call_quietly(|| panic!("quiet")), mzn_result::Panic);
        assert_eq!(last_error_message(), "panic: unknown panic payload");
        assert_eq!(call(|| Ok(())), mzn_result::Ok);
        assert_eq!(last_error_message(), "");
    }

    #[test]
    fn json_errors_carry_the_field_path() {
        let e = parse_json::<Vec<engine::UserSpec>>(r#"[{"name":1}]"#, "users").unwrap_err();
        assert_eq!(e.code, mzn_result::InvalidConfig);
        assert!(
            e.message.starts_with("users[0].name: invalid type"),
            "{}",
            e.message
        );
        let e = parse_json::<Vec<String>>("[", "names").unwrap_err();
        assert_eq!(e.code, mzn_result::InvalidJson);
        let e = parse_json::<Vec<String>>("{}", "names").unwrap_err();
        assert!(
            e.message.starts_with("names: invalid type"),
            "{}",
            e.message
        );
    }
}
