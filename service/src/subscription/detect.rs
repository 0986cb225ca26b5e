//! Which format a client wants, from its `User-Agent` (and `Accept`), following Marzneshin's
//! default subscription rules:
//!
//! | User-Agent starts with                                | format     |
//! |-------------------------------------------------------|------------|
//! | `clash` (Clash Verge, ClashMeta, ClashX, ...), `mihomo`, `stash`, `flclash` | clash-meta |
//! | `SFA`, `SFI`, `SFM`, `SFT`, `sing-box`, `hiddify`, `karing` | sing-box |
//! | `v2rayN/` 6.41 or newer, `v2rayNG/` 1.8.17 or newer, `streisand` | xray |
//! | `v2rayN/`, `v2rayNG/` (older)                          | base64     |
//! | anything else, with `Accept: text/html` or `Mozilla/`  | HTML page  |
//! | anything else                                         | base64     |
//!
//! Matching ignores case. Marzneshin sends plain-Clash YAML to `clash`/`stash`; we have one
//! Clash flavour, Clash Meta, whose Shadowsocks proxies plain Clash reads as well (except the
//! 2022 methods, which plain Clash never supported).

use super::Format;

/// The format for a client.
pub fn detect(user_agent: &str, accept: &str) -> Format {
    let ua = user_agent.trim().to_ascii_lowercase();
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| ua.starts_with(p));
    // The first word, up to `/` or a space: `SFA/1.9 (...)` -> `sfa`.
    let product = ua.split(['/', ' ']).next().unwrap_or("");
    if starts(&["clash", "mihomo", "stash", "flclash"]) {
        return Format::ClashMeta;
    }
    if matches!(product, "sfa" | "sfi" | "sfm" | "sft")
        || starts(&["sing-box", "hiddify", "karing"])
    {
        return Format::SingBox;
    }
    match product {
        "v2rayn" => return xray_from(&ua, [6, 41]),
        "v2rayng" => return xray_from(&ua, [1, 8, 17]),
        _ => {}
    }
    if starts(&["streisand"]) {
        return Format::Xray;
    }
    if accept.to_ascii_lowercase().contains("text/html") || ua.starts_with("mozilla/") {
        return Format::Page;
    }
    Format::Base64
}

/// Xray JSON from version `min` of a `name/version` user agent on, base64 links before.
fn xray_from<const N: usize>(ua: &str, min: [u64; N]) -> Format {
    let version = ua
        .split_once('/')
        .map(|(_, rest)| rest.split([' ', '(', ';']).next().unwrap_or(""))
        .unwrap_or("");
    let parts: Vec<u64> = version
        .trim_start_matches('v')
        .split('.')
        .map_while(|p| p.parse().ok())
        .collect();
    if !parts.is_empty() && parts.as_slice() >= min.as_slice() {
        Format::Xray
    } else {
        Format::Base64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_get_their_format() {
        let table: &[(&str, &str, Format)] = &[
            ("clash-verge/v1.3.8", "", Format::ClashMeta),
            ("Clash Verge/2.0.3", "", Format::ClashMeta),
            ("ClashMetaForAndroid/2.8.9.Meta", "", Format::ClashMeta),
            ("ClashMeta", "", Format::ClashMeta),
            ("clash.meta", "", Format::ClashMeta),
            ("ClashX/1.95.1", "", Format::ClashMeta),
            ("mihomo/1.18.3", "", Format::ClashMeta),
            ("Stash/2.4.7 Clash/1.9.0", "", Format::ClashMeta),
            ("FlClash/v0.8.62", "", Format::ClashMeta),
            (
                "SFA/1.9.0 (Android 14; sing-box 1.9.0)",
                "",
                Format::SingBox,
            ),
            (
                "SFI/1.10.1 (iOS 17.5; sing-box 1.10.1)",
                "",
                Format::SingBox,
            ),
            ("SFM/1.11.0", "", Format::SingBox),
            ("SFT/1.11.0", "", Format::SingBox),
            ("sing-box 1.12.0", "", Format::SingBox),
            ("HiddifyNext/2.5.7 (android)", "", Format::SingBox),
            ("Hiddify/2.0.5", "", Format::SingBox),
            ("karing/1.0.30", "", Format::SingBox),
            ("Karing", "", Format::SingBox),
            ("v2rayN/7.2.3", "", Format::Xray),
            ("v2rayN/6.41", "", Format::Xray),
            ("v2rayN/6.60", "", Format::Xray),
            ("v2rayN/6.40", "", Format::Base64),
            ("v2rayN/6.5", "", Format::Base64),
            ("v2rayN/5.39", "", Format::Base64),
            ("v2rayN", "", Format::Base64),
            ("v2rayNG/1.8.17", "", Format::Xray),
            ("v2rayNG/1.9.16", "", Format::Xray),
            ("v2rayNG/2.0.1", "", Format::Xray),
            ("v2rayNG/1.8.16", "", Format::Base64),
            ("v2rayNG/1.7.38", "", Format::Base64),
            ("Streisand/1.6.31", "", Format::Xray),
            ("streisand", "", Format::Xray),
            (
                "Shadowrocket/2070 CFNetwork/1494.0.7 Darwin/23.4.0",
                "",
                Format::Base64,
            ),
            ("curl/8.5.0", "*/*", Format::Base64),
            ("", "", Format::Base64),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "",
                Format::Page,
            ),
            ("Wget/1.21", "text/html,application/xhtml+xml", Format::Page),
            ("SFA/1.9.0", "text/html", Format::SingBox),
            ("sfafoo/1.0", "", Format::Base64),
        ];
        for (ua, accept, want) in table {
            assert_eq!(
                detect(ua, accept),
                *want,
                "User-Agent {ua:?}, Accept {accept:?}"
            );
        }
    }
}
