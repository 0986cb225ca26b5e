//! `/api/inbounds/{id}/hosts` and `/api/inbounds/hosts/{id}`: the addresses users are given
//! for an inbound (the paths Marzneshin uses).
//!
//! A host is what one share link carries: a remark, the address and port clients connect to
//! (a domain in front of the server, a CDN, a relay), and the transport details a client needs.
//! An inbound with no host is offered at its own listen address, which only works when that is
//! an address clients can reach: an inbound listening on `0.0.0.0` needs a host.

use std::collections::HashMap;

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};
use sqlx::Row;

use super::ApiTags;
use crate::auth::AdminAuth;
use crate::db::{self, Db};
use crate::error::{ApiError, ApiResult};
use crate::serve::{now, AppState};
use crate::subscription::HostEntry;

/// Whether clients use TLS to reach a host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum HostSecurity {
    /// What the inbound uses.
    #[default]
    InboundDefault,
    /// No TLS.
    None,
    /// TLS.
    Tls,
}

impl HostSecurity {
    fn as_str(self) -> &'static str {
        match self {
            HostSecurity::InboundDefault => "inbound_default",
            HostSecurity::None => "none",
            HostSecurity::Tls => "tls",
        }
    }

    fn parse(s: &str) -> HostSecurity {
        match s {
            "none" => HostSecurity::None,
            "tls" => HostSecurity::Tls,
            _ => HostSecurity::InboundDefault,
        }
    }
}

/// A host of an inbound.
#[derive(Clone, Debug, Object)]
pub struct Host {
    /// Id.
    pub id: i64,
    /// The inbound it belongs to.
    pub inbound_id: i64,
    /// Name shown by clients. Placeholders such as `{USERNAME}`, `{DATA_LEFT}`,
    /// `{DAYS_LEFT}`, `{EXPIRE_DATE}` are filled per user (docs/subscriptions.md).
    pub remark: String,
    /// Address clients connect to (placeholders allowed).
    pub address: String,
    /// Port clients connect to (absent: the inbound's port).
    pub port: Option<u16>,
    /// TLS server name (not used by Shadowsocks). A comma-separated list gives one at random
    /// per fetch; `*` is replaced by a random label.
    pub sni: Option<String>,
    /// HTTP Host header of a WebSocket transport (not used by Shadowsocks). A list and `*` as
    /// for `sni`.
    pub host: Option<String>,
    /// HTTP path (not used by Shadowsocks).
    pub path: Option<String>,
    /// TLS towards this host (not used by Shadowsocks).
    pub security: HostSecurity,
    /// Order in subscriptions: lower weights come first.
    pub weight: i64,
}

/// A new or changed host.
#[derive(Clone, Debug, Object)]
pub struct HostInput {
    /// Name shown by clients, 1 to 256 characters (placeholders allowed).
    pub remark: String,
    /// Address clients connect to, 1 to 256 characters (placeholders allowed).
    pub address: String,
    /// Port clients connect to, 1 to 65535 (absent: the inbound's port).
    pub port: Option<i64>,
    /// TLS server name, or a comma-separated list of them (one is picked at random per fetch;
    /// `*` is replaced by a random label).
    pub sni: Option<String>,
    /// HTTP Host header of a WebSocket transport (a list and `*` as for `sni`).
    pub host: Option<String>,
    /// HTTP path.
    pub path: Option<String>,
    /// TLS towards this host.
    #[oai(default)]
    pub security: HostSecurity,
    /// Order in subscriptions: lower weights come first (default 1).
    #[oai(default = "default_weight")]
    pub weight: i64,
}

fn default_weight() -> i64 {
    1
}

impl From<Host> for HostEntry {
    fn from(h: Host) -> HostEntry {
        HostEntry {
            remark: h.remark,
            address: h.address,
            port: h.port,
            weight: h.weight,
            sni: h.sni,
            host: h.host,
            path: h.path,
            tls: match h.security {
                HostSecurity::InboundDefault => None,
                HostSecurity::None => Some(false),
                HostSecurity::Tls => Some(true),
            },
        }
    }
}

