//! `GET /sub/{username}/{key}` and `GET /sub/{username}/{key}/{format}`: a user's
//! subscription, served at the root (the address users are given, as in Marzneshin) and, as
//! the spec describes it, under `/api` too.
//!
//! Reads the user (one query, which also says whether the in-memory [`crate::catalog`] of
//! inbounds, hosts and settings is current), queues the fetch for [`crate::fetches`] to record,
//! and hands plain data to [`crate::subscription`], which does the rest. An unknown user and a
//! wrong key get the same 404.

use poem::http::header;
use poem::{IntoResponse, Request, Response};
use poem_openapi::param::{Header, Path};
use poem_openapi::registry::{
    MetaHeader, MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Enum, OpenApi, OpenApiService};
use sha2::{Digest, Sha256};

use super::ApiTags;
use crate::db::{self, UserRow};
use crate::error::{ApiError, ApiResult};
use crate::serve::{now, AppState};
use crate::subscription::{self, Format, SubscriptionUser};

/// A format asked for by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum SubscriptionFormat {
    /// Share links, one a line.
    #[oai(rename = "links")]
    Links,
    /// Base64 of the share links.
    #[oai(rename = "base64")]
    Base64,
    /// sing-box JSON.
    #[oai(rename = "sing-box")]
    SingBox,
    /// Clash Meta (mihomo) YAML.
    #[oai(rename = "clash-meta")]
    ClashMeta,
    /// A JSON array of Xray configurations.
    #[oai(rename = "xray")]
    Xray,
    /// Marzneshin's name for `base64`.
    #[oai(rename = "v2ray")]
    V2ray,
    /// Marzneshin's name for Clash YAML: the same as `clash-meta`.
    #[oai(rename = "clash")]
    Clash,
}

impl From<SubscriptionFormat> for Format {
    fn from(f: SubscriptionFormat) -> Format {
        match f {
            SubscriptionFormat::Links => Format::Links,
            SubscriptionFormat::Base64 | SubscriptionFormat::V2ray => Format::Base64,
            SubscriptionFormat::SingBox => Format::SingBox,
            SubscriptionFormat::ClashMeta | SubscriptionFormat::Clash => Format::ClashMeta,
            SubscriptionFormat::Xray => Format::Xray,
        }
    }
}

/// A subscription body with its headers.
pub struct SubscriptionResponse {
    format: Format,
    body: String,
    headers: Vec<(&'static str, String)>,
}

const HEADERS: [(&str, &str); 6] = [
    (
        "subscription-userinfo",
        "`upload=0; download=<bytes used>; total=<data limit, 0: none>; expire=<Unix seconds, 0: never>`",
    ),
    (
        "profile-title",
        "`base64:` and the title in base64: the panel's title (`GET /api/settings/subscription`) \
         with its placeholders filled, or the user name",
    ),
    (
        "profile-update-interval",
        "Hours between fetches (the panel's `update_interval`, 12 by default)",
    ),
    (
        "support-url",
        "The panel's `support_url` (only when one is set)",
    ),
    (
        "profile-web-page-url",
        "The subscription's page at `/sub/{username}/{key}` on the host the client asked \
         (`Host`), `https` when `X-Forwarded-Proto` says so (only with a plain host name or address)",
    ),
    (
        "content-disposition",
        "`attachment; filename=\"<username>\"` (not on the HTML page)",
    ),
];

impl IntoResponse for SubscriptionResponse {
    fn into_response(self) -> Response {
        let mut builder = Response::builder().content_type(self.format.content_type());
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        builder.body(self.body)
    }
}

impl ApiResponse for SubscriptionResponse {
    fn meta() -> MetaResponses {
        let text = || MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")));
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The subscription: links or base64 links (text/plain), sing-box or \
                              Xray JSON (application/json), Clash Meta YAML (text/yaml), or a page \
                              for a browser (text/html).",
                status: Some(200),
                status_range: None,
                content: [
                    "text/plain; charset=utf-8",
                    "application/json",
                    "text/yaml; charset=utf-8",
                    "text/html; charset=utf-8",
                ]
                .into_iter()
                .map(|content_type| MetaMediaType {
                    content_type,
                    schema: text(),
                })
                .collect(),
                headers: HEADERS
                    .iter()
                    .map(|(name, description)| MetaHeader {
                        name: (*name).to_owned(),
                        description: Some((*description).to_owned()),
                        required: !matches!(
                            *name,
                            "content-disposition" | "support-url" | "profile-web-page-url"
                        ),
                        deprecated: false,
                        schema: String::schema_ref(),
                    })
                    .collect(),
            }],
        }
    }

    fn register(_registry: &mut Registry) {}
}

/// Whether a presented key is the user's (compared as digests, so the time taken says nothing
/// about how much of it matched).
fn same_key(presented: &str, stored: &str) -> bool {
    Sha256::digest(presented.as_bytes()) == Sha256::digest(stored.as_bytes())
}

