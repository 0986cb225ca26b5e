#!/usr/bin/env python3
"""Writes geoip-fixture.mmdb, the tiny MaxMind-format country database of the rules tests.

Only documentation ranges (RFC 5737, RFC 3849) and loopback are used. Run once and commit
the output; the tests only read it:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install mmdb-writer==0.2.7 netaddr==1.3.0
    /tmp/venv/bin/python engine/tests/data/make-geoip-fixture.py
"""

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet


def country(code):
    return {"iso_code": code, "names": {"en": code}}


NETWORKS = [
    # Located in a country.
    ("192.0.2.0/24", {"country": country("DE"), "registered_country": country("DE")}),
    ("198.51.100.0/24", {"country": country("IR"), "registered_country": country("IR")}),
    # Only a registered country: rules fall back to it.
    ("203.0.113.0/25", {"registered_country": country("US")}),
    # Both: the location wins.
    ("203.0.113.128/25", {"country": country("NL"), "registered_country": country("US")}),
    # A record without any country.
    ("2001:db8:ffff::/48", {"continent": {"code": "EU"}}),
    ("2001:db8::/33", {"country": country("DE")}),
    ("2001:db8:8000::/34", {"country": country("IR")}),
    # Loopback listed as a country, to show that a country rule does not open special ranges.
    ("127.0.0.0/8", {"country": country("DE")}),
]


class FixedTimeWriter(MMDBWriter):
    def _build_meta(self):
        meta = super()._build_meta()
        meta["build_epoch"] = 1_700_000_000  # reproducible output
        return meta


def main():
    writer = FixedTimeWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="Marzneshin-Test-Country",
        languages=["en"],
        description="Rules test fixture: documentation ranges only",
    )
    for cidr, record in NETWORKS:
        writer.insert_network(IPSet([cidr]), record)
    out = Path(__file__).with_name("geoip-fixture.mmdb")
    writer.to_db_file(str(out))
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
