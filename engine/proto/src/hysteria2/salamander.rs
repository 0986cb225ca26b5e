//! Salamander, Hysteria2's optional obfuscation of every QUIC packet.
//!
//! ```text
//! +------------+--------------------------------------------------+
//! | salt       | QUIC packet XOR keystream                        |
//! | 8 bytes    | keystream[i] = BLAKE2b-256(password || salt)[i % 32] |
//! +------------+--------------------------------------------------+
//! ```
//!
//! BLAKE2b-256 is BLAKE2b with a 32-byte digest length in its parameter block (Go's
//! `blake2b.Sum256`, Python's `hashlib.blake2b(digest_size=32)`), not a truncated BLAKE2b-512.
//! There is no integrity check: a wrong password yields garbage that QUIC then drops. The
//! reference refuses passwords shorter than 4 bytes ([`MIN_PASSWORD_LEN`]) and drops packets
//! no longer than the salt.

use std::ops::Range;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};

use crate::hysteria2::PeerError;

/// Bytes of salt in front of every obfuscated packet.
pub const SALT_LEN: usize = 8;

/// The shortest password the reference accepts.
pub const MIN_PASSWORD_LEN: usize = 4;

type Blake2b256 = Blake2b<U32>;

/// What the caller configured wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A password shorter than [`MIN_PASSWORD_LEN`] bytes.
    #[error("obfuscation password must be at least {MIN_PASSWORD_LEN} bytes")]
    ShortPassword,
}

/// One inbound's Salamander password, with the hash state after absorbing it.
#[derive(Clone)]
pub struct Salamander {
    keyed: Blake2b256,
}

impl std::fmt::Debug for Salamander {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salamander(..)")
    }
}

impl Salamander {
    /// Prepares the obfuscation for `password`.
    pub fn new(password: &[u8]) -> Result<Salamander, ConfigError> {
        if password.len() < MIN_PASSWORD_LEN {
            return Err(ConfigError::ShortPassword);
        }
        let mut keyed = Blake2b256::new();
        keyed.update(password);
        Ok(Salamander { keyed })
    }

    fn apply(&self, salt: &[u8], data: &mut [u8]) {
        let mut hash = self.keyed.clone();
        hash.update(salt);
        let key: [u8; 32] = hash.finalize().into();
        for (byte, k) in data.iter_mut().zip(key.iter().cycle()) {
            *byte ^= k;
        }
    }

    /// Obfuscates the packet in `buf[SALT_LEN..]` in place and writes `salt` (fresh random
    /// bytes from the caller) in front of it; `buf` is then the datagram to send.
    ///
    /// # Panics
    /// If `buf` is shorter than [`SALT_LEN`] (a caller bug).
    pub fn obfuscate(&self, salt: [u8; SALT_LEN], buf: &mut [u8]) {
        buf[..SALT_LEN].copy_from_slice(&salt);
        let (salt, data) = buf.split_at_mut(SALT_LEN);
        self.apply(salt, data);
    }

    /// Removes the obfuscation of a received datagram in place; returns where the QUIC packet
    /// lies in `buf`.
    pub fn deobfuscate(&self, buf: &mut [u8]) -> Result<Range<usize>, PeerError> {
        if buf.len() <= SALT_LEN {
            return Err(PeerError::ShortPacket);
        }
        let (salt, data) = buf.split_at_mut(SALT_LEN);
        self.apply(salt, data);
        Ok(SALT_LEN..buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Computed independently with Python's standard library, from the algorithm in the
    /// protocol specification:
    ///
    /// ```text
    /// import hashlib
    /// key, salt = b'hunter2!', bytes(range(1, 9))
    /// h = hashlib.blake2b(key + salt, digest_size=32).digest()
    /// # h.hex() == 'beae2fe9676260313a92e382cb8306c0bdbdf385dffeef10f408b9ffbc9b09a3'
    /// pt = b'Salamander keystream test: 40 bytes!!!!!'
    /// (salt + bytes(b ^ h[i % 32] for i, b in enumerate(pt))).hex()
    /// ```
    const PLAINTEXT: &[u8; 40] = b"Salamander keystream test: 40 bytes!!!!!";
    const DATAGRAM: &str = "0102030405060708edcf43880a030e555fe0c3e9aefa75b4cfd892e8ff8a8a63\
                            803299cb8cbb6bdacacb5cc846434110";

    #[test]
    fn matches_an_independent_computation() {
        let s = Salamander::new(b"hunter2!").unwrap();
        let mut buf = [&[0u8; SALT_LEN][..], PLAINTEXT].concat();
        s.obfuscate([1, 2, 3, 4, 5, 6, 7, 8], &mut buf);
        assert_eq!(buf, hex(DATAGRAM));
        // The first 32 bytes XOR the plaintext are the hash itself.
        let key: Vec<u8> = buf[8..40]
            .iter()
            .zip(PLAINTEXT)
            .map(|(c, p)| c ^ p)
            .collect();
        assert_eq!(
            key,
            hex("beae2fe9676260313a92e382cb8306c0bdbdf385dffeef10f408b9ffbc9b09a3")
        );
        let range = s.deobfuscate(&mut buf).unwrap();
        assert_eq!(&buf[range], PLAINTEXT);
    }

    #[test]
    fn wrong_password_gives_garbage_and_short_packets_fail() {
        let mut buf = hex(DATAGRAM);
        let range = Salamander::new(b"hunter3!")
            .unwrap()
            .deobfuscate(&mut buf)
            .unwrap();
        assert_ne!(&buf[range], PLAINTEXT);
        let s = Salamander::new(b"pass").unwrap();
        for len in 0..=SALT_LEN {
            assert_eq!(
                s.deobfuscate(&mut vec![0; len]),
                Err(PeerError::ShortPacket)
            );
        }
        assert_eq!(
            s.deobfuscate(&mut [0; SALT_LEN + 1]),
            Ok(SALT_LEN..SALT_LEN + 1)
        );
        assert_eq!(
            Salamander::new(b"abc").err(),
            Some(ConfigError::ShortPassword)
        );
    }
}