/// The address of `user`'s subscription page as their client reached the panel
/// (`profile-web-page-url`): the `Host` it asked for, `https` when a proxy in front says so in
/// `X-Forwarded-Proto`, else `http` (what the panel itself serves). None without a `Host` that
/// is a plain name or address with an optional port.
fn page_url(request: &Request, user: &UserRow) -> Option<String> {
    let host = request.headers().get(header::HOST)?.to_str().ok()?;
    let plain = |b: u8| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b);
    if host.is_empty() || host.len() > 255 || !host.bytes().all(plain) {
        return None;
    }
    let forwarded = request
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim);
    let scheme = match forwarded {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    // Names are letters, digits and underscores; keys are hex: nothing to escape.
    Some(format!(
        "{scheme}://{host}/sub/{}/{}",
        user.username, user.key
    ))
}

/// Builds the subscription of `username` if `key` is theirs.
async fn subscription(
    state: &AppState,
    request: &Request,
    username: &str,
    key: &str,
    format: Option<Format>,
    user_agent: Option<&str>,
    accept: Option<&str>,
) -> ApiResult<SubscriptionResponse> {
    let found = db::user_for_subscription(&state.db, username)
        .await
        .map_err(ApiError::from)?
        .filter(|u| same_key(key, &u.user.key))
        .ok_or_else(|| ApiError::NotFound("subscription".into()))?;
    let catalog = state
        .catalog
        .at_least(&state.db, found.config_revision)
        .await
        .map_err(ApiError::from)?;
    let user = found.user;
    let user_agent = user_agent.unwrap_or("");
    let now = now();
    state.fetches.record(user.id, now, user_agent);
    let options = &catalog.options;
    let view = SubscriptionUser::from_row(&user, now);
    let proxies = subscription::proxies(&view, catalog.inbounds_of(&found.services), now);
    let format = format.unwrap_or_else(|| subscription::detect(user_agent, accept.unwrap_or("")));
    let mut headers = vec![
        ("subscription-userinfo", view.userinfo()),
        (
            "profile-title",
            subscription::profile_title(&options.title_for(&view, now)),
        ),
        (
            "profile-update-interval",
            options.update_interval.to_string(),
        ),
    ];
    if let Some(url) = &options.support_url {
        headers.push(("support-url", url.clone()));
    }
    if let Some(url) = page_url(request, &user) {
        headers.push(("profile-web-page-url", url));
    }
    if format != Format::Page {
        headers.push((
            "content-disposition",
            format!("attachment; filename=\"{}\"", view.username),
        ));
    }
    Ok(SubscriptionResponse {
        format,
        body: subscription::render(format, &view, &proxies, options, now),
        headers,
    })
}

/// Subscription endpoints (no admin token: the key in the path is the credential).
pub struct SubscriptionApi;

#[OpenApi(prefix_path = "/sub", tag = "ApiTags::Subscription")]
impl SubscriptionApi {
    /// A user's subscription in the format their client reads, chosen by `User-Agent`
    /// (docs/subscriptions.md): Clash clients get Clash Meta YAML, sing-box clients sing-box
    /// JSON, newer v2rayN/v2rayNG and Streisand Xray JSON, browsers a page, others base64
    /// links. Also served at `/sub/{username}/{key}` outside `/api`.
    #[oai(path = "/:username/:key", method = "get")]
    async fn detected(
        &self,
        state: poem::web::Data<&AppState>,
        request: &Request,
        /// User name.
        username: Path<String>,
        /// The user's key.
        key: Path<String>,
        /// Picks the format.
        #[oai(name = "user-agent")]
        user_agent: Header<Option<String>>,
        /// `text/html` asks for the page.
        accept: Header<Option<String>>,
    ) -> ApiResult<SubscriptionResponse> {
        subscription(
            &state,
            request,
            &username,
            &key,
            None,
            user_agent.as_deref(),
            accept.as_deref(),
        )
        .await
    }

    /// A user's subscription in the named format. Also served at
    /// `/sub/{username}/{key}/{format}` outside `/api`.
    #[oai(path = "/:username/:key/:format", method = "get")]
    async fn explicit(
        &self,
        state: poem::web::Data<&AppState>,
        request: &Request,
        /// User name.
        username: Path<String>,
        /// The user's key.
        key: Path<String>,
        /// The format.
        format: Path<SubscriptionFormat>,
        /// Recorded as the last client.
        #[oai(name = "user-agent")]
        user_agent: Header<Option<String>>,
    ) -> ApiResult<SubscriptionResponse> {
        subscription(
            &state,
            request,
            &username,
            &key,
            Some(format.0.into()),
            user_agent.as_deref(),
            None,
        )
        .await
    }
}

/// The subscription endpoints on their own, for mounting at the root (`/sub/...`).
pub fn service() -> OpenApiService<SubscriptionApi, ()> {
    OpenApiService::new(
        SubscriptionApi,
        "Marzneshin subscriptions",
        env!("CARGO_PKG_VERSION"),
    )
}
