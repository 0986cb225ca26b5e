//! Decisions of whole rule sets: every condition, their combinations, first-match order, the
//! default, the built-in special-range rule, the two phases, time windows and countries.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::*;

/// 2024-01-01T00:00:00Z, a Monday.
const MONDAY: u64 = 1_704_067_200;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geoip-fixture.mmdb")
}

fn config(json: &str) -> RulesConfig {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn compile(json: &str) -> RuleSet {
    compile_with(json, DestinationPolicy::default())
}

fn compile_with(json: &str, policy: DestinationPolicy) -> RuleSet {
    let mut c = config(json);
    if c.geoip_database.is_some() {
        c.geoip_database = Some(fixture());
    }
    RuleSet::compile(&c, policy).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn compile_err(json: &str) -> String {
    RuleSet::compile(&config(json), DestinationPolicy::default())
        .unwrap_err()
        .to_string()
}

/// A query to a resolved public documentation address.
fn to(dest: &str, port: u16) -> Query<'static> {
    let mut q = Query::new(ip("198.51.100.200"), port, MONDAY);
    q.ip = Some(ip(dest));
    q
}

fn named(domain: &'static str, port: u16) -> Query<'static> {
    let mut q = Query::new(ip("198.51.100.200"), port, MONDAY);
    q.domain = Some(domain);
    q
}

/// The decision for a public destination at `now_unix`.
fn decide_at(rules: &RuleSet, now_unix: u64) -> Decision {
    let mut q = to("203.0.113.1", 443);
    q.now_unix = now_unix;
    rules.decide(&q)
}

fn allow(i: usize) -> Decision {
    Decision::Allow(Reason::Rule(i))
}

fn deny(i: usize) -> Decision {
    Decision::Deny(Reason::Rule(i))
}

const ALLOW_DEFAULT: Decision = Decision::Allow(Reason::Default);
const DENY_DEFAULT: Decision = Decision::Deny(Reason::Default);

#[test]
fn empty_config_allows_public_and_blocks_special() {
    let rules = compile("{}");
    assert!(rules.is_empty());
    assert_eq!(rules.decide(&to("203.0.113.1", 443)), ALLOW_DEFAULT);
    assert_eq!(rules.decide(&to("2001:db8::1", 443)), ALLOW_DEFAULT);
    assert_eq!(
        rules.decide(&to("127.0.0.1", 80)),
        Decision::Deny(Reason::Blocked(SpecialRange::Loopback))
    );
    assert_eq!(
        rules.decide(&to("10.0.0.1", 80)),
        Decision::Deny(Reason::Blocked(SpecialRange::Private))
    );
    let builtin = RuleSet::builtin(DestinationPolicy::default());
    assert_eq!(builtin.decide(&to("203.0.113.1", 443)), ALLOW_DEFAULT);
    assert!(!builtin.decide(&to("::1", 443)).is_allow());
}

/// The built-in rule keeps `outbound::DestinationPolicy::permits` exactly.
#[test]
fn builtin_rule_agrees_with_the_destination_policy() {
    let ips = [
        "127.0.0.1",
        "127.1.2.3",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.0.1",
        "172.32.0.1",
        "192.168.1.1",
        "169.254.1.1",
        "0.0.0.0",
        "0.1.2.3",
        "100.64.0.1",
        "100.128.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "::1",
        "::",
        "fc00::1",
        "fd12::1",
        "fe80::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:192.0.2.1",
    ];
    for (allow_loopback, allow_private) in
        [(false, false), (true, false), (false, true), (true, true)]
    {
        let policy = DestinationPolicy {
            allow_loopback,
            allow_private,
        };
        let rules = RuleSet::builtin(policy);
        for s in ips {
            assert_eq!(
                rules.decide(&to(s, 80)).is_allow(),
                policy.permits(ip(s)),
                "{s} with {policy:?}"
            );
        }
    }
}

#[test]
fn every_special_range_is_named() {
    let rules = compile("{}");
    for (s, range) in [
        ("127.0.0.1", SpecialRange::Loopback),
        ("::1", SpecialRange::Loopback),
        ("0.0.0.0", SpecialRange::Unspecified),
        ("::", SpecialRange::Unspecified),
        ("192.168.0.1", SpecialRange::Private),
        ("fd00::1", SpecialRange::Private),
        ("100.100.100.100", SpecialRange::Cgnat),
        ("169.254.169.254", SpecialRange::LinkLocal),
        ("fe80::1", SpecialRange::LinkLocal),
        ("239.1.1.1", SpecialRange::Multicast),
        ("ff05::1", SpecialRange::Multicast),
        ("255.255.255.255", SpecialRange::Broadcast),
    ] {
        assert_eq!(
            rules.decide(&to(s, 53)),
            Decision::Deny(Reason::Blocked(range)),
            "{s}"
        );
    }
}

#[test]
fn policy_switches_open_their_ranges() {
    let loopback = DestinationPolicy {
        allow_loopback: true,
        allow_private: false,
    };
    let rules = compile_with("{}", loopback);
    assert_eq!(rules.decide(&to("127.0.0.1", 80)), ALLOW_DEFAULT);
    assert_eq!(rules.decide(&to("::1", 80)), ALLOW_DEFAULT);
    assert!(!rules.decide(&to("10.0.0.1", 80)).is_allow());

    let private = DestinationPolicy {
        allow_loopback: false,
        allow_private: true,
    };
    let rules = compile_with("{}", private);
    assert!(!rules.decide(&to("127.0.0.1", 80)).is_allow());
    for s in [
        "10.0.0.1",
        "100.64.0.1",
        "169.254.0.1",
        "fd00::1",
        "224.0.0.1",
    ] {
        assert_eq!(rules.decide(&to(s, 80)), ALLOW_DEFAULT, "{s}");
    }
    // A deny rule still applies to an opened range.
    let rules = compile_with(
        r#"{"rules":[{"action":"deny","destination_cidrs":["10.0.0.0/8"]}]}"#,
        private,
    );
    assert_eq!(rules.decide(&to("10.9.9.9", 80)), deny(0));
    assert_eq!(rules.decide(&to("192.168.0.1", 80)), ALLOW_DEFAULT);
}

#[test]
fn explicit_allow_rules_open_special_ranges() {
    let rules = compile(
        r#"{"rules":[
            {"action":"allow","destination_cidrs":["10.1.0.0/16"]},
            {"action":"allow","destination_cidrs":["127.0.0.1"],"users":["admin"]},
            {"action":"allow","destination_cidrs":["::ffff:192.168.7.0/120"]}
        ]}"#,
    );
    assert_eq!(rules.decide(&to("10.1.2.3", 80)), allow(0));
    assert_eq!(rules.decide(&to("::ffff:10.1.2.3", 80)), allow(0));
    assert_eq!(
        rules.decide(&to("10.2.0.1", 80)),
        Decision::Deny(Reason::Blocked(SpecialRange::Private))
    );
    assert!(!rules.decide(&to("127.0.0.1", 80)).is_allow(), "not admin");
    let mut q = to("127.0.0.1", 80);
    q.user = Some("admin");
    assert_eq!(rules.decide(&q), allow(1));
    q.ip = Some(ip("127.0.0.2"));
    assert!(!rules.decide(&q).is_allow(), "only the named address");
    assert_eq!(rules.decide(&to("192.168.7.1", 80)), allow(2));
}

