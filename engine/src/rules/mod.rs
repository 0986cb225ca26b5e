//! Routing rules: which destinations a user may reach, decided once per connection and once
//! per UDP destination.
//!
//! A [`RulesConfig`] is an ordered list of allow/deny rules in the style of Xray's routing and
//! sing-box's route rules. [`RuleSet::compile`] checks it (an error names the field, like
//! `rules[2].ports[0]`) and turns every condition into a structure that answers in O(log n) or
//! O(labels): sorted range tables for CIDRs, countries and ports, hash sets for names, one
//! Aho-Corasick automaton per rule for keywords. [`RuleSet::decide`] is then pure: no I/O, no
//! clock (the caller passes the time), no allocation for any valid DNS name.
//!
//! # Semantics
//!
//! - Conditions are ANDed; the entries inside one condition are ORed. `domains`,
//!   `domain_suffixes` and `domain_keywords` form one condition (the destination name), and so
//!   do `destination_cidrs` and `countries` (the destination address). An empty or absent
//!   list is no condition; a rule without conditions matches everything.
//! - The first matching rule wins; when none matches, [`RulesConfig::default`] applies.
//! - Built-in rule: destinations in a [`SpecialRange`] (loopback, private, CGNAT, link-local,
//!   multicast, broadcast, unspecified) are denied unless the [`DestinationPolicy`] opens them
//!   (`allow_loopback`, `allow_private`) or an allow rule names them explicitly: through a
//!   `destination_cidrs` entry that lies inside the special range (`10.0.0.0/8`,
//!   `127.0.0.1`; not `0.0.0.0/0`). Any other allow rule (by user, domain, port, country, or
//!   a catch-all) is skipped for such a destination, and a deny rule denies it as usual. So a
//!   host name that resolves to 127.0.0.1 is refused exactly like the literal address.
//! - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are IPv4, both in queries and in CIDRs.
//!
//! # Two phases
//!
//! A destination given as a host name is decided twice. First with `ip: None`: the answer is
//! [`Decision::Deny`] when a domain (or user, port, ...) rule already denies it, so the name
//! is never resolved, and [`Decision::Resolve`] otherwise. Then with each resolved address
//! (and the same `domain`): the answer is [`Decision::Allow`] or [`Decision::Deny`]. A
//! destination given as an address is decided once, with `ip: Some(..)` and `domain: None`;
//! `Resolve` is only ever returned when `ip` is `None`.
//!
//! ```
//! use std::net::IpAddr;
//! use engine::outbound::DestinationPolicy;
//! use engine::rules::{Decision, Query, RuleSet, RulesConfig};
//!
//! let config: RulesConfig = serde_json::from_str(r#"{
//!     "rules": [{ "action": "deny", "domain_suffixes": ["ads.example"] }]
//! }"#).unwrap();
//! let rules = RuleSet::compile(&config, DestinationPolicy::default()).unwrap();
//! let mut q = Query::new("192.0.2.1".parse().unwrap(), 443, 1_700_000_000);
//! q.domain = Some("tracker.ads.example");
//! assert!(matches!(rules.decide(&q), Decision::Deny(_)));
//! q.domain = Some("www.example.com");
//! assert_eq!(rules.decide(&q), Decision::Resolve);
//! q.ip = Some("203.0.113.7".parse().unwrap()); // after resolving
//! assert!(rules.decide(&q).is_allow());
//! q.ip = Some("127.0.0.1".parse().unwrap()); // resolved to loopback
//! assert!(!rules.decide(&q).is_allow());
//! ```
//!
//! See `docs/rules.md` for the configuration reference and examples.

mod domain;
mod geoip;
mod ip_ranges;
mod schedule;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::config::Network;
pub use crate::outbound::DestinationPolicy;
pub use ip_ranges::SpecialRange;

use domain::{DomainMatcher, Name};
use geoip::CountryCode;
use ip_ranges::{canonical, Cidr, IpRanges, IpRangesBuilder};
use schedule::{LocalTime, Window};

/// The routing section of the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Rules, tried in order; the first that matches decides.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "objects"
    )]
    pub rules: Vec<RuleConfig>,
    /// What happens when no rule matches (default `allow`). Special ranges stay denied either
    /// way unless the outbound policy or an explicit rule opens them.
    #[serde(default)]
    pub default: Action,
    /// IANA time zone of every `schedule` (default `UTC`), like `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// MaxMind-format country database (`.mmdb`) for `countries`; read when the rules are
    /// compiled. Required when any rule lists countries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geoip_database: Option<PathBuf>,
}

