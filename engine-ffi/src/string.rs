//! `mzn_string`: text the library allocates and the caller frees.

use std::ffi::c_char;

use crate::boundary::catch;

/// A NUL-terminated UTF-8 string owned by the caller once returned (for example by
/// `mzn_engine_stats_json`). Read it with `mzn_string_ptr` / `mzn_string_len`; release it
/// with `mzn_string_free`.
pub struct mzn_string {
    /// The text followed by one NUL byte.
    bytes: Box<[u8]>,
}

impl mzn_string {
    /// Boxes `text` for the caller. The text must hold no NUL byte (JSON never does).
    pub(crate) fn boxed(text: String) -> *mut mzn_string {
        let mut bytes = text.into_bytes();
        bytes.push(0);
        Box::into_raw(Box::new(mzn_string {
            bytes: bytes.into_boxed_slice(),
        }))
    }

    /// The text, without the NUL.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.bytes.len() - 1]).unwrap_or("")
    }
}

/// The string's bytes, NUL-terminated, valid until `mzn_string_free`. NULL for NULL.
///
/// # Safety
///
/// `s` must be NULL or a live `mzn_string` from this library.
#[no_mangle]
pub unsafe extern "C" fn mzn_string_ptr(s: *const mzn_string) -> *const c_char {
    // SAFETY: the caller guarantees `s` is NULL or live.
    let s = unsafe { s.as_ref() };
    catch(|| Ok(s.map_or(std::ptr::null(), |s| s.bytes.as_ptr().cast())))
        .unwrap_or(std::ptr::null())
}

/// The string's length in bytes, without the NUL. 0 for NULL.
///
/// # Safety
///
/// `s` must be NULL or a live `mzn_string` from this library.
#[no_mangle]
pub unsafe extern "C" fn mzn_string_len(s: *const mzn_string) -> usize {
    // SAFETY: the caller guarantees `s` is NULL or live.
    let s = unsafe { s.as_ref() };
    catch(|| Ok(s.map_or(0, |s| s.bytes.len() - 1))).unwrap_or(0)
}

/// Frees a string. NULL is fine; freeing the same string twice is not.
///
/// # Safety
///
/// `s` must be NULL or an `mzn_string` from this library not freed before; it must not be used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn mzn_string_free(s: *mut mzn_string) {
    if s.is_null() {
        return;
    }
    // SAFETY: `s` came from `Box::into_raw` in `mzn_string::boxed` and the caller gives up
    // ownership here.
    let s = unsafe { Box::from_raw(s) };
    let _ = catch(|| {
        drop(s);
        Ok(())
    });
}