#[test]
fn broad_allow_rules_do_not_open_special_ranges() {
    let rules = compile(
        r#"{"default":"deny","rules":[
            {"action":"allow","users":["alice"]},
            {"action":"allow","destination_cidrs":["0.0.0.0/0","::/0"]},
            {"action":"allow","destination_cidrs":["8.0.0.0/6"]},
            {"action":"allow","domains":["router.example"]},
            {"action":"allow","ports":[22]},
            {"action":"allow"}
        ]}"#,
    );
    let mut q = to("10.0.0.1", 22);
    q.user = Some("alice");
    q.domain = Some("router.example");
    assert_eq!(
        rules.decide(&q),
        Decision::Deny(Reason::Default),
        "default deny, built-in deny either way"
    );
    assert_eq!(rules.decide(&to("203.0.113.5", 80)), allow(1));
    assert_eq!(rules.decide(&to("2001:db8::5", 80)), allow(1));
    let catch_all = compile(r#"{"rules":[{"action":"allow"}]}"#);
    assert_eq!(
        catch_all.decide(&to("127.0.0.1", 80)),
        Decision::Deny(Reason::Blocked(SpecialRange::Loopback))
    );
    assert_eq!(catch_all.decide(&to("203.0.113.5", 80)), allow(0));
}

#[test]
fn a_skipped_allow_rule_lets_later_rules_decide() {
    let rules = compile(
        r#"{"rules":[
            {"action":"allow","users":["alice"]},
            {"action":"allow","destination_cidrs":["192.168.0.0/16"]},
            {"action":"deny","users":["alice"]}
        ]}"#,
    );
    let mut q = to("192.168.1.1", 80);
    q.user = Some("alice");
    assert_eq!(rules.decide(&q), allow(1));
    q.ip = Some(ip("172.16.0.1"));
    assert_eq!(rules.decide(&q), deny(2));
    q.ip = Some(ip("203.0.113.1"));
    assert_eq!(rules.decide(&q), allow(0));
}

#[test]
fn first_match_wins_and_default_applies() {
    let rules = compile(
        r#"{"default":"deny","rules":[
            {"action":"deny","ports":[25]},
            {"action":"allow","ports":["1-1024"]},
            {"action":"deny","ports":[80]}
        ]}"#,
    );
    assert_eq!(rules.decide(&to("203.0.113.1", 25)), deny(0));
    assert_eq!(rules.decide(&to("203.0.113.1", 80)), allow(1));
    assert_eq!(rules.decide(&to("203.0.113.1", 8080)), DENY_DEFAULT);
    // Default deny also wins over the built-in rule: the reason is the default.
    assert_eq!(rules.decide(&to("10.0.0.1", 8080)), DENY_DEFAULT);
}

