//! The panel's subscription options (docs/subscriptions.md): what every subscription says
//! about itself besides its proxies. Plain data and its checks; `api::settings` stores it
//! (JSON under one key of the `settings` table) and serves `/api/settings/subscription`.
//!
//! | option | header | default |
//! |---|---|---|
//! | `profile_title` (placeholders as in host remarks) | `profile-title` | the user's name |
//! | `update_interval` (hours) | `profile-update-interval` | 12 |
//! | `support_url` | `support-url`, and a link on the page | none |

use serde::{Deserialize, Serialize};

use super::placeholders::Variables;
use super::SubscriptionUser;

/// Hours between fetches when none is set.
pub const DEFAULT_UPDATE_INTERVAL: u32 = 12;
/// The allowed update intervals, in hours (one hour to one week).
pub const UPDATE_INTERVALS: std::ops::RangeInclusive<u32> = 1..=168;
/// The longest title, in characters.
pub const MAX_TITLE: usize = 128;
/// The longest support URL, in bytes.
pub const MAX_URL: usize = 2048;

/// The options as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionOptions {
    /// Title template (none: the user's name).
    #[serde(default)]
    pub profile_title: Option<String>,
    /// Hours between fetches.
    #[serde(default = "default_interval")]
    pub update_interval: u32,
    /// Where users get help (none: not sent).
    #[serde(default)]
    pub support_url: Option<String>,
}

fn default_interval() -> u32 {
    DEFAULT_UPDATE_INTERVAL
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        SubscriptionOptions {
            profile_title: None,
            update_interval: DEFAULT_UPDATE_INTERVAL,
            support_url: None,
        }
    }
}

/// What is wrong with an option: the field and a message.
pub type Invalid = (&'static str, &'static str);

/// Checks a title template: 1 to [`MAX_TITLE`] characters after trimming, no control
/// characters. Returns it trimmed.
pub fn check_title(title: &str) -> Result<String, Invalid> {
    let title = title.trim();
    let count = title.chars().count();
    if count == 0 || count > MAX_TITLE || title.chars().any(char::is_control) {
        return Err((
            "profile_title",
            "must be 1 to 128 characters without control characters",
        ));
    }
    Ok(title.to_owned())
}

/// Checks an update interval in hours.
pub fn check_interval(hours: i64) -> Result<u32, Invalid> {
    u32::try_from(hours)
        .ok()
        .filter(|h| UPDATE_INTERVALS.contains(h))
        .ok_or(("update_interval", "must be 1 to 168 hours"))
}

/// Checks a support URL: `http://` or `https://`, at most [`MAX_URL`] bytes, printable ASCII
/// only (it is sent as a header value as it is).
pub fn check_support_url(url: &str) -> Result<String, Invalid> {
    let after_scheme = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let ok = after_scheme.is_some_and(|rest| !rest.is_empty())
        && url.bytes().all(|b| b.is_ascii_graphic());
    if !ok || url.len() > MAX_URL {
        return Err((
            "support_url",
            "must be an http:// or https:// URL of at most 2048 printable ASCII characters",
        ));
    }
    Ok(url.to_owned())
}

impl SubscriptionOptions {
    /// The title `user` is shown: the template with its placeholders filled, or their name.
    pub fn title_for(&self, user: &SubscriptionUser, now: i64) -> String {
        match &self.profile_title {
            Some(template) => Variables::new(user, now).fill(template),
            None => user.username.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::tests::user;

    #[test]
    fn title_defaults_to_the_name_and_fills_placeholders() {
        let u = user();
        assert_eq!(SubscriptionOptions::default().title_for(&u, 0), "alice");
        let o = SubscriptionOptions {
            profile_title: Some("Fast VPN · {USERNAME} · {DATA_LEFT} · {NOPE}".into()),
            ..SubscriptionOptions::default()
        };
        assert_eq!(o.title_for(&u, 0), "Fast VPN · alice · 8.5 GB · {NOPE}");
    }

    #[test]
    fn checks() {
        assert_eq!(check_title("  Fast VPN ").unwrap(), "Fast VPN");
        assert!(check_title("   ").is_err());
        assert!(check_title(&"x".repeat(129)).is_err());
        assert!(check_title(&"ö".repeat(128)).is_ok());
        assert!(check_title("a\nb").is_err());
        assert_eq!(check_interval(1), Ok(1));
        assert_eq!(check_interval(168), Ok(168));
        for bad in [0, 169, -1, i64::MAX] {
            assert!(check_interval(bad).is_err(), "{bad}");
        }
        assert!(check_support_url("https://t.me/support").is_ok());
        assert!(check_support_url("http://x").is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "http://",
            "https://a b",
            "https://ü.example",
            "javascript:alert(1)",
        ] {
            assert!(check_support_url(bad).is_err(), "{bad}");
        }
        assert!(check_support_url(&format!("https://{}", "a".repeat(2040))).is_ok());
        assert!(check_support_url(&format!("https://{}", "a".repeat(2041))).is_err());
    }

    #[test]
    fn stored_json_without_fields_reads_as_defaults() {
        let o: SubscriptionOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(o, SubscriptionOptions::default());
    }
}
