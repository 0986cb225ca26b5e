//! A C ABI over [`engine::Handle`], modelled on rustls-ffi.
//!
//! C sees one opaque handle, `mzn_engine`, created by `mzn_engine_new` (which starts the
//! engine) and released by `mzn_engine_free`, plus an owned string type, `mzn_string`, for
//! JSON results. Every function returns an `mzn_result` (or, for the few that cannot fail in a
//! way the caller can act on, nothing), and:
//!
//! - runs inside a panic boundary: a panic becomes `MZN_RESULT_PANIC`, never an unwind into C;
//! - checks every pointer it is given for NULL (`MZN_RESULT_NULL_PARAMETER`);
//! - records a detailed, field-naming message for its failure in a thread-local slot that
//!   `mzn_last_error` reads (`inbounds[0].settings.method: unknown method "rc4"`), while
//!   `mzn_result_message` names the code itself.
//!
//! Documents cross the boundary as JSON (the same shapes as the engine's Rust API and
//! `docs/engine-config.md`), passed as pointer and length; they need no NUL terminator. Names
//! and tags are NUL-terminated UTF-8 strings.
//!
//! The C header, `include/marzneshin.h`, is generated from this crate by cbindgen and checked
//! in; `tests/header.rs` fails when it is stale and says how to regenerate it. `docs/ffi.md`
//! has the result code table, ownership rules, threading notes and a complete C example.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
// C naming: the exported types are spelled as C callers see them.
#![allow(non_camel_case_types)]

mod boundary;
mod handle;
mod result;
mod string;

pub use handle::*;
pub use result::*;
pub use string::*;