#[test]
fn ports_singles_ranges_and_lists() {
    let rules = compile(
        r#"{"rules":[{"action":"deny","ports":[53, "853", "1000-2000", "5000-5001,6000", 65535, "0"]}]}"#,
    );
    for p in [0, 53, 853, 1000, 1500, 2000, 5000, 5001, 6000, 65535] {
        assert_eq!(rules.decide(&to("203.0.113.1", p)), deny(0), "{p}");
    }
    for p in [1, 52, 54, 999, 2001, 5002, 5999, 6001, 65534] {
        assert_eq!(rules.decide(&to("203.0.113.1", p)), ALLOW_DEFAULT, "{p}");
    }
}

#[test]
fn users_inbounds_and_network() {
    let rules = compile(
        r#"{"rules":[
            {"action":"deny","users":["bob","carol"]},
            {"action":"deny","inbounds":["ss-udp"]},
            {"action":"deny","network":["udp"],"ports":[443]}
        ]}"#,
    );
    let mut q = to("203.0.113.1", 443);
    assert_eq!(rules.decide(&q), ALLOW_DEFAULT, "no user, tcp");
    q.user = Some("Bob");
    assert_eq!(
        rules.decide(&q),
        ALLOW_DEFAULT,
        "user names are case-sensitive"
    );
    q.user = Some("carol");
    assert_eq!(rules.decide(&q), deny(0));
    q.user = None;
    q.inbound = Some("ss-udp");
    assert_eq!(rules.decide(&q), deny(1));
    q.inbound = Some("ss-tcp");
    assert_eq!(rules.decide(&q), ALLOW_DEFAULT);
    q.network = Network::Udp;
    assert_eq!(rules.decide(&q), deny(2), "QUIC");
    q.port = 53;
    assert_eq!(rules.decide(&q), ALLOW_DEFAULT);
}

#[test]
fn source_cidrs_with_mapped_clients() {
    let rules = compile(
        r#"{"rules":[{"action":"deny","source_cidrs":["192.0.2.0/25","2001:db8:bad::/48"]}]}"#,
    );
    let mut q = to("203.0.113.1", 443);
    for (src, denied) in [
        ("192.0.2.1", true),
        ("::ffff:192.0.2.127", true),
        ("192.0.2.128", false),
        ("2001:db8:bad::1", true),
        ("2001:db8:bad:1::1", true),
        ("2001:db8:bae::1", false),
    ] {
        q.source = ip(src);
        assert_eq!(rules.decide(&q) == deny(0), denied, "{src}");
    }
}

#[test]
fn destination_cidrs_v4_v6_and_mapped() {
    let rules = compile(
        r#"{"rules":[{"action":"deny","destination_cidrs":["198.51.100.0/24","203.0.113.7","2001:db8:1::/48"]}]}"#,
    );
    for (dest, denied) in [
        ("198.51.100.1", true),
        ("::ffff:198.51.100.1", true),
        ("203.0.113.7", true),
        ("203.0.113.8", false),
        ("2001:db8:1:2::3", true),
        ("2001:db8:2::1", false),
        ("192.0.2.1", false),
    ] {
        assert_eq!(rules.decide(&to(dest, 443)) == deny(0), denied, "{dest}");
    }
}

#[test]
fn domain_conditions() {
    let rules = compile(
        r#"{"rules":[
            {"action":"deny","domains":["exact.example"]},
            {"action":"deny","domain_suffixes":["blocked.example", ".subs.example"]},
            {"action":"deny","domain_keywords":["tracker"]}
        ]}"#,
    );
    let d = |name: &'static str| {
        let mut q = named(name, 443);
        q.ip = Some(ip("203.0.113.1"));
        rules.decide(&q)
    };
    assert_eq!(d("exact.example"), deny(0));
    assert_eq!(d("EXACT.Example."), deny(0));
    assert_eq!(d("www.exact.example"), ALLOW_DEFAULT);
    assert_eq!(d("blocked.example"), deny(1));
    assert_eq!(d("a.b.blocked.example."), deny(1));
    assert_eq!(d("notblocked.example"), ALLOW_DEFAULT);
    assert_eq!(d("subs.example"), ALLOW_DEFAULT);
    assert_eq!(d("x.subs.example"), deny(1));
    assert_eq!(d("cdn.TRACKER-net.example"), deny(2));
    assert_eq!(d("example.org"), ALLOW_DEFAULT);
    // A literal address never matches a domain condition.
    assert_eq!(rules.decide(&to("203.0.113.1", 443)), ALLOW_DEFAULT);
}

