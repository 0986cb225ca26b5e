use super::*;

const SUITES: [Suite; 3] = [Suite::Aes128Gcm, Suite::Aes256Gcm, Suite::Chacha20Poly1305];
const VERSIONS: [Version; 2] = [Version::Tls12, Version::Tls13];

fn key_len(suite: Suite) -> usize {
    match suite {
        Suite::Aes128Gcm => 16,
        _ => 32,
    }
}

fn pair(version: Version, suite: Suite, seq: u64) -> (Protection, Protection) {
    let key: Vec<u8> = (0..key_len(suite) as u8).collect();
    let iv = [7u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    (
        Protection::new(version, suite, &key, iv, seq).unwrap(),
        Protection::new(version, suite, &key, iv, seq).unwrap(),
    )
}

/// Seals `data` as one record of `content_type` into a fresh buffer.
fn seal(p: &mut Protection, data: &[u8], content_type: u8) -> Vec<u8> {
    let mut buf = vec![0u8; p.prefix_len() + data.len() + p.suffix_len()];
    buf[p.prefix_len()..p.prefix_len() + data.len()].copy_from_slice(data);
    let n = p.seal_in_place(&mut buf, data.len(), content_type);
    assert_eq!(n, buf.len());
    buf
}

#[test]
fn every_suite_and_version_round_trips_in_sequence() {
    for version in VERSIONS {
        for suite in SUITES {
            let (mut tx, mut rx) = pair(version, suite, 5);
            for (i, len) in [0usize, 1, 100, MAX_PLAINTEXT].into_iter().enumerate() {
                let data: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
                let mut record = seal(&mut tx, &data, APPLICATION_DATA);
                assert_eq!(record_len(&record, version), Ok(Some(record.len())));
                let opened = rx.open_in_place(&mut record).unwrap();
                assert_eq!(opened.content_type, APPLICATION_DATA);
                assert_eq!(
                    &record[opened.payload],
                    &data[..],
                    "{version:?} {suite:?} {len}"
                );
            }
            assert_eq!((tx.seq(), rx.seq()), (9, 9));
        }
    }
}

#[test]
fn the_real_content_type_survives_and_tls13_hides_it() {
    for version in VERSIONS {
        let (mut tx, mut rx) = pair(version, Suite::Aes128Gcm, 0);
        let mut record = seal(&mut tx, &[1, 0], ALERT);
        let outer = if version == Version::Tls13 {
            APPLICATION_DATA
        } else {
            ALERT
        };
        assert_eq!(record[0], outer);
        let opened = rx.open_in_place(&mut record).unwrap();
        assert_eq!(opened.content_type, ALERT);
        assert_eq!(&record[opened.payload], &[1, 0]);
    }
}

#[test]
fn tls13_padding_is_stripped_and_all_padding_is_refused() {
    let (mut tx, mut rx) = pair(Version::Tls13, Suite::Chacha20Poly1305, 0);
    // A peer may pad: data, type, zeros. Seal "hi" + type + 3 zeros as if it were data of a
    // record whose inner type byte is a zero, then check the opener finds the real type.
    let mut inner = b"hi".to_vec();
    inner.extend([APPLICATION_DATA, 0, 0]);
    // Sealing `inner` as data with inner type 0 gives plaintext "hi" 23 0 0 0.
    let mut record = seal(&mut tx, &inner, 0);
    let opened = rx.open_in_place(&mut record).unwrap();
    assert_eq!(opened.content_type, APPLICATION_DATA);
    assert_eq!(&record[opened.payload], b"hi");

    let mut record = seal(&mut tx, &[0, 0], 0);
    assert_eq!(
        rx.open_in_place(&mut record),
        Err(RecordError::NoContentType)
    );
}

#[test]
fn tampering_reordering_and_wrong_keys_fail_authentication() {
    for version in VERSIONS {
        for suite in SUITES {
            let (mut tx, mut rx) = pair(version, suite, 0);
            let first = seal(&mut tx, b"first", APPLICATION_DATA);
            let second = seal(&mut tx, b"second", APPLICATION_DATA);
            // Out of order: the second record under the first's sequence number.
            let mut r = second.clone();
            assert_eq!(rx.open_in_place(&mut r), Err(RecordError::Decrypt));
            // A flipped bit anywhere in the protected part.
            for at in [HEADER_LEN, first.len() - 1] {
                let mut r = first.clone();
                r[at] ^= 1;
                assert_eq!(rx.open_in_place(&mut r), Err(RecordError::Decrypt));
            }
            // A failed record does not move the sequence: the genuine ones still open.
            let mut r = first.clone();
            assert!(rx.open_in_place(&mut r).is_ok());
            let mut r = second.clone();
            assert!(rx.open_in_place(&mut r).is_ok());
            // Another key.
            let other = vec![0xEEu8; key_len(suite)];
            let mut wrong = Protection::new(version, suite, &other, [0; 12], 0).unwrap();
            let mut r = first.clone();
            assert_eq!(wrong.open_in_place(&mut r), Err(RecordError::Decrypt));
        }
    }
}

#[test]
fn headers_are_checked_before_any_body_arrives() {
    let v = Version::Tls13;
    assert_eq!(record_len(&[23, 3, 3, 0], v), Ok(None));
    assert_eq!(record_len(&[23, 3, 3, 0, 40], v), Ok(Some(45)));
    assert_eq!(
        record_len(&[24, 3, 3, 0, 40], v),
        Err(RecordError::BadHeader(24, 0x0303))
    );
    assert_eq!(
        record_len(&[23, 4, 3, 0, 40], v),
        Err(RecordError::BadHeader(23, 0x0403))
    );
    assert_eq!(
        record_len(b"GET / HTTP/1.1", v),
        Err(RecordError::BadHeader(b'G', 0x4554))
    );
    let over = (MAX_PLAINTEXT + 257) as u16;
    assert_eq!(
        record_len(&[23, 3, 3, (over >> 8) as u8, over as u8], v),
        Err(RecordError::Oversize(
            MAX_PLAINTEXT + 257,
            MAX_PLAINTEXT + 256
        ))
    );
    assert!(record_len(&[23, 3, 3, (over >> 8) as u8, over as u8], Version::Tls12).is_ok());
}

#[test]
fn short_and_unprotected_records_are_refused() {
    let (_, mut rx) = pair(Version::Tls13, Suite::Aes128Gcm, 0);
    let mut short = [23u8, 3, 3, 0, 3, 1, 2, 3];
    assert_eq!(rx.open_in_place(&mut short), Err(RecordError::Short(8)));
    let mut plain = [22u8; 30];
    assert_eq!(
        rx.open_in_place(&mut plain),
        Err(RecordError::Unprotected(22))
    );
    let (_, mut rx12) = pair(Version::Tls12, Suite::Aes256Gcm, 0);
    let mut short = [23u8; 5 + 8 + 15];
    assert_eq!(rx12.open_in_place(&mut short), Err(RecordError::Short(28)));
}

#[test]
fn keys_of_the_wrong_length_are_refused() {
    let err = Protection::new(Version::Tls13, Suite::Aes256Gcm, &[0; 16], [0; 12], 0).unwrap_err();
    assert_eq!(err.to_string(), "a Aes256Gcm key must be 32 bytes, got 16");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// RFC 8448 section 3 (simple 1-RTT handshake, TLS_AES_128_GCM_SHA256): the application data
/// records each side sends, byte for byte, from the traffic keys the trace derives. The
/// server's is its second record under those keys (a NewSessionTicket went first).
#[test]
fn rfc8448_application_data_records_seal_and_open_byte_for_byte() {
    let payload: Vec<u8> = (0..50).collect();
    let cases = [
        (
            "17422dda596ed5d9acd890e3c63f5051",
            "5b78923dee08579033e523d9",
            0,
            "1703030043a23f7054b62c94d0affafe8228ba55cbefacea42f914aa66bcab3f2b9819a8a5b46b395bd54a9a20441e2b62974e1f5a6292a2977014bd1e3deae63aeebb21694915e4",
        ),
        (
            "9f02283b6c9c07efc26bb9f2ac92e356",
            "cf782b88dd83549aadf1e984",
            1,
            "17030300432e937e11ef4ac740e538ad36005fc4a46932fc3225d05f82aa1b36e30efaf97d90e6dffc602dcb501a59a8fcc49c4bf2e5f0a21c0047c2abf332540dd032e167c2955d",
        ),
    ];
    for (key, iv, seq, record) in cases {
        let key = hex(key);
        let iv: [u8; 12] = hex(iv).try_into().unwrap();
        let expected = hex(record);
        let mut tx = Protection::new(Version::Tls13, Suite::Aes128Gcm, &key, iv, seq).unwrap();
        assert_eq!(seal(&mut tx, &payload, APPLICATION_DATA), expected);
        let mut rx = Protection::new(Version::Tls13, Suite::Aes128Gcm, &key, iv, seq).unwrap();
        let mut got = expected.clone();
        let opened = rx.open_in_place(&mut got).unwrap();
        assert_eq!(opened.content_type, APPLICATION_DATA);
        assert_eq!(&got[opened.payload], &payload[..]);
    }
}

#[test]
fn the_fuzz_entry_point_holds_on_forged_and_raw_records() {
    for mode in 0..12u8 {
        let mut data = vec![mode];
        for i in 0..40u8 {
            data.extend([i.wrapping_mul(37), i, i.wrapping_mul(5)]);
        }
        crate::fuzzing::tls_records(&data);
        data[0] |= 1;
        crate::fuzzing::tls_records(&data);
    }
    crate::fuzzing::tls_records(&[0, 23, 3, 3, 0, 17, 1, 2]);
}

#[test]
fn tls13_inner_plaintext_over_16_kib_plus_one_is_refused_even_as_padding() {
    let (tx, mut rx) = pair(Version::Tls13, Suite::Aes128Gcm, 0);
    // Data of 16 KiB, its type, one byte of padding: 2^14 + 2 inner bytes, sealed by hand.
    let inner = MAX_PLAINTEXT + 2;
    let mut record = vec![0u8; HEADER_LEN + inner + TAG_LEN];
    record[..3].copy_from_slice(&[23, 3, 3]);
    record[3..5].copy_from_slice(&((inner + TAG_LEN) as u16).to_be_bytes());
    record[HEADER_LEN + MAX_PLAINTEXT] = APPLICATION_DATA;
    let nonce = tx.nonce(0);
    let (header, body) = record.split_at_mut(HEADER_LEN);
    let tag = tx
        .key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&*header),
            &mut body[..inner],
        )
        .unwrap();
    body[inner..].copy_from_slice(tag.as_ref());
    assert_eq!(
        rx.open_in_place(&mut record),
        Err(RecordError::PlaintextOversize(inner))
    );
}