/// What a rule does with the connections it matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let the connection through.
    #[default]
    Allow,
    /// Refuse the connection (or drop the UDP packet).
    Deny,
}

/// One rule: an action and the conditions under which it applies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `allow` or `deny`.
    pub action: Action,
    /// User names (exact, case-sensitive). A connection without a user never matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Inbound tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbounds: Vec<String>,
    /// `tcp` and/or `udp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<Network>,
    /// Client addresses: CIDRs or single addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_cidrs: Vec<String>,
    /// Destination names, exactly (case-insensitive, trailing dot ignored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// `example.com` matches it and every subdomain; `.example.com` only subdomains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domain_suffixes: Vec<String>,
    /// Substrings of the destination name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domain_keywords: Vec<String>,
    /// Destination addresses: CIDRs or single addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_cidrs: Vec<String>,
    /// ISO 3166-1 alpha-2 codes, looked up for the destination address in `geoip_database`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Destination ports: numbers, or strings like `"443"`, `"1000-2000"`, `"53,853"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// When the rule applies; any window will do.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "objects"
    )]
    pub schedule: Vec<TimeWindow>,
}

/// A list of `T`, each written as an object. A derived `Deserialize` also takes a struct as
/// an array of its fields in order (`[["deny"]]` for a rule that denies): accepted, a
/// mistaken shape would pass as a different rule instead of being named as an error.
fn objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items: Vec<ObjectOnly<T>> = Deserialize::deserialize(deserializer)?;
    Ok(items.into_iter().map(|o| o.0).collect())
}

/// `T`, deserialized only from a map.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = ObjectOnly<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                // The same map access, so an error inside still names its field.
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }
        deserializer.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// A port or a range of ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortSpec {
    /// One port.
    Number(i64),
    /// `"443"`, `"1000-2000"` (inclusive), or several separated by commas.
    Text(String),
}

/// A weekly time window in [`RulesConfig::timezone`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    /// Days on which the window starts (default: every day).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Weekday>,
    /// Wall-clock ranges `"HH:MM-HH:MM"`, end excluded (default: the whole day). A range
    /// whose end is not after its start runs past midnight: `"22:00-06:00"` on `fri` is
    /// Friday 22:00 to Saturday 06:00.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<String>,
}

/// A day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Weekday {
    #[serde(alias = "monday")]
    Mon,
    #[serde(alias = "tuesday")]
    Tue,
    #[serde(alias = "wednesday")]
    Wed,
    #[serde(alias = "thursday")]
    Thu,
    #[serde(alias = "friday")]
    Fri,
    #[serde(alias = "saturday")]
    Sat,
    #[serde(alias = "sunday")]
    Sun,
}

impl Weekday {
    /// 0 for Monday to 6 for Sunday.
    pub fn index(self) -> u8 {
        self as u8
    }
}

/// A configuration problem, with the path of the field at fault relative to the
/// [`RulesConfig`] (`rules[2].ports[0]`, `timezone`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RulesError {
    /// Path of the field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn error(field: impl Into<String>, message: impl Into<String>) -> RulesError {
    RulesError {
        field: field.into(),
        message: message.into(),
    }
}

/// One connection (or UDP destination) to decide on.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// The authenticated user, if any.
    pub user: Option<&'a str>,
    /// Tag of the inbound the client came through.
    pub inbound: Option<&'a str>,
    /// Transport to the destination.
    pub network: Network,
    /// The client's address.
    pub source: IpAddr,
    /// The destination name, when the client sent one.
    pub domain: Option<&'a str>,
    /// The destination address: the literal the client sent, or one that `domain` resolved
    /// to; `None` before resolution.
    pub ip: Option<IpAddr>,
    /// Destination port.
    pub port: u16,
    /// The time, in seconds since the Unix epoch.
    pub now_unix: u64,
}

impl<'a> Query<'a> {
    /// A TCP query from `source` to `port` with nothing else known; set the other fields.
    pub fn new(source: IpAddr, port: u16, now_unix: u64) -> Query<'a> {
        Query {
            user: None,
            inbound: None,
            network: Network::Tcp,
            source,
            domain: None,
            ip: None,
            port,
            now_unix,
        }
    }
}