#[test]
fn conditions_are_anded_and_entries_ored() {
    let rules = compile(
        r#"{"default":"deny","rules":[{
            "action":"allow",
            "users":["alice"],
            "ports":[443],
            "domain_suffixes":["example.com"],
            "domains":["example.org"],
            "destination_cidrs":["203.0.113.0/24"]
        }]}"#,
    );
    let base = || {
        let mut q = named("www.example.com", 443);
        q.user = Some("alice");
        q.ip = Some(ip("203.0.113.9"));
        q
    };
    assert_eq!(rules.decide(&base()), allow(0));
    let mut q = base();
    q.domain = Some("example.org");
    assert_eq!(rules.decide(&q), allow(0), "either domain entry");
    let mut q = base();
    q.user = Some("bob");
    assert_eq!(rules.decide(&q), DENY_DEFAULT);
    let mut q = base();
    q.port = 80;
    assert_eq!(rules.decide(&q), DENY_DEFAULT);
    let mut q = base();
    q.domain = Some("example.net");
    assert_eq!(rules.decide(&q), DENY_DEFAULT);
    let mut q = base();
    q.ip = Some(ip("198.51.100.1"));
    assert_eq!(
        rules.decide(&q),
        DENY_DEFAULT,
        "domain and address are both required"
    );
    let mut q = base();
    q.domain = None;
    assert_eq!(
        rules.decide(&q),
        DENY_DEFAULT,
        "a literal address has no domain"
    );
}

#[test]
fn two_phases() {
    let rules = compile(
        r#"{"rules":[
            {"action":"deny","domain_suffixes":["ads.example"]},
            {"action":"deny","destination_cidrs":["198.51.100.0/24"]},
            {"action":"allow","domains":["intranet.example"],"destination_cidrs":["10.0.0.0/8"]}
        ]}"#,
    );
    // Phase 1 denies on the name alone: no resolution needed.
    assert_eq!(rules.decide(&named("x.ads.example", 443)), deny(0));
    // Otherwise the address decides.
    let q = named("www.example", 443);
    assert_eq!(rules.decide(&q), Decision::Resolve);
    for (addr, expected) in [
        ("203.0.113.1", ALLOW_DEFAULT),
        ("198.51.100.1", deny(1)),
        (
            "127.0.0.1",
            Decision::Deny(Reason::Blocked(SpecialRange::Loopback)),
        ),
    ] {
        let mut q = q;
        q.ip = Some(ip(addr));
        assert_eq!(rules.decide(&q), expected, "{addr}");
    }
    // A name that resolves into an explicitly opened range.
    let mut q = named("intranet.example", 443);
    assert_eq!(rules.decide(&q), Decision::Resolve);
    q.ip = Some(ip("10.0.0.5"));
    assert_eq!(rules.decide(&q), allow(2));
    // Resolve never comes back once the address is known.
    let mut q = named("anything.example", 1);
    q.ip = Some(ip("::1"));
    assert_ne!(rules.decide(&q), Decision::Resolve);
}

#[test]
fn phase_one_with_default_deny_is_final() {
    let rules = compile(
        r#"{"default":"deny","rules":[{"action":"allow","domain_suffixes":["ok.example"]}]}"#,
    );
    assert_eq!(rules.decide(&named("other.example", 443)), DENY_DEFAULT);
    assert_eq!(
        rules.decide(&named("www.ok.example", 443)),
        Decision::Resolve
    );
    // An address rule earlier in the list makes phase one wait for the address.
    let rules = compile(
        r#"{"default":"deny","rules":[
            {"action":"allow","destination_cidrs":["203.0.113.0/24"]},
            {"action":"allow","domain_suffixes":["ok.example"]}
        ]}"#,
    );
    assert_eq!(
        rules.decide(&named("other.example", 443)),
        Decision::Resolve
    );
    let mut q = named("other.example", 443);
    q.ip = Some(ip("203.0.113.1"));
    assert_eq!(rules.decide(&q), allow(0));
    // An address rule whose other conditions fail does not.
    let rules = compile(
        r#"{"default":"deny","rules":[{"action":"allow","ports":[22],"destination_cidrs":["203.0.113.0/24"]}]}"#,
    );
    assert_eq!(rules.decide(&named("other.example", 443)), DENY_DEFAULT);
}