/// Checks a host's fields.
fn check(input: &HostInput) -> Result<(), ApiError> {
    let text = |field: &str, value: &str, max: usize| {
        if value.trim().is_empty() || value.chars().count() > max {
            return Err(ApiError::invalid(
                field,
                format!("must be 1 to {max} characters"),
            ));
        }
        Ok(())
    };
    text("remark", &input.remark, 256)?;
    text("address", &input.address, 256)?;
    if input.address.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(ApiError::invalid(
            "address",
            "must be a host name or an IP address",
        ));
    }
    for (field, value, max) in [
        ("sni", &input.sni, 1024),
        ("host", &input.host, 1024),
        ("path", &input.path, 256),
    ] {
        if let Some(v) = value {
            text(field, v, max)?;
        }
    }
    if input.port.is_some_and(|p| !(1..=65535).contains(&p)) {
        return Err(ApiError::invalid("port", "must be between 1 and 65535"));
    }
    Ok(())
}

const HOST_COLS: &str = "id, inbound_id, remark, address, port, sni, host, path, security, weight";

fn host_from_row(r: &sqlx::any::AnyRow) -> Result<Host, sqlx::Error> {
    let port: Option<i64> = r.try_get("port")?;
    let security: String = r.try_get("security")?;
    Ok(Host {
        id: r.try_get("id")?,
        inbound_id: r.try_get("inbound_id")?,
        remark: r.try_get("remark")?,
        address: r.try_get("address")?,
        port: port.and_then(|p| u16::try_from(p).ok()),
        sni: r.try_get("sni")?,
        host: r.try_get("host")?,
        path: r.try_get("path")?,
        security: HostSecurity::parse(&security),
        weight: r.try_get("weight")?,
    })
}

/// The hosts of each of `inbound_ids`, by inbound id, each list in id order.
pub async fn of_inbounds(
    db: &Db,
    inbound_ids: &[i64],
) -> Result<HashMap<i64, Vec<Host>>, sqlx::Error> {
    if inbound_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list = inbound_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let q = format!("SELECT {HOST_COLS} FROM hosts WHERE inbound_id IN ({list}) ORDER BY id");
    by_inbound(db, &q).await
}

/// Every host, by inbound id, each list in id order.
pub async fn all(db: &Db) -> Result<HashMap<i64, Vec<Host>>, sqlx::Error> {
    by_inbound(db, &format!("SELECT {HOST_COLS} FROM hosts ORDER BY id")).await
}

/// The hosts `query` selects (with [`HOST_COLS`]), by inbound id.
async fn by_inbound(db: &Db, query: &str) -> Result<HashMap<i64, Vec<Host>>, sqlx::Error> {
    let mut out: HashMap<i64, Vec<Host>> = HashMap::new();
    for r in sqlx::query(query).fetch_all(&db.reader).await? {
        let h = host_from_row(&r)?;
        out.entry(h.inbound_id).or_default().push(h);
    }
    Ok(out)
}

async fn load(state: &AppState, id: i64) -> Result<Host, ApiError> {
    let q = format!("SELECT {HOST_COLS} FROM hosts WHERE id = $1");
    let r = sqlx::query(&q)
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("host {id}")))?;
    Ok(host_from_row(&r)?)
}