/// The outcome of [`RuleSet::decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Connect (or send).
    Allow(Reason),
    /// Refuse.
    Deny(Reason),
    /// Only with `ip: None`: resolve the name and decide again for each address.
    Resolve,
}

impl Decision {
    /// Whether the destination may be connected to now.
    pub fn is_allow(self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// Why a decision was taken, for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The rule at this index of [`RulesConfig::rules`] matched.
    Rule(usize),
    /// The destination is in a special range that neither the policy nor an explicit rule
    /// opens.
    Blocked(SpecialRange),
    /// No rule matched: [`RulesConfig::default`].
    Default,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Rule(i) => write!(f, "rules[{i}]"),
            Reason::Blocked(range) => write!(f, "{range} destination"),
            Reason::Default => f.write_str("default"),
        }
    }
}

/// Compiled rules, ready to [`decide`](RuleSet::decide). `Send + Sync`: share one per engine.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    default: Action,
    policy: DestinationPolicy,
    timezone: jiff::tz::TimeZone,
}

#[derive(Debug, Default)]
struct Rule {
    action: Action,
    users: HashSet<Box<str>>,
    inbounds: HashSet<Box<str>>,
    /// Bit 0: TCP, bit 1: UDP; 0 when the rule has no network condition.
    networks: u8,
    ports: Vec<(u16, u16)>,
    sources: Option<IpRanges>,
    domains: DomainMatcher,
    /// Destination CIDRs and countries together.
    destinations: Option<IpRanges>,
    /// The `destination_cidrs` entries that lie inside a special range: an allow rule opens a
    /// special destination only through these.
    explicit_special: IpRanges,
    schedule: Vec<Window>,
}

/// What one rule says about a query.
enum Match {
    No,
    /// Matches; `explicit` tells whether it names the destination through a special CIDR.
    Yes {
        explicit: bool,
    },
    /// Every condition but the destination address matches, and there is no address yet.
    NeedsIp,
}

fn network_bit(n: Network) -> u8 {
    match n {
        Network::Tcp => 1,
        Network::Udp => 2,
    }
}

impl RuleSet {
    /// Checks `config` and compiles it. Reads `geoip_database` if some rule lists countries;
    /// nothing else touches the file system.
    pub fn compile(config: &RulesConfig, policy: DestinationPolicy) -> Result<RuleSet, RulesError> {
        let timezone = schedule::time_zone(config.timezone.as_deref().unwrap_or("UTC"))
            .map_err(|m| error("timezone", m))?;
        let countries = load_countries(config)?;
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| compile_rule(r, &format!("rules[{i}]"), &countries))
            .collect::<Result<_, _>>()?;
        Ok(RuleSet {
            rules,
            default: config.default,
            policy,
            timezone,
        })
    }

    /// The built-in rule alone: special ranges per `policy`, everything else allowed.
    pub fn builtin(policy: DestinationPolicy) -> RuleSet {
        RuleSet {
            rules: Vec::new(),
            default: Action::Allow,
            policy,
            timezone: jiff::tz::TimeZone::UTC,
        }
    }

    /// Decides on one query. See the module documentation for the two-phase use.
    pub fn decide(&self, q: &Query<'_>) -> Decision {
        let ip = q.ip.map(canonical);
        let blocked = ip.and_then(|ip| self.blocked(ip));
        let ctx = Context {
            q,
            ip,
            source: canonical(q.source),
            name: q.domain.map(Name::new),
            local: std::cell::OnceCell::new(),
            timezone: &self.timezone,
        };
        for (i, rule) in self.rules.iter().enumerate() {
            match (rule.matches(&ctx), rule.action) {
                (Match::No, _) => {}
                (Match::NeedsIp, _) => return Decision::Resolve,
                (Match::Yes { .. }, Action::Deny) => return Decision::Deny(Reason::Rule(i)),
                (Match::Yes { explicit }, Action::Allow) => match (ip, blocked) {
                    (None, _) => return Decision::Resolve,
                    (Some(_), None) => return Decision::Allow(Reason::Rule(i)),
                    (Some(_), Some(_)) if explicit => return Decision::Allow(Reason::Rule(i)),
                    // An allow rule that does not name the special range does not open it.
                    (Some(_), Some(_)) => {}
                },
            }
        }
        match (self.default, ip, blocked) {
            (Action::Deny, _, _) => Decision::Deny(Reason::Default),
            (Action::Allow, None, _) => Decision::Resolve,
            (Action::Allow, Some(_), Some(range)) => Decision::Deny(Reason::Blocked(range)),
            (Action::Allow, Some(_), None) => Decision::Allow(Reason::Default),
        }
    }

    /// The special range of `ip` if the policy keeps it closed.
    fn blocked(&self, ip: IpAddr) -> Option<SpecialRange> {
        let range = ip_ranges::special_range(ip)?;
        let open = match range {
            SpecialRange::Loopback => self.policy.allow_loopback,
            _ => self.policy.allow_private,
        };
        (!open).then_some(range)
    }

    /// Number of rules (not counting the built-in one).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no configured rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// A query with its derived values, each computed at most once per decision.
