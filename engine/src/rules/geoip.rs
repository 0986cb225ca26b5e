//! Country conditions from a MaxMind-format database (`.mmdb`: GeoLite2-Country, GeoIP2,
//! DB-IP's lite country database, ...).
//!
//! The database is read once, when rules are compiled: every network whose country is named
//! by some rule goes into that country's [`IpRanges`]. Deciding is then a binary search, with
//! no database, no decoding and no error path at connection time. A network's country is
//! `country.iso_code`, or `registered_country.iso_code` when the former is absent (anycast and
//! satellite ranges), as the GeoIP data files of Xray and sing-box are built.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use maxminddb::{Reader, WithinOptions};
use serde::Deserialize;

use super::ip_ranges::{from_geoip_network, IpRanges, IpRangesBuilder};

/// An ISO 3166-1 alpha-2 code, upper case.
pub(crate) type CountryCode = [u8; 2];

/// Parses a configured country code (any case).
pub(crate) fn parse_country(text: &str) -> Result<CountryCode, String> {
    match text.trim().as_bytes() {
        &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Ok([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => Err(format!(
            "{text:?} is not a two-letter ISO 3166-1 country code (like \"DE\")"
        )),
    }
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<Place<'a>>,
    #[serde(borrow)]
    registered_country: Option<Place<'a>>,
}

#[derive(Deserialize)]
struct Place<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

/// Largest database read (country databases are about 10 MiB, city ones under 100 MiB).
const MAX_DATABASE_BYTES: u64 = 512 << 20;

/// Reads the networks of `wanted` countries from the database at `path`.
pub(crate) fn load(
    path: &Path,
    wanted: &HashSet<CountryCode>,
) -> Result<HashMap<CountryCode, IpRanges>, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let cannot_open =
        |e: std::io::Error| format!("cannot open GeoIP database {}: {e}", path.display());
    // Read whole: a device or a pipe named here (by a panel admin, say) must not fill the
    // memory or block forever. Opened without blocking (a pipe with no writer would), then
    // checked and read through the same handle.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot_open)?;
    let meta = file.metadata().map_err(cannot_open)?;
    if !meta.is_file() {
        return Err(format!(
            "GeoIP database {} is not a regular file",
            path.display()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_DATABASE_BYTES) as usize);
    (&mut file)
        .take(MAX_DATABASE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_open)?;
    if bytes.len() as u64 > MAX_DATABASE_BYTES {
        return Err(format!(
            "GeoIP database {} is larger than {} MiB",
            path.display(),
            MAX_DATABASE_BYTES >> 20
        ));
    }
    let reader = Reader::from_source(bytes)
        .map_err(|e| format!("cannot open GeoIP database {}: {e}", path.display()))?;
    networks_by_country(&reader, wanted)
        .map_err(|e| format!("GeoIP database {}: {e}", path.display()))
}

fn networks_by_country<S: AsRef<[u8]>>(
    reader: &Reader<S>,
    wanted: &HashSet<CountryCode>,
) -> Result<HashMap<CountryCode, IpRanges>, maxminddb::MaxMindDbError> {
    let mut builders: HashMap<CountryCode, IpRangesBuilder> = wanted
        .iter()
        .map(|&c| (c, IpRangesBuilder::default()))
        .collect();
    // Many networks share one record: decode each record once.
    let mut by_offset: HashMap<usize, Option<CountryCode>> = HashMap::new();
    for network in reader.networks(WithinOptions::default())? {
        let network = network?;
        let Some(offset) = network.offset() else {
            continue;
        };
        let code = match by_offset.get(&offset) {
            Some(&code) => code,
            None => {
                let code = network.decode::<Record>()?.and_then(|r| {
                    let iso = r
                        .country
                        .and_then(|c| c.iso_code)
                        .or_else(|| r.registered_country.and_then(|c| c.iso_code))?;
                    parse_country(iso).ok()
                });
                by_offset.insert(offset, code);
                code
            }
        };
        if let Some(builder) = code.and_then(|c| builders.get_mut(&c)) {
            let net = network.network()?;
            builder.add(from_geoip_network(net.ip(), net.prefix()));
        }
    }
    Ok(builders.into_iter().map(|(c, b)| (c, b.build())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_codes() {
        assert_eq!(parse_country("de"), Ok(*b"DE"));
        assert_eq!(parse_country(" Ir "), Ok(*b"IR"));
        for bad in ["", "D", "DEU", "D1", "??", "ÄÖ"] {
            assert!(parse_country(bad).is_err(), "{bad}");
        }
    }
}