#[test]
fn time_windows_in_utc() {
    // Week nights: Monday to Friday, 22:00 to 06:00 the next morning.
    let rules = compile(
        r#"{"rules":[{"action":"deny","schedule":[
            {"days":["mon","tue","wed","thu","fri"],"times":["22:00-06:00"]},
            {"days":["saturday"],"times":["12:00-13:00","18:00-19:00"]}
        ]}]}"#,
    );
    let at = |t| decide_at(&rules, t);
    assert_eq!(
        at(MONDAY),
        ALLOW_DEFAULT,
        "Monday 00:00 belongs to Sunday night"
    );
    assert_eq!(at(MONDAY + 22 * HOUR), deny(0));
    assert_eq!(
        at(MONDAY + DAY + 5 * HOUR + 59 * 60),
        deny(0),
        "Tuesday 05:59"
    );
    assert_eq!(at(MONDAY + DAY + 6 * HOUR), ALLOW_DEFAULT, "Tuesday 06:00");
    assert_eq!(
        at(MONDAY + 5 * DAY + 3 * HOUR),
        deny(0),
        "Saturday 03:00 (Friday night)"
    );
    assert_eq!(
        at(MONDAY + 5 * DAY + 23 * HOUR),
        ALLOW_DEFAULT,
        "Saturday 23:00"
    );
    assert_eq!(
        at(MONDAY + 6 * DAY + 3 * HOUR),
        ALLOW_DEFAULT,
        "Sunday 03:00"
    );
    assert_eq!(at(MONDAY + 5 * DAY + 12 * HOUR + 30 * 60), deny(0));
    assert_eq!(at(MONDAY + 5 * DAY + 13 * HOUR), ALLOW_DEFAULT);
    assert_eq!(at(MONDAY + 5 * DAY + 18 * HOUR), deny(0));
    // Past the year 9999 no window matches.
    assert_eq!(at(u64::MAX), ALLOW_DEFAULT);
}

#[test]
fn whole_days_and_every_day() {
    let rules = compile(
        r#"{"rules":[
            {"action":"deny","schedule":[{"days":["sat","sun"]}]},
            {"action":"allow","schedule":[{"times":["09:00-17:00"]}],"ports":[25]}
        ],"default":"deny"}"#,
    );
    let at = |t: u64, port| {
        let mut q = to("203.0.113.1", port);
        q.now_unix = t;
        rules.decide(&q)
    };
    assert_eq!(at(MONDAY + 5 * DAY, 443), deny(0));
    assert_eq!(at(MONDAY + 7 * DAY - 1, 443), deny(0));
    assert_eq!(at(MONDAY + 7 * DAY, 443), DENY_DEFAULT);
    assert_eq!(at(MONDAY + 9 * HOUR, 25), allow(1));
    assert_eq!(at(MONDAY + 3 * DAY + 16 * HOUR + 59 * 60, 25), allow(1));
    assert_eq!(at(MONDAY + 17 * HOUR, 25), DENY_DEFAULT);
}

/// Unix seconds of a UTC civil time.
fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> u64 {
    let civil = jiff::civil::datetime(y, mo, d, h, mi, 0, 0);
    jiff::tz::TimeZone::UTC
        .to_timestamp(civil)
        .unwrap()
        .as_second() as u64
}

#[test]
fn time_windows_follow_dst_in_berlin() {
    let rules = compile(
        r#"{"timezone":"Europe/Berlin","rules":[{"action":"deny","schedule":[{"times":["08:00-09:00"]}]}]}"#,
    );
    let at = |t| decide_at(&rules, t);
    // Winter: CET = UTC+1, so 08:00 local is 07:00 UTC.
    assert_eq!(at(utc(2024, 1, 15, 7, 0)), deny(0));
    assert_eq!(at(utc(2024, 1, 15, 8, 0)), ALLOW_DEFAULT);
    // Summer: CEST = UTC+2, so 08:00 local is 06:00 UTC.
    assert_eq!(at(utc(2024, 7, 15, 6, 0)), deny(0));
    assert_eq!(at(utc(2024, 7, 15, 7, 0)), ALLOW_DEFAULT);
    // The day clocks spring forward (2024-03-31, 02:00 -> 03:00): 08:00 is already CEST.
    assert_eq!(at(utc(2024, 3, 31, 6, 30)), deny(0));
    assert_eq!(at(utc(2024, 3, 31, 7, 30)), ALLOW_DEFAULT);
    // The Saturday before: still CET.
    assert_eq!(at(utc(2024, 3, 30, 7, 30)), deny(0));
}

#[test]
fn time_windows_across_midnight_and_a_dst_change() {
    // Saturday 22:00 to Sunday 04:00 in Berlin, over the night clocks spring forward
    // (2024-03-31 02:00 CET -> 03:00 CEST): the window lasts five real hours.
    let rules = compile(
        r#"{"timezone":"Europe/Berlin","rules":[{"action":"deny","schedule":[{"days":["sat"],"times":["22:00-04:00"]}]}]}"#,
    );
    let at = |t| decide_at(&rules, t);
    assert_eq!(at(utc(2024, 3, 30, 20, 59)), ALLOW_DEFAULT, "21:59 CET");
    assert_eq!(at(utc(2024, 3, 30, 21, 0)), deny(0), "22:00 CET");
    assert_eq!(at(utc(2024, 3, 31, 0, 59)), deny(0), "01:59 CET");
    assert_eq!(at(utc(2024, 3, 31, 1, 0)), deny(0), "03:00 CEST");
    assert_eq!(at(utc(2024, 3, 31, 1, 59)), deny(0), "03:59 CEST");
    assert_eq!(at(utc(2024, 3, 31, 2, 0)), ALLOW_DEFAULT, "04:00 CEST");
    // A window inside the skipped hour never happens that day.
    let gap = compile(
        r#"{"timezone":"Europe/Berlin","rules":[{"action":"deny","schedule":[{"days":["sun"],"times":["02:00-03:00"]}]}]}"#,
    );
    for minute in (0..=180).step_by(10) {
        let t = utc(2024, 3, 31, 0, 0) + minute * 60;
        assert_eq!(decide_at(&gap, t), ALLOW_DEFAULT, "+{minute} min");
    }
    // In autumn (2024-10-27, 03:00 CEST -> 02:00 CET) the hour happens twice.
    assert_eq!(
        decide_at(&gap, utc(2024, 10, 27, 0, 30)),
        deny(0),
        "02:30 CEST"
    );
    assert_eq!(
        decide_at(&gap, utc(2024, 10, 27, 1, 30)),
        deny(0),
        "02:30 CET"
    );
    assert_eq!(
        decide_at(&gap, utc(2024, 10, 27, 2, 0)),
        ALLOW_DEFAULT,
        "03:00 CET"
    );
}