struct Context<'q> {
    q: &'q Query<'q>,
    ip: Option<IpAddr>,
    source: IpAddr,
    name: Option<Name<'q>>,
    local: std::cell::OnceCell<Option<LocalTime>>,
    timezone: &'q jiff::tz::TimeZone,
}

impl Rule {
    fn matches(&self, c: &Context<'_>) -> Match {
        let q = c.q;
        let ok = (self.networks == 0 || self.networks & network_bit(q.network) != 0)
            && (self.inbounds.is_empty() || q.inbound.is_some_and(|t| self.inbounds.contains(t)))
            && (self.users.is_empty() || q.user.is_some_and(|u| self.users.contains(u)))
            && (self.ports.is_empty() || ip_ranges::in_ranges(&self.ports, q.port))
            && self.sources.as_ref().is_none_or(|s| s.contains(c.source))
            && (self.domains.is_empty()
                || c.name
                    .as_ref()
                    .is_some_and(|n| self.domains.matches(n.as_str())))
            && (self.schedule.is_empty() || {
                let local = *c
                    .local
                    .get_or_init(|| schedule::local_time(c.timezone, q.now_unix));
                local.is_some_and(|t| self.schedule.iter().any(|w| w.contains(t)))
            });
        if !ok {
            return Match::No;
        }
        let Some(destinations) = &self.destinations else {
            return Match::Yes { explicit: false };
        };
        match c.ip {
            None => Match::NeedsIp,
            Some(ip) if destinations.contains(ip) => Match::Yes {
                explicit: self.explicit_special.contains(ip),
            },
            Some(_) => Match::No,
        }
    }
}

/// Loads the networks of every country some rule names.
fn load_countries(config: &RulesConfig) -> Result<HashMap<CountryCode, IpRanges>, RulesError> {
    let mut wanted = HashSet::new();
    let mut first_user = None;
    for (i, rule) in config.rules.iter().enumerate() {
        for (j, c) in rule.countries.iter().enumerate() {
            let code = geoip::parse_country(c)
                .map_err(|m| error(format!("rules[{i}].countries[{j}]"), m))?;
            wanted.insert(code);
            first_user.get_or_insert(i);
        }
    }
    let Some(i) = first_user else {
        return Ok(HashMap::new());
    };
    let Some(path) = &config.geoip_database else {
        return Err(error(
            format!("rules[{i}].countries"),
            "country conditions need `geoip_database` (a MaxMind-format .mmdb file)",
        ));
    };
    let tables = geoip::load(path, &wanted).map_err(|m| error("geoip_database", m))?;
    for (code, ranges) in &tables {
        if ranges.is_empty() {
            tracing::warn!(
                country = %String::from_utf8_lossy(code),
                database = %path.display(),
                "no network of this country in the GeoIP database"
            );
        }
    }
    Ok(tables)
}

