//! `{NAME}` placeholders in host remarks and addresses, filled per user as Marzneshin fills
//! them: `{USERNAME}`, `{DATA_USAGE}`, `{DATA_LIMIT}`, `{DATA_LEFT}`, `{DAYS_LEFT}`,
//! `{EXPIRE_DATE}`, `{TIME_LEFT}`, `{STATUS_EMOJI}`, `{PROTOCOL}`, `{TRANSPORT}`. A name that
//! is not one of these is left as it is.

use engine::config::ProtocolConfig;

use super::SubscriptionUser;
use crate::model::UserStatus;

/// The values of the placeholders for one user.
#[derive(Clone, Debug)]
pub struct Variables {
    values: Vec<(&'static str, String)>,
}

impl Variables {
    /// The values for `user` at `now`.
    pub fn new(user: &SubscriptionUser, now: i64) -> Variables {
        let infinite = || "∞".to_owned();
        let (data_limit, data_left) = match user.data_limit {
            Some(limit) => (
                readable_size(limit),
                readable_size((limit - user.used_traffic).max(0)),
            ),
            None => (infinite(), infinite()),
        };
        let (days_left, expire_date, time_left) = match (user.expire_at, user.on_hold_duration) {
            (Some(at), _) => (
                ((at - now).div_euclid(86_400) + 1).max(0).to_string(),
                date(at),
                time_left(at - now),
            ),
            (None, Some(duration)) => (
                (duration / 86_400).to_string(),
                "-".to_owned(),
                time_left(duration),
            ),
            (None, None) => (infinite(), infinite(), infinite()),
        };
        let emoji = match user.status {
            UserStatus::Active | UserStatus::OnHold => "✅",
            _ => "❌",
        };
        Variables {
            values: vec![
                ("USERNAME", user.username.clone()),
                ("DATA_USAGE", readable_size(user.used_traffic)),
                ("DATA_LIMIT", data_limit),
                ("DATA_LEFT", data_left),
                ("DAYS_LEFT", days_left),
                ("EXPIRE_DATE", expire_date),
                ("TIME_LEFT", time_left),
                ("STATUS_EMOJI", emoji.to_owned()),
            ],
        }
    }

    /// These values plus the protocol's (`PROTOCOL`, `TRANSPORT`).
    pub fn for_protocol(&self, protocol: &ProtocolConfig, transport: &str) -> Variables {
        let name = protocol.name();
        let mut values = self.values.clone();
        values.push(("PROTOCOL", name.to_owned()));
        values.push(("TRANSPORT", transport.to_owned()));
        Variables { values }
    }

    /// `template` with every known `{NAME}` replaced.
    pub fn fill(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let value = after.find('}').and_then(|close| {
                let name = &after[..close];
                self.values
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (v, close))
            });
            match value {
                Some((v, close)) => {
                    out.push_str(v);
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Bytes in binary units with up to two decimals: `0 B`, `512 B`, `1.5 GB`.
pub fn readable_size(bytes: i64) -> String {
    const UNITS: [&str; 7] = ["B", "KB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {}", UNITS[unit])
}

/// A Unix time as `YYYY-MM-DD` (UTC).
pub fn date(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| "-".to_owned())
}

/// Time left in coarse units: `2m 3d` (months of 30 days), `5d 4h`, `3h 20m`; `∞` when none
/// is left (as Marzneshin shows it).
pub fn time_left(seconds: i64) -> String {
    if seconds <= 0 {
        return "∞".to_owned();
    }
    let (minutes, secs) = (seconds / 60, seconds % 60);
    let (hours, minutes) = (minutes / 60, minutes % 60);
    let (days, hours) = (hours / 24, hours % 24);
    let (months, days) = (days / 30, days % 30);
    let mut parts = Vec::new();
    if months > 0 {
        parts.push(format!("{months}m"));
    }
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if hours > 0 && days < 7 {
        parts.push(format!("{hours}h"));
    }
    if months == 0 && days == 0 {
        if minutes > 0 {
            parts.push(format!("{minutes}m"));
        }
        if secs > 0 {
            parts.push(format!("{secs}s"));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::tests::user;

    #[test]
    fn known_names_are_filled_and_others_kept() {
        let now = 1_900_000_000 - 3 * 86_400 - 3600;
        let v = Variables::new(&user(), now);
        assert_eq!(
            v.fill("{USERNAME} {DATA_USAGE}/{DATA_LIMIT} left {DATA_LEFT}"),
            "alice 1.5 GB/10 GB left 8.5 GB"
        );
        assert_eq!(
            v.fill("{DAYS_LEFT}d {EXPIRE_DATE} {TIME_LEFT} {STATUS_EMOJI}"),
            "4d 2030-03-17 3d 1h ✅"
        );
        assert_eq!(
            v.fill("{SERVER_IP} {x} {{USERNAME}} {"),
            "{SERVER_IP} {x} {alice} {"
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(readable_size(0), "0 B");
        assert_eq!(readable_size(512), "512 B");
        assert_eq!(readable_size(1536), "1.5 KB");
        assert_eq!(readable_size(-5), "0 B");
        assert_eq!(time_left(0), "∞");
        assert_eq!(time_left(90), "1m 30s");
        assert_eq!(time_left(40 * 86_400), "1m 10d");
        assert_eq!(time_left(2 * 86_400 + 7200), "2d 2h");
    }
}