#[test]
fn time_windows_in_tehran() {
    // Iran kept DST (UTC+4:30 in summer, +3:30 in winter) until 2022.
    let rules = compile(
        r#"{"timezone":"Asia/Tehran","rules":[{"action":"deny","schedule":[{"days":["fri"],"times":["00:00-01:00"]}]}]}"#,
    );
    let at = |t| decide_at(&rules, t);
    // Friday 2021-07-16 00:00 IRDT = Thursday 19:30 UTC.
    assert_eq!(at(utc(2021, 7, 15, 19, 30)), deny(0));
    assert_eq!(at(utc(2021, 7, 15, 20, 29)), deny(0));
    assert_eq!(at(utc(2021, 7, 15, 20, 30)), ALLOW_DEFAULT);
    // Friday 2021-01-15 00:00 IRST = Thursday 20:30 UTC.
    assert_eq!(at(utc(2021, 1, 14, 19, 30)), ALLOW_DEFAULT);
    assert_eq!(at(utc(2021, 1, 14, 20, 30)), deny(0));
    // Since 2023 there is no DST: July is +3:30 too.
    assert_eq!(at(utc(2024, 7, 11, 20, 30)), deny(0));
    assert_eq!(at(utc(2024, 7, 11, 19, 30)), ALLOW_DEFAULT);
}

#[test]
fn countries_from_the_fixture_database() {
    let rules = compile(
        r#"{"geoip_database":"fixture","rules":[
            {"action":"deny","countries":["ir"]},
            {"action":"allow","countries":["DE","us"],"ports":[443]},
            {"action":"deny","countries":["NL"]}
        ],"default":"deny"}"#,
    );
    for (dest, port, expected) in [
        ("198.51.100.9", 443, deny(0)),
        ("::ffff:198.51.100.9", 443, deny(0)),
        ("2001:db8:8000::1", 443, deny(0)),
        ("192.0.2.9", 443, allow(1)),
        ("192.0.2.9", 80, DENY_DEFAULT),
        ("2001:db8::1", 443, allow(1)),
        // Only a registered country: it counts.
        ("203.0.113.9", 443, allow(1)),
        // Located in NL, registered in US: the location counts.
        ("203.0.113.200", 443, deny(2)),
        // No country in the record, or not in the database at all.
        ("2001:db8:ffff::1", 443, DENY_DEFAULT),
        ("2001:db8:c000::1", 443, DENY_DEFAULT),
    ] {
        assert_eq!(rules.decide(&to(dest, port)), expected, "{dest}:{port}");
    }
}

