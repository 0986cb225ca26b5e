//! Key derivation and the in-place AEAD used by every Shadowsocks stream and packet.

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use base64::Engine as _;
use md5::{Digest, Md5};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, NONCE_LEN};

use super::{ConfigError, Method, PeerError};

/// Length of every AEAD tag used here.
pub const TAG_LEN: usize = 16;

/// A user's or server's key material: up to 32 bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    bytes: [u8; 32],
    len: u8,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never appear in logs.
        write!(f, "Key(<{} bytes>)", self.len)
    }
}

impl Key {
    /// Derives the key for `method` from a configured password: `EVP_BytesToKey` (MD5) for
    /// AEAD (2017) methods, a base64 PSK of exactly the key size for 2022 methods.
    pub fn from_password(method: Method, password: &str) -> Result<Key, ConfigError> {
        if password.is_empty() {
            return Err(ConfigError::EmptyPassword);
        }
        if method.is_2022() {
            Key::from_base64(method, password)
        } else {
            Ok(Key::evp_bytes_to_key(password.as_bytes(), method.key_len()))
        }
    }

    /// Decodes a base64 2022 PSK and checks its size.
    pub fn from_base64(method: Method, b64: &str) -> Result<Key, ConfigError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| ConfigError::KeyNotBase64)?;
        if raw.len() != method.key_len() {
            return Err(ConfigError::KeyLength {
                method: method.name(),
                want: method.key_len(),
                got: raw.len(),
            });
        }
        Ok(Key::from_bytes(&raw))
    }

    /// Wraps raw key bytes (at most 32).
    pub fn from_bytes(raw: &[u8]) -> Key {
        let mut bytes = [0u8; 32];
        bytes[..raw.len()].copy_from_slice(raw);
        Key {
            bytes,
            len: raw.len() as u8,
        }
    }

    /// OpenSSL's `EVP_BytesToKey` with MD5 and one iteration, as Shadowsocks uses it.
    pub fn evp_bytes_to_key(password: &[u8], key_len: usize) -> Key {
        let mut out = [0u8; 32];
        let mut filled = 0;
        let mut prev: Option<[u8; 16]> = None;
        while filled < key_len {
            let mut h = Md5::new();
            if let Some(p) = prev {
                h.update(p);
            }
            h.update(password);
            let d: [u8; 16] = h.finalize().into();
            let n = (key_len - filled).min(16);
            out[filled..filled + n].copy_from_slice(&d[..n]);
            filled += n;
            prev = Some(d);
        }
        Key::from_bytes(&out[..key_len])
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// First 16 bytes of BLAKE3(key): how identity headers name a user (SIP023).
    pub fn identity_hash(&self) -> [u8; 16] {
        let h = blake3::hash(self.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.as_bytes()[..16]);
        out
    }
}

/// Derives a session subkey for `method` from `key` and `salt` into `out[..key_len]`.
pub(crate) fn session_subkey(method: Method, key: &Key, salt: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let len = method.key_len();
    if method.is_2022() {
        let mut material = [0u8; 64];
        let kl = key.as_bytes().len();
        material[..kl].copy_from_slice(key.as_bytes());
        material[kl..kl + salt.len()].copy_from_slice(salt);
        let mut hasher = blake3::Hasher::new_derive_key("shadowsocks 2022 session subkey");
        hasher.update(&material[..kl + salt.len()]);
        hasher.finalize_xof().fill(&mut out[..len]);
    } else {
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA1_FOR_LEGACY_USE_ONLY, salt)
            .extract(key.as_bytes());
        let okm = prk
            .expand(&[b"ss-subkey"], HkdfLen(len))
            .expect("key length is at most 32");
        okm.fill(&mut out[..len]).expect("length matches");
    }
    out
}

/// Identity subkey for a TCP identity header (SIP023).
pub(crate) fn identity_subkey(method: Method, ipsk: &Key, salt: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut hasher = blake3::Hasher::new_derive_key("shadowsocks 2022 identity subkey");
    hasher.update(ipsk.as_bytes());
    hasher.update(salt);
    hasher.finalize_xof().fill(&mut out[..method.key_len()]);
    out
}

struct HkdfLen(usize);
impl ring::hkdf::KeyType for HkdfLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// AES used as a plain block cipher (ECB on one 16-byte block) for 2022 separate headers and
/// identity headers.
#[derive(Clone)]
// Both variants are whole AES key schedules; boxing the larger one would cost an allocation per
// identity-header handshake to save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
pub(crate) enum BlockCipher {
    Aes128(aes::Aes128),
    Aes256(aes::Aes256),
}

