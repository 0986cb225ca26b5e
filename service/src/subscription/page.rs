//! The page a browser gets: the user's status, usage, expiry and links, each with a QR code.
//! Self-contained (inline style and SVG, no script, nothing fetched from elsewhere), so it
//! works where other sites are blocked.

use qrcode::render::svg;
use qrcode::QrCode;

use super::placeholders::{date, readable_size, time_left};
use super::{links, Proxy, SubscriptionUser};
use crate::model::{ResetStrategy, UserStatus};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An inline SVG QR code of `text` (empty if it is too long for a QR code).
fn qr_svg(text: &str) -> String {
    let Ok(code) = QrCode::new(text.as_bytes()) else {
        return String::new();
    };
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(180, 180)
        .quiet_zone(true)
        .build();
    // Inline SVG in HTML takes no XML declaration.
    match image.find("<svg") {
        Some(at) => image[at..].to_owned(),
        None => image,
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.5rem}table{border-collapse:collapse}td{padding:.25rem 1rem .25rem 0}\
.status{padding:.15rem .5rem;border-radius:.25rem;color:#fff;font-weight:bold}\
.ok{background:#2e7d32}.no{background:#757575}\
.link{border:1px solid #ddd;border-radius:.5rem;padding:.75rem;margin:.75rem 0}\
.link input{width:100%;font-family:monospace;box-sizing:border-box}\
details svg{margin-top:.5rem}";

/// The page for `user` with their `proxies`, and a link to `support` when the panel has one.
pub fn render(
    user: &SubscriptionUser,
    proxies: &[Proxy],
    support: Option<&str>,
    now: i64,
) -> String {
    let (status, class) = match user.status {
        UserStatus::Active => ("active", "ok"),
        UserStatus::OnHold => ("on hold (starts on first use)", "ok"),
        UserStatus::Disabled => ("disabled", "no"),
        UserStatus::Limited => ("data limit reached", "no"),
        UserStatus::Expired => ("expired", "no"),
    };
    let period = match user.reset_strategy {
        ResetStrategy::NoReset => "",
        ResetStrategy::Day => " (resets daily)",
        ResetStrategy::Week => " (resets weekly)",
        ResetStrategy::Month => " (resets monthly)",
        ResetStrategy::Year => " (resets yearly)",
    };
    let limit = match user.data_limit {
        Some(l) => format!(
            "{} ({} left)",
            readable_size(l),
            readable_size((l - user.used_traffic).max(0))
        ),
        None => "unlimited".to_owned(),
    };
    let expiry = match (user.expire_at, user.on_hold_duration) {
        (Some(at), _) if at > now => format!("{} UTC ({} left)", date(at), time_left(at - now)),
        (Some(at), _) => format!("{} UTC (passed)", date(at)),
        (None, Some(d)) => format!("{} after first use", time_left(d)),
        (None, None) => "never".to_owned(),
    };
    let support = support
        .map(|url| {
            let url = escape(url);
            format!("<tr><td>Support</td><td><a href=\"{url}\" rel=\"noopener noreferrer\">{url}</a></td></tr>\n")
        })
        .unwrap_or_default();
    let mut body = String::new();
    if proxies.is_empty() {
        body.push_str("<p>No configurations are available.</p>\n");
    }
    for p in proxies {
        let link = links::link(p);
        body.push_str(&format!(
            "<div class=\"link\"><strong>{remark}</strong>\n<input readonly value=\"{link}\">\n\
             <details><summary>QR code</summary>{qr}</details></div>\n",
            remark = escape(&p.remark),
            link = escape(&link),
            qr = qr_svg(&link),
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{name}: subscription</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>{name} <span class=\"status {class}\">{status}</span></h1>\n<table>\n\
         <tr><td>Used</td><td>{used}{period}</td></tr>\n\
         <tr><td>Data limit</td><td>{limit}</td></tr>\n\
         <tr><td>Expires</td><td>{expiry}</td></tr>\n{support}</table>\n\
         <h2>Configurations</h2>\n<p>Add this page's address to your client as a subscription, \
         or copy a link below.</p>\n{body}</body>\n</html>\n",
        name = escape(&user.username),
        used = readable_size(user.used_traffic),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::proxies;
    use crate::subscription::tests::{entries, user};

    #[test]
    fn page_shows_status_usage_expiry_and_escaped_links() {
        let mut e = entries();
        e[1].hosts[0].remark = "<b>&{USERNAME}".into();
        let u = user();
        let p = proxies(&u, &e, 0);
        let html = render(&u, &p, None, 1_899_000_000);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("alice <span class=\"status ok\">active</span>"));
        assert!(html.contains("1.5 GB (resets monthly)"));
        assert!(html.contains("10 GB (8.5 GB left)"));
        assert!(html.contains("2030-03-17 UTC (11d left)"));
        assert!(html.contains("&lt;b&gt;&amp;alice"));
        assert!(!html.contains("<b>&"));
        for p in &p {
            assert!(html.contains(&escape(&links::link(p))));
        }
        assert_eq!(html.matches("<svg").count(), 3);
        for external in ["src=", "href=", "<link", "<script", "url(", "@import"] {
            assert!(!html.contains(external), "{external}");
        }
    }

    #[test]
    fn inactive_page_has_no_links() {
        let u = SubscriptionUser {
            status: UserStatus::Expired,
            ..user()
        };
        let html = render(&u, &proxies(&u, &entries(), 0), None, 1_950_000_000);
        assert!(html.contains("status no\">expired"));
        assert!(html.contains("No configurations"));
        assert!(html.contains("(passed)"));
        assert!(!html.contains("ss://"));
        assert!(!html.contains("Support"));
    }

    #[test]
    fn support_url_is_an_escaped_link() {
        let u = user();
        let html = render(
            &u,
            &proxies(&u, &entries(), 0),
            Some("https://t.me/help?a=1&b=\"x\""),
            1_899_000_000,
        );
        let url = "https://t.me/help?a=1&amp;b=&quot;x&quot;";
        assert!(
            html.contains(&format!(
                "<tr><td>Support</td><td><a href=\"{url}\" rel=\"noopener noreferrer\">{url}</a></td></tr>"
            )),
            "{html}"
        );
    }
}