#[test]
fn a_country_rule_does_not_open_special_ranges() {
    // The fixture lists 127.0.0.0/8 as DE: a deny rule sees it once loopback is opened.
    let loopback = DestinationPolicy {
        allow_loopback: true,
        allow_private: false,
    };
    let rules = compile_with(
        r#"{"geoip_database":"fixture","rules":[{"action":"deny","countries":["DE"]}]}"#,
        loopback,
    );
    assert_eq!(rules.decide(&to("127.0.0.1", 443)), deny(0));
    // An allow rule does not open it.
    let rules = compile(
        r#"{"geoip_database":"fixture","rules":[{"action":"allow","countries":["DE"]}],"default":"deny"}"#,
    );
    assert_eq!(
        rules.decide(&to("127.0.0.1", 443)),
        Decision::Deny(Reason::Default)
    );
    let rules =
        compile(r#"{"geoip_database":"fixture","rules":[{"action":"allow","countries":["DE"]}]}"#);
    assert_eq!(
        rules.decide(&to("127.0.0.1", 443)),
        Decision::Deny(Reason::Blocked(SpecialRange::Loopback))
    );
    // Countries and CIDRs are one condition.
    let rules = compile(
        r#"{"geoip_database":"fixture","rules":[{"action":"deny","countries":["IR"],"destination_cidrs":["203.0.113.0/24"]}]}"#,
    );
    assert_eq!(rules.decide(&to("198.51.100.1", 1)), deny(0));
    assert_eq!(rules.decide(&to("203.0.113.1", 1)), deny(0));
    assert_eq!(rules.decide(&to("192.0.2.1", 1)), ALLOW_DEFAULT);
    // A country rule needs the address: phase one waits.
    assert_eq!(rules.decide(&named("www.example", 1)), Decision::Resolve);
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (r#"{"timezone":"Mars/Base"}"#, "timezone: "),
        (
            r#"{"rules":[{"action":"deny","ports":[70000]}]}"#,
            "rules[0].ports[0]: ",
        ),
        (
            r#"{"rules":[{"action":"deny"},{"action":"deny","ports":[1,"2-1"]}]}"#,
            "rules[1].ports[1]: ",
        ),
        (
            r#"{"rules":[{"action":"deny","ports":["x"]}]}"#,
            "rules[0].ports[0]: ",
        ),
        (
            r#"{"rules":[{"action":"deny","ports":[""]}]}"#,
            "rules[0].ports[0]: ",
        ),
        (
            r#"{"rules":[{"action":"deny","ports":[-1]}]}"#,
            "rules[0].ports[0]: ",
        ),
        (
            r#"{"rules":[{"action":"deny","destination_cidrs":["10.0.0.0/8","10.0.0.0/40"]}]}"#,
            "rules[0].destination_cidrs[1]: ",
        ),
        (
            r#"{"rules":[{"action":"deny","source_cidrs":["nope"]}]}"#,
            "rules[0].source_cidrs[0]: ",
        ),
        (
            r#"{"rules":[{"action":"deny","domains":["*.example.com"]}]}"#,
            "rules[0].domains[0]: ",
        ),
        (
            r#"{"rules":[{"action":"deny","domains":[".example.com"]}]}"#,
            "rules[0].domains[0]: ",
        ),
        (
            r#"{"rules":[{"action":"deny","domain_suffixes":["ok.example",""]}]}"#,
            "rules[0].domain_suffixes[1]: ",
        ),
        (
            r#"{"rules":[{"action":"deny","domain_keywords":["a b"]}]}"#,
            "rules[0].domain_keywords[0]: ",
        ),
        (
            r#"{"rules":[{"action":"deny","users":[""]}]}"#,
            "rules[0].users[0]: ",
        ),
        (
            r#"{"rules":[{"action":"deny","inbounds":["a",""]}]}"#,
            "rules[0].inbounds[1]: ",
        ),
        (
            r#"{"rules":[{"action":"deny","schedule":[{"times":["09:00-17:00"]},{"times":["9am-5pm"]}]}]}"#,
            "rules[0].schedule[1].times[0]: ",
        ),
        (
            r#"{"rules":[{"action":"deny","schedule":[{"times":["10:00-10:00"]}]}]}"#,
            "rules[0].schedule[0].times[0]: ",
        ),
        (
            r#"{"rules":[{"action":"deny"},{"action":"deny","countries":["DE","Germany"]}]}"#,
            "rules[1].countries[1]: ",
        ),
        (
            r#"{"rules":[{"action":"deny"},{"action":"deny","countries":["DE"]}]}"#,
            "rules[1].countries: country conditions need `geoip_database`",
        ),
        (
            r#"{"geoip_database":"/nonexistent/x.mmdb","rules":[{"action":"deny","countries":["DE"]}]}"#,
            "geoip_database: cannot open GeoIP database /nonexistent/x.mmdb",
        ),
    ];
    for (json, prefix) in cases {
        let e = compile_err(json);
        assert!(
            e.starts_with(prefix),
            "{json}\n  gave {e:?}\n  want {prefix:?}"
        );
    }
    let e = RuleSet::compile(
        &config(r#"{"rules":[{"action":"deny","ports":[1]},{"action":"deny","ports":["9-8"]}]}"#),
        DestinationPolicy::default(),
    )
    .unwrap_err();
    assert_eq!(e.field, "rules[1].ports[0]");
}

#[test]
fn a_database_that_is_not_mmdb_is_refused() {
    let json = format!(
        r#"{{"geoip_database":{:?},"rules":[{{"action":"deny","countries":["DE"]}}]}}"#,
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/make-geoip-fixture.py")
            .display()
            .to_string()
    );
    assert!(compile_err(&json).starts_with("geoip_database: "));
    // A device, a directory or a pipe is not read (`/dev/zero` would never end, a pipe with
    // no writer never start).
    let fifo = std::env::temp_dir().join(format!("mzn-geoip-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let fifo_path = fifo.display().to_string();
    for path in ["/dev/zero", "/tmp", fifo_path.as_str()] {
        let json = format!(
            r#"{{"geoip_database":"{path}","rules":[{{"action":"deny","countries":["DE"]}}]}}"#
        );
        assert_eq!(
            compile_err(&json),
            format!("geoip_database: GeoIP database {path} is not a regular file")
        );
    }
    std::fs::remove_file(&fifo).unwrap();
    // Without country rules the database is not read at all.
    let json = r#"{"geoip_database":"/nonexistent/x.mmdb"}"#;
    assert!(RuleSet::compile(&config(json), DestinationPolicy::default()).is_ok());
}

#[test]
fn serde_rejects_unknown_fields_and_values() {
    for json in [
        r#"{"rulez":[]}"#,
        r#"{"rules":[{"action":"deny","domian":["x"]}]}"#,
        r#"{"rules":[{"action":"block"}]}"#,
        r#"{"rules":[{}]}"#,
        r#"{"default":"maybe"}"#,
        r#"{"rules":[{"action":"deny","network":["sctp"]}]}"#,
        r#"{"rules":[{"action":"deny","schedule":[{"days":["funday"]}]}]}"#,
        r#"{"rules":[{"action":"deny","schedule":[{"hours":["09:00-10:00"]}]}]}"#,
    ] {
        assert!(
            serde_json::from_str::<RulesConfig>(json).is_err(),
            "{json} should not parse"
        );
    }
}

#[test]
fn config_round_trips() {
    let json = r#"{
        "rules": [{
            "action": "deny",
            "users": ["alice"],
            "inbounds": ["ss"],
            "network": ["udp"],
            "source_cidrs": ["192.0.2.0/24"],
            "domains": ["a.example"],
            "domain_suffixes": ["b.example"],
            "domain_keywords": ["c"],
            "destination_cidrs": ["2001:db8::/32"],
            "countries": ["DE"],
            "ports": [443, "1000-2000"],
            "schedule": [{"days": ["mon", "sunday"], "times": ["22:00-06:00"]}]
        }],
        "default": "deny",
        "timezone": "Asia/Tehran",
        "geoip_database": "/var/lib/geoip/country.mmdb"
    }"#;
    let c = config(json);
    assert_eq!(
        c.rules[0].schedule[0].days,
        vec![Weekday::Mon, Weekday::Sun]
    );
    let again: RulesConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(again, c);
    assert_eq!(
        serde_json::to_string(&RulesConfig::default()).unwrap(),
        r#"{"default":"allow"}"#
    );
    // The schema generates (the engine's config embeds it).
    let schema = serde_json::to_string(&schemars::schema_for!(RulesConfig)).unwrap();
    assert!(schema.contains("domain_suffixes"));
}

/// Every ```json block of docs/rules.md parses, and compiles (with the fixture standing in for
/// any GeoIP database it names).
#[test]
fn documentation_examples_compile() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rules.md"))
            .expect("docs/rules.md exists");
    let mut seen = 0;
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```json\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("closed code block");
        let json = &body[..end];
        let mut c: RulesConfig =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}:\n{json}"));
        if c.geoip_database.is_some() {
            c.geoip_database = Some(fixture());
        }
        RuleSet::compile(&c, DestinationPolicy::default())
            .unwrap_or_else(|e| panic!("{e}:\n{json}"));
        seen += 1;
        rest = &body[end + 3..];
    }
    assert!(seen >= 3, "found only {seen} examples");
}

#[test]
fn rule_sets_are_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuleSet>();
}

#[test]
fn reasons_display() {
    assert_eq!(Reason::Rule(3).to_string(), "rules[3]");
    assert_eq!(Reason::Default.to_string(), "default");
    assert_eq!(
        Reason::Blocked(SpecialRange::Cgnat).to_string(),
        "CGNAT destination"
    );
}

/// A rule or a time window written as an array of its fields is refused where it stands
/// (serde's derive would take `["deny"]` for a rule that denies); errors inside objects
/// still name their field.
#[test]
fn rules_and_windows_must_be_objects() {
    let err = |json: &str| {
        let de = &mut serde_json::Deserializer::from_str(json);
        let e = serde_path_to_error::deserialize::<_, RulesConfig>(de).unwrap_err();
        (e.path().to_string(), e.inner().to_string())
    };
    let (path, message) = err(r#"{"rules": [["deny"]]}"#);
    assert_eq!(path, "rules[0]");
    assert!(message.contains("expected an object"), "{message}");
    let (path, message) = err(r#"{"rules": [{"action": "deny", "schedule": [[["mon"]]]}]}"#);
    assert_eq!(path, "rules[0].schedule[0]");
    assert!(message.contains("expected an object"), "{message}");
    let (path, _) = err(r#"{"rules": [{"action": "deny", "ports": [true]}]}"#);
    assert_eq!(path, "rules[0].ports[0]");
    let (path, _) = err(r#"{"rules": [{"action": "deny", "schedule": [{"days": ["someday"]}]}]}"#);
    assert_eq!(path, "rules[0].schedule[0].days[0]");
    let (path, _) = err(r#"{"rules": [{"action": "deny", "userz": []}]}"#);
    assert_eq!(path, "rules[0].userz");
    let rules = config(
        r#"{"rules": [{"action": "deny", "schedule": [{"days": ["mon"], "times": ["09:00-17:00"]}]}]}"#,
    );
    assert_eq!(rules.rules[0].schedule[0].days, [Weekday::Mon]);
}
