//! The panel's access log: one INFO line per request with its method, path, status and
//! duration, and a span around the request for whatever its handler logs.
//!
//! poem's own `Tracing` middleware logs the whole URI, and a subscription's URI is a
//! credential: `/sub/{username}/{key}` (also under `/api`) carries the user's key, from which
//! every proxy password of theirs is derived. So the key segment is logged as `<key>`, and
//! query strings, which may carry tokens, are left out.

use std::borrow::Cow;
use std::time::Instant;

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};
use tracing::Instrument;

/// Logs every request (see the module documentation).
pub struct AccessLog;

impl<E: Endpoint> Middleware<E> for AccessLog {
    type Output = AccessLogEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        AccessLogEndpoint { inner }
    }
}

/// An endpoint wrapped by [`AccessLog`].
pub struct AccessLogEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for AccessLogEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let method = req.method().clone();
        let path = redacted_path(req.original_uri().path()).into_owned();
        let span = tracing::info_span!("request", %method, %path);
        let started = Instant::now();
        let result = self
            .inner
            .call(req)
            .instrument(span)
            .await
            .map(IntoResponse::into_response);
        let duration = started.elapsed();
        // An error's message is not logged: it may quote the request.
        let status = match &result {
            Ok(response) => response.status(),
            Err(e) => e.status(),
        };
        tracing::info!(%method, %path, status = status.as_u16(), ?duration, "request");
        result
    }
}

/// What a subscription's key segment is logged as.
const KEY: &str = "<key>";

/// `path` (without its query string) as the access log shows it: the key segment of a
/// subscription path (`/sub/{username}/{key}[/{format}]`, or the same under `/api`) replaced
/// by `<key>`. Empty segments and letter case are ignored in recognising one, so that no
/// spelling a router might accept slips through.
pub fn redacted_path(path: &str) -> Cow<'_, str> {
    let mut words = path
        .split('/')
        .enumerate()
        .filter(|(_, segment)| !segment.is_empty());
    let is = |segment: Option<(usize, &str)>, word: &str| {
        segment.is_some_and(|(_, s)| s.eq_ignore_ascii_case(word))
    };
    let mut first = words.next();
    if is(first, "api") {
        first = words.next();
    }
    if !is(first, "sub") {
        return Cow::Borrowed(path);
    }
    let Some((key, _)) = words.nth(1) else {
        return Cow::Borrowed(path);
    };
    let redacted: Vec<&str> = path
        .split('/')
        .enumerate()
        .map(|(i, segment)| if i == key { KEY } else { segment })
        .collect();
    Cow::Owned(redacted.join("/"))
}

#[cfg(test)]
mod tests {
    use super::redacted_path;

    #[test]
    fn subscription_keys_are_redacted() {
        for (path, logged) in [
            ("/sub/alice/0123abcd", "/sub/alice/<key>"),
            ("/sub/alice/0123abcd/links", "/sub/alice/<key>/links"),
            ("/api/sub/alice/0123abcd", "/api/sub/alice/<key>"),
            (
                "/api/sub/alice/0123abcd/sing-box",
                "/api/sub/alice/<key>/sing-box",
            ),
            ("//sub//alice/0123abcd/", "//sub//alice/<key>/"),
            ("/API/Sub/alice/0123abcd", "/API/Sub/alice/<key>"),
            ("/sub/alice/%30123abcd", "/sub/alice/<key>"),
            // Nothing secret.
            ("/sub/alice", "/sub/alice"),
            ("/sub", "/sub"),
            ("/api/users/alice/usage", "/api/users/alice/usage"),
            ("/api/users/sub/alice", "/api/users/sub/alice"),
            ("/dashboard/sub/x/y", "/dashboard/sub/x/y"),
            ("/", "/"),
            ("", ""),
        ] {
            assert_eq!(redacted_path(path), logged, "{path}");
        }
    }
}