impl BlockCipher {
    pub(crate) fn new(key: &[u8]) -> BlockCipher {
        match key.len() {
            16 => BlockCipher::Aes128(aes::Aes128::new(GenericArray::from_slice(key))),
            32 => BlockCipher::Aes256(aes::Aes256::new(GenericArray::from_slice(key))),
            n => unreachable!("AES key of {n} bytes is rejected at configuration"),
        }
    }

    pub(crate) fn encrypt(&self, block: &mut [u8]) {
        let b = GenericArray::from_mut_slice(&mut block[..16]);
        match self {
            BlockCipher::Aes128(c) => c.encrypt_block(b),
            BlockCipher::Aes256(c) => c.encrypt_block(b),
        }
    }

    pub(crate) fn decrypt(&self, block: &mut [u8]) {
        let b = GenericArray::from_mut_slice(&mut block[..16]);
        match self {
            BlockCipher::Aes128(c) => c.decrypt_block(b),
            BlockCipher::Aes256(c) => c.decrypt_block(b),
        }
    }
}

/// One direction of an AEAD session: a key and a little-endian counter nonce.
pub(crate) struct SessionCipher {
    key: LessSafeKey,
    nonce: [u8; NONCE_LEN],
}

impl SessionCipher {
    pub(crate) fn new(method: Method, subkey: &[u8]) -> SessionCipher {
        let unbound = UnboundKey::new(method.aead(), &subkey[..method.key_len()])
            .expect("subkey length matches the algorithm");
        SessionCipher {
            key: LessSafeKey::new(unbound),
            nonce: [0; NONCE_LEN],
        }
    }

    pub(crate) fn from_salt(method: Method, key: &Key, salt: &[u8]) -> SessionCipher {
        SessionCipher::new(method, &session_subkey(method, key, salt))
    }

    fn next_nonce(&mut self) -> Nonce {
        let n = Nonce::assume_unique_for_key(self.nonce);
        for b in self.nonce.iter_mut() {
            *b = b.wrapping_add(1);
            if *b != 0 {
                break;
            }
        }
        n
    }

    /// Encrypts `data` in place and returns its tag.
    pub(crate) fn seal(&mut self, data: &mut [u8]) -> Tag {
        let nonce = self.next_nonce();
        self.key
            .seal_in_place_separate_tag(nonce, Aad::empty(), data)
            .expect("chunks are far below ring's length limit")
    }

    /// Encrypts `buf[..len]` in place and writes the tag at `buf[len..len + 16]`.
    pub(crate) fn seal_with_tag(&mut self, buf: &mut [u8], len: usize) {
        let tag = self.seal(&mut buf[..len]);
        buf[len..len + TAG_LEN].copy_from_slice(tag.as_ref());
    }

    /// Decrypts `data_and_tag` in place; the plaintext is the first `len - 16` bytes.
    pub(crate) fn open(&mut self, data_and_tag: &mut [u8]) -> Result<(), PeerError> {
        let nonce = self.next_nonce();
        self.key
            .open_in_place(nonce, Aad::empty(), data_and_tag)
            .map(|_| ())
            .map_err(|_| PeerError::BadChunk)
    }

    /// Decrypts into a copy so the input survives a failed attempt (trial decryption).
    pub(crate) fn try_open_copy<const N: usize>(
        &mut self,
        data_and_tag: &[u8],
    ) -> Result<[u8; N], PeerError> {
        let mut copy = [0u8; N];
        copy.copy_from_slice(&data_and_tag[..N]);
        self.open(&mut copy)?;
        Ok(copy)
    }

    /// One-shot operation with an explicit nonce (2022 AES UDP).
    pub(crate) fn seal_with_nonce(&self, nonce: [u8; NONCE_LEN], data: &mut [u8]) -> Tag {
        self.key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), data)
            .expect("packets are far below ring's length limit")
    }

    pub(crate) fn open_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        data_and_tag: &mut [u8],
    ) -> Result<(), PeerError> {
        self.key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                data_and_tag,
            )
            .map(|_| ())
            .map_err(|_| PeerError::BadAuth)
    }
}

/// XChaCha20-Poly1305 with the PSK directly (2022-blake3-chacha20-poly1305 UDP).
#[derive(Clone)]
pub(crate) struct XChaCha {
    cipher: chacha20poly1305::XChaCha20Poly1305,
}