fn compile_rule(
    r: &RuleConfig,
    at: &str,
    countries: &HashMap<CountryCode, IpRanges>,
) -> Result<Rule, RulesError> {
    let mut rule = Rule {
        action: r.action,
        ..Rule::default()
    };
    rule.users = names(&r.users, &format!("{at}.users"), "user name")?;
    rule.inbounds = names(&r.inbounds, &format!("{at}.inbounds"), "inbound tag")?;
    rule.networks = r.network.iter().fold(0, |m, &n| m | network_bit(n));

    for (j, spec) in r.ports.iter().enumerate() {
        parse_ports(spec, &mut rule.ports).map_err(|m| error(format!("{at}.ports[{j}]"), m))?;
    }
    rule.ports = ip_ranges::merge(std::mem::take(&mut rule.ports), |p| p.checked_add(1));

    if !r.source_cidrs.is_empty() {
        let mut b = IpRangesBuilder::default();
        for (j, text) in r.source_cidrs.iter().enumerate() {
            b.add(Cidr::parse(text).map_err(|m| error(format!("{at}.source_cidrs[{j}]"), m))?);
        }
        rule.sources = Some(b.build());
    }

    for (j, d) in r.domains.iter().enumerate() {
        let name =
            domain::normalise(d, "domain").map_err(|m| error(format!("{at}.domains[{j}]"), m))?;
        if name.starts_with('.') {
            return Err(error(
                format!("{at}.domains[{j}]"),
                format!("{d:?} starts with a dot: put it in `domain_suffixes`"),
            ));
        }
        rule.domains.add_exact(name);
    }
    for (j, d) in r.domain_suffixes.iter().enumerate() {
        let suffix = domain::normalise(d, "domain suffix")
            .map_err(|m| error(format!("{at}.domain_suffixes[{j}]"), m))?;
        rule.domains.add_suffix(suffix);
    }
    let keywords = r
        .domain_keywords
        .iter()
        .enumerate()
        .map(|(j, k)| {
            domain::normalise(k, "keyword")
                .map_err(|m| error(format!("{at}.domain_keywords[{j}]"), m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    rule.domains
        .set_keywords(&keywords)
        .map_err(|m| error(format!("{at}.domain_keywords"), m))?;

    if !r.destination_cidrs.is_empty() || !r.countries.is_empty() {
        let mut all = IpRangesBuilder::default();
        let mut explicit = IpRangesBuilder::default();
        for (j, text) in r.destination_cidrs.iter().enumerate() {
            let cidr =
                Cidr::parse(text).map_err(|m| error(format!("{at}.destination_cidrs[{j}]"), m))?;
            all.add(cidr);
            if ip_ranges::is_inside_special(cidr) {
                explicit.add(cidr);
            }
        }
        for c in &r.countries {
            // Codes were checked and every named country loaded by `load_countries`.
            if let Some(ranges) = geoip::parse_country(c).ok().and_then(|c| countries.get(&c)) {
                all.extend(ranges);
            }
        }
        rule.destinations = Some(all.build());
        rule.explicit_special = explicit.build();
    }

    for (j, w) in r.schedule.iter().enumerate() {
        if w.times.is_empty() {
            rule.schedule.push(Window::new(&w.days, None));
        }
        for (k, t) in w.times.iter().enumerate() {
            let range = schedule::parse_range(t)
                .map_err(|m| error(format!("{at}.schedule[{j}].times[{k}]"), m))?;
            rule.schedule.push(Window::new(&w.days, Some(range)));
        }
    }
    Ok(rule)
}

fn names(list: &[String], at: &str, what: &str) -> Result<HashSet<Box<str>>, RulesError> {
    list.iter()
        .enumerate()
        .map(|(j, n)| {
            if n.is_empty() {
                Err(error(format!("{at}[{j}]"), format!("empty {what}")))
            } else {
                Ok(n.as_str().into())
            }
        })
        .collect()
}

fn parse_ports(spec: &PortSpec, out: &mut Vec<(u16, u16)>) -> Result<(), String> {
    let port = |text: &str| -> Result<u16, String> {
        text.trim()
            .parse::<u16>()
            .map_err(|_| format!("{text:?} is not a port (0-65535)"))
    };
    match spec {
        PortSpec::Number(n) => {
            let p = u16::try_from(*n).map_err(|_| format!("{n} is not a port (0-65535)"))?;
            out.push((p, p));
        }
        PortSpec::Text(text) => {
            if text.trim().is_empty() {
                return Err("empty port".into());
            }
            for part in text.split(',') {
                let (start, end) = match part.split_once('-') {
                    Some((a, b)) => (port(a)?, port(b)?),
                    None => {
                        let p = port(part)?;
                        (p, p)
                    }
                };
                if start > end {
                    return Err(format!("{part:?}: the range ends before it starts"));
                }
                out.push((start, end));
            }
        }
    }
    Ok(())
}
