//! Key derivation of VMess AEAD: HMAC-SHA256 nested once per path element.
//!
//! `KDF(key, p1, ..., pn)` is `H_{n+1}(key)` where `H_0` is SHA-256, `H_1` is HMAC over `H_0`
//! keyed with "VMess AEAD KDF", and `H_{i+1}` is HMAC over `H_i` (as its hash function, block
//! size 64, output 32) keyed with `p_i`. Source: Xray-core `proxy/vmess/aead/kdf.go`.

use ring::digest;

const BLOCK: usize = 64;
const ROOT: &[u8] = b"VMess AEAD KDF";

/// Longest path any caller uses (3) plus the root.
const MAX_DEPTH: usize = 4;

/// `KDF(key, path...)`, 32 bytes.
pub(crate) fn kdf(key: &[u8], path: &[&[u8]]) -> [u8; 32] {
    assert!(
        path.len() < MAX_DEPTH,
        "KDF path of {} elements",
        path.len()
    );
    let mut salts: [&[u8]; MAX_DEPTH] = [&[]; MAX_DEPTH];
    salts[0] = ROOT;
    salts[1..=path.len()].copy_from_slice(path);
    hash(&salts[..=path.len()], &[key])
}

/// The first 16 bytes of [`kdf`]: an AES-128 key.
pub(crate) fn kdf16(key: &[u8], path: &[&[u8]]) -> [u8; 16] {
    first::<16>(&kdf(key, path))
}

/// The first 12 bytes of [`kdf`]: an AEAD nonce.
pub(crate) fn kdf12(key: &[u8], path: &[&[u8]]) -> [u8; 12] {
    first::<12>(&kdf(key, path))
}

pub(crate) fn first<const N: usize>(b: &[u8]) -> [u8; N] {
    b[..N].try_into().expect("long enough")
}

/// `H_n(message)` with `n = salts.len()`: the message is the concatenation of `message`.
fn hash(salts: &[&[u8]], message: &[&[u8]]) -> [u8; 32] {
    let Some((&salt, inner)) = salts.split_last() else {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in message {
            ctx.update(part);
        }
        return first::<32>(ctx.finish().as_ref());
    };
    let mut key = [0u8; BLOCK];
    if salt.len() > BLOCK {
        key[..32].copy_from_slice(&hash(inner, &[salt]));
    } else {
        key[..salt.len()].copy_from_slice(salt);
    }
    let ipad = key.map(|b| b ^ 0x36);
    let opad = key.map(|b| b ^ 0x5c);
    // One more part per level: at most MAX_DEPTH + 1 at the bottom.
    let mut parts: [&[u8]; MAX_DEPTH + 2] = [&[]; MAX_DEPTH + 2];
    parts[0] = &ipad;
    parts[1..=message.len()].copy_from_slice(message);
    let inner_digest = hash(inner, &parts[..=message.len()]);
    hash(inner, &[&opad, &inner_digest])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmess::tests::hex;

    /// v2ray-core `proxy/vmess/aead/kdf_test.go`, `TestKDFValue`.
    #[test]
    fn v2ray_kdf_vector() {
        let got = kdf(
            b"Demo Key for KDF Value Test",
            &[
                b"Demo Path for KDF Value Test",
                b"Demo Path for KDF Value Test2",
                b"Demo Path for KDF Value Test3",
            ],
        );
        assert_eq!(
            got.to_vec(),
            hex("53e9d7e1bd7bd25022b71ead07d8a596efc8a845c7888652fd684b4903dc8892")
        );
    }

    /// With no path, the KDF is plain HMAC-SHA256 keyed with the root salt.
    #[test]
    fn no_path_is_hmac_sha256() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, ROOT);
        let want = ring::hmac::sign(&key, b"message");
        assert_eq!(&kdf(b"message", &[])[..], want.as_ref());
    }

    /// A salt longer than the block is hashed first, as HMAC requires.
    #[test]
    fn long_salt_is_hashed() {
        let long = [7u8; 100];
        let short = hash(&[ROOT], &[&long]);
        assert_eq!(
            hash(&[ROOT, &long], &[b"x"]),
            hash(&[ROOT, &short], &[b"x"])
        );
    }
}