impl XChaCha {
    pub(crate) fn new(key: &Key) -> XChaCha {
        use chacha20poly1305::KeyInit as _;
        XChaCha {
            cipher: chacha20poly1305::XChaCha20Poly1305::new(GenericArray::from_slice(
                key.as_bytes(),
            )),
        }
    }

    pub(crate) fn seal(&self, nonce: &[u8; 24], data: &mut [u8]) -> [u8; TAG_LEN] {
        use chacha20poly1305::AeadInPlace as _;
        let tag = self
            .cipher
            .encrypt_in_place_detached(GenericArray::from_slice(nonce), &[], data)
            .expect("packets are far below the cipher's length limit");
        tag.into()
    }

    pub(crate) fn open(&self, nonce: &[u8; 24], data_and_tag: &mut [u8]) -> Result<(), PeerError> {
        use chacha20poly1305::AeadInPlace as _;
        if data_and_tag.len() < TAG_LEN {
            return Err(PeerError::ShortPacket);
        }
        let (data, tag) = data_and_tag.split_at_mut(data_and_tag.len() - TAG_LEN);
        self.cipher
            .decrypt_in_place_detached(
                GenericArray::from_slice(nonce),
                &[],
                data,
                GenericArray::from_slice(tag),
            )
            .map_err(|_| PeerError::BadAuth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shadowsocks::tests::hex;

    /// `EVP_BytesToKey(MD5, "foobar")`, as `openssl enc -aes-256-cbc -k foobar -nosalt -P -md md5`
    /// prints it (the first 32 bytes: key; MD5 chain D1 || D2).
    #[test]
    fn evp_bytes_to_key_matches_openssl() {
        let k = Key::evp_bytes_to_key(b"foobar", 32);
        // D1 = MD5("foobar"), D2 = MD5(D1 || "foobar")
        let d1 = hex("3858f62230ac3c915f300c664312c63f");
        assert_eq!(&k.as_bytes()[..16], &d1[..]);
        let mut h = Md5::new();
        h.update(&d1);
        h.update(b"foobar");
        let d2: [u8; 16] = h.finalize().into();
        assert_eq!(&k.as_bytes()[16..], &d2[..]);
        assert_eq!(Key::evp_bytes_to_key(b"foobar", 16).as_bytes(), &d1[..]);
    }

    /// RFC 5869 test case 4 (HKDF-SHA1): checks that the HKDF we call is SHA-1 HKDF.
    #[test]
    fn hkdf_sha1_rfc5869_case4() {
        let ikm = hex("0b0b0b0b0b0b0b0b0b0b0b");
        let salt = hex("000102030405060708090a0b0c");
        let info = hex("f0f1f2f3f4f5f6f7f8f9");
        let okm = hex(
            "085a01ea1b10f36933068b56efa5ad81a4f14b822f5b091568a9cdd4f155fda2c22e422478d305f3f896",
        );
        let prk =
            ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA1_FOR_LEGACY_USE_ONLY, &salt).extract(&ikm);
        let mut out = vec![0u8; okm.len()];
        prk.expand(&[&info], HkdfLen(okm.len()))
            .unwrap()
            .fill(&mut out)
            .unwrap();
        assert_eq!(out, okm);
    }

    #[test]
    fn nonce_is_little_endian_counter() {
        let mut c = SessionCipher::new(Method::Aes128Gcm, &[7u8; 16]);
        for _ in 0..256 {
            c.next_nonce();
        }
        assert_eq!(c.nonce[..3], [0, 1, 0]);
    }

    #[test]
    fn key_checks() {
        assert_eq!(
            Key::from_password(Method::Aes256Gcm, ""),
            Err(ConfigError::EmptyPassword)
        );
        assert_eq!(
            Key::from_password(Method::Blake3Aes256Gcm, "AAAA"),
            Err(ConfigError::KeyLength {
                method: "2022-blake3-aes-256-gcm",
                want: 32,
                got: 3
            })
        );
        assert_eq!(
            Key::from_password(Method::Blake3Aes128Gcm, "not base64!"),
            Err(ConfigError::KeyNotBase64)
        );
        let k = Key::from_password(Method::Blake3Aes128Gcm, "AAAAAAAAAAAAAAAAAAAAAA==").unwrap();
        assert_eq!(k.as_bytes(), &[0u8; 16]);
        assert!(!format!("{k:?}").contains('0'));
    }
}
