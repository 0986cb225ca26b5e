//! Result codes, their messages, and the thread-local detailed message of the last failure.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::c_char;

use crate::boundary::{call_quietly, write_text, Failure};

/// What a call did. `MZN_RESULT_OK` is 0; failures are numbered in stable ranges:
///
/// | range | meaning |
/// |---|---|
/// | 7000s | a pointer or buffer argument is unusable (NULL, too small) |
/// | 7100s | a document or string argument is invalid (not UTF-8, not JSON, a bad field) |
/// | 7200s | the engine could not start (bind, runtime) |
/// | 7300s | a control operation was refused (stopped engine, unknown tag or user, ...) |
/// | 7999 | a panic was caught at the boundary (a bug: please report it) |
///
/// Codes are never renumbered; new ones are added inside their range. C sees this type as a
/// `uint32_t`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum mzn_result {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 7000,
    /// The caller's buffer is too small; the required length was stored.
    InsufficientSize = 7001,
    /// A string or document is not valid UTF-8.
    InvalidUtf8 = 7100,
    /// A document is not JSON at all (syntax error, truncated).
    InvalidJson = 7101,
    /// A JSON document has a missing, unknown or invalid field; the last error names it.
    InvalidConfig = 7102,
    /// A listener could not be bound (address in use, permission).
    Bind = 7200,
    /// The executors could not start (io_uring unavailable, memlock limit, ...).
    Runtime = 7201,
    /// The engine's counters file could not be created.
    CountersFile = 7202,
    /// The engine has been stopped: control operations are refused (counters stay readable).
    EngineStopped = 7300,
    /// `mzn_engine_stop` on an engine that was already stopped. Harmless.
    AlreadyStopped = 7301,
    /// A tag names no current inbound.
    UnknownInbound = 7302,
    /// A user's password or key is not valid for an inbound's method.
    BadCredential = 7303,
    /// A user batch is malformed (empty or duplicate names).
    BadBatch = 7304,
    /// A name matches no user the engine has known.
    UnknownUser = 7305,
    /// A panic was caught at the FFI boundary.
    Panic = 7999,
}

/// Every code, in order.
const ALL_RESULTS: [mzn_result; 16] = [
    mzn_result::Ok,
    mzn_result::NullParameter,
    mzn_result::InsufficientSize,
    mzn_result::InvalidUtf8,
    mzn_result::InvalidJson,
    mzn_result::InvalidConfig,
    mzn_result::Bind,
    mzn_result::Runtime,
    mzn_result::CountersFile,
    mzn_result::EngineStopped,
    mzn_result::AlreadyStopped,
    mzn_result::UnknownInbound,
    mzn_result::BadCredential,
    mzn_result::BadBatch,
    mzn_result::UnknownUser,
    mzn_result::Panic,
];

impl mzn_result {
    /// Every code, in order.
    pub fn all() -> [mzn_result; 16] {
        ALL_RESULTS
    }

    /// The code for a raw number, if it is one.
    pub fn from_u32(code: u32) -> Option<mzn_result> {
        ALL_RESULTS.into_iter().find(|r| *r as u32 == code)
    }

    /// A one-line description of the code.
    pub fn message(self) -> &'static str {
        match self {
            mzn_result::Ok => "success",
            mzn_result::NullParameter => "a required pointer argument was NULL",
            mzn_result::InsufficientSize => "the buffer is too small",
            mzn_result::InvalidUtf8 => "a string is not valid UTF-8",
            mzn_result::InvalidJson => "the document is not valid JSON",
            mzn_result::InvalidConfig => "a field of the document is missing, unknown or invalid",
            mzn_result::Bind => "a listener could not be bound",
            mzn_result::Runtime => "the engine's executors could not start",
            mzn_result::CountersFile => "the engine's counters file could not be created",
            mzn_result::EngineStopped => "the engine is stopped",
            mzn_result::AlreadyStopped => "the engine was already stopped",
            mzn_result::UnknownInbound => "no inbound has that tag",
            mzn_result::BadCredential => "a user's credential is not valid for the inbound",
            mzn_result::BadBatch => "the user batch is malformed",
            mzn_result::UnknownUser => "no user has that name",
            mzn_result::Panic => "internal error: a panic was caught at the FFI boundary",
        }
    }
}

thread_local! {
    /// Detailed message of the last failed call on this thread; empty after a success.
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records the outcome of an exported call for `mzn_last_error`.
pub(crate) fn record(outcome: Result<(), &Failure>) {
    LAST_ERROR.with(|slot| {
        let mut slot = slot.borrow_mut();
        slot.clear();
        if let Err(f) = outcome {
            slot.push_str(&f.message);
        }
    });
}

/// The thread's last error message.
pub(crate) fn last_error_message() -> String {
    LAST_ERROR.with(|slot| slot.borrow().clone())
}

/// Writes the description of `result` into `buf` as a NUL-terminated string.
///
/// `result` is taken as a plain number so any value is safe to pass; an unknown number gets
/// "unknown result code N". Buffer rules as for every text output: `*out_len` receives the
/// full length in bytes (without the NUL); as much as fits in `len - 1` bytes is written,
/// followed by a NUL; the return is `MZN_RESULT_INSUFFICIENT_SIZE` when the text was cut. With
/// `len == 0`, `buf` may be NULL and only the length is stored.
///
/// Does not change the thread's last error.
///
/// # Safety
///
/// `buf` must be NULL or valid for writes of `len` bytes; `out_len` must be NULL or valid for
/// a write.
#[no_mangle]
pub unsafe extern "C" fn mzn_result_message(
    result: u32,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> mzn_result {
    call_quietly(|| {
        let text = match mzn_result::from_u32(result) {
            Some(r) => Cow::Borrowed(r.message()),
            None => Cow::Owned(format!("unknown result code {result}")),
        };
        // SAFETY: the caller's contract for `buf`, `len` and `out_len` is the one `write_text`
        // requires.
        unsafe { write_text(&text, buf, len, out_len) }
    })
}

/// Writes the detailed message of the last failed call made on this thread, such as
/// `inbounds[0].settings.method: unknown method "rc4"`, into `buf`. After a successful call
/// the message is empty. Buffer rules as for `mzn_result_message`.
///
/// Does not change the thread's last error.
///
/// # Safety
///
/// As for `mzn_result_message`.
#[no_mangle]
pub unsafe extern "C" fn mzn_last_error(
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> mzn_result {
    call_quietly(|| {
        let text = last_error_message();
        // SAFETY: the caller's contract for `buf`, `len` and `out_len` is the one `write_text`
        // requires.
        unsafe { write_text(&text, buf, len, out_len) }
    })
}