/// 404 unless the inbound exists.
async fn require_inbound(state: &AppState, id: i64) -> Result<(), ApiError> {
    sqlx::query("SELECT id FROM inbounds WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("inbound {id}")))?;
    Ok(())
}

async fn audit(state: &AppState, auth: &AdminAuth, action: &str, host: &Host) -> ApiResult<()> {
    let target = format!(
        "inbound {} host {} {:?}",
        host.inbound_id, host.id, host.remark
    );
    db::audit(&state.db, &auth.0.admin.username, action, &target, now())
        .await
        .map_err(ApiError::from)?;
    Ok(())
}

/// Host endpoints.
pub struct HostApi;

#[OpenApi(prefix_path = "/inbounds", tag = "ApiTags::Hosts")]
impl HostApi {
    /// The hosts of an inbound, in id order. With none, subscriptions offer the inbound at its
    /// listen address (replace `0.0.0.0` with a host clients can reach).
    #[oai(path = "/:id/hosts", method = "get")]
    async fn list(
        &self,
        state: poem::web::Data<&AppState>,
        _auth: AdminAuth,
        /// Inbound id.
        id: Path<i64>,
    ) -> ApiResult<Json<Vec<Host>>> {
        require_inbound(&state, *id).await?;
        let mut hosts = of_inbounds(&state.db, &[*id])
            .await
            .map_err(ApiError::from)?;
        Ok(Json(hosts.remove(&*id).unwrap_or_default()))
    }

    /// Add a host to an inbound (sudo only).
    #[oai(path = "/:id/hosts", method = "post")]
    async fn create(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        /// Inbound id.
        id: Path<i64>,
        body: Json<HostInput>,
    ) -> ApiResult<Json<Host>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        check(&body)?;
        require_inbound(&state, *id).await?;
        let host_id: i64 = sqlx::query(
            "INSERT INTO hosts (inbound_id, remark, address, port, sni, host, path, security, weight) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(*id)
        .bind(&body.remark)
        .bind(&body.address)
        .bind(body.port)
        .bind(body.sni.clone())
        .bind(body.host.clone())
        .bind(body.path.clone())
        .bind(body.security.as_str())
        .bind(body.weight)
        .fetch_one(&state.db.pool)
        .await
        .map_err(ApiError::from)?
        .try_get("id")
        .map_err(ApiError::from)?;
        let host = load(&state, host_id).await?;
        audit(&state, &auth, "host.create", &host).await?;
        Ok(Json(host))
    }

    /// One host.
    #[oai(path = "/hosts/:id", method = "get")]
    async fn get(
        &self,
        state: poem::web::Data<&AppState>,
        _auth: AdminAuth,
        /// Host id.
        id: Path<i64>,
    ) -> ApiResult<Json<Host>> {
        Ok(Json(load(&state, *id).await?))
    }

    /// Replace a host's fields (sudo only).
    #[oai(path = "/hosts/:id", method = "put")]
    async fn modify(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        /// Host id.
        id: Path<i64>,
        body: Json<HostInput>,
    ) -> ApiResult<Json<Host>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        check(&body)?;
        load(&state, *id).await?;
        sqlx::query(
            "UPDATE hosts SET remark = $1, address = $2, port = $3, sni = $4, host = $5, path = $6, \
             security = $7, weight = $8 WHERE id = $9",
        )
        .bind(&body.remark)
        .bind(&body.address)
        .bind(body.port)
        .bind(body.sni.clone())
        .bind(body.host.clone())
        .bind(body.path.clone())
        .bind(body.security.as_str())
        .bind(body.weight)
        .bind(*id)
        .execute(&state.db.pool)
        .await
        .map_err(ApiError::from)?;
        let host = load(&state, *id).await?;
        audit(&state, &auth, "host.modify", &host).await?;
        Ok(Json(host))
    }

    /// Delete a host (sudo only).
    #[oai(path = "/hosts/:id", method = "delete")]
    async fn delete(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        /// Host id.
        id: Path<i64>,
    ) -> ApiResult<Json<bool>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        let host = load(&state, *id).await?;
        sqlx::query("DELETE FROM hosts WHERE id = $1")
            .bind(*id)
            .execute(&state.db.pool)
            .await
            .map_err(ApiError::from)?;
        audit(&state, &auth, "host.delete", &host).await?;
        Ok(Json(true))
    }
}
