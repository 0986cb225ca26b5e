//! Admin authentication: argon2 password hashes, JWT bearer tokens (void once the password
//! changes or the admin is disabled), and login throttling per client address and admin name
//! kept in the database (so it holds across panel instances).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::{self, AdminRow, Db};
use crate::error::ApiError;
use crate::serve::AppState;

/// Failed logins allowed per client address and admin name within [`THROTTLE_WINDOW`].
pub const MAX_FAILURES: i64 = 5;
/// Throttling window, seconds.
pub const THROTTLE_WINDOW: i64 = 300;

/// argon2id with 7 MiB of memory and 5 passes, one of the equivalent settings OWASP's
/// Password Storage Cheat Sheet lists (argon2's default is its 19 MiB, 2 passes): the same
/// cost to an attacker, without holding 19 MiB per login in a panel meant to stay small.
/// Hashes carry their parameters, so hashes made with other settings still verify.
fn hasher() -> Argon2<'static> {
    let params = argon2::Params::new(7 * 1024, 5, 1, None).expect("valid argon2 parameters");
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// How many argon2 computations run at once. Each holds 7 MiB and a blocking thread (the
/// pool the engine calls use too) for tens of milliseconds: a flood of logins, from as many
/// addresses as it likes, waits its turn here instead.
static ARGON2_TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Runs `work` on a blocking thread in its turn ([`ARGON2_TURNS`]).
async fn in_turn<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let _turn = ARGON2_TURNS.acquire().await?;
    Ok(tokio::task::spawn_blocking(work).await?)
}

/// Hashes a password with argon2id (on a blocking thread: it is slow on purpose).
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    in_turn(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hash password: {e}"))
    })
    .await?
}

/// Checks a password against a stored hash.
pub async fn verify_password(password: String, hash: String) -> bool {
    in_turn(move || {
        PasswordHash::new(&hash)
            .map(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Checks `password` against a hash of a random password, made once with our parameters:
/// for a login naming no admin, or a disabled one, so that its answer takes as long as a
/// wrong password's and does not tell which names are admins. Always `false`.
pub async fn verify_decoy(password: String) {
    static DECOY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let decoy = DECOY
        .get_or_init(|| async {
            hash_password(crate::serve::random_hex(32))
                .await
                .unwrap_or_default()
        })
        .await;
    verify_password(password, decoy.clone()).await;
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
    /// The admin's `password_changed_at` when the token was issued.
    pwd: i64,
}

/// Issues a token for `admin`.
pub fn issue_token(
    secret: &str,
    admin: &AdminRow,
    now: i64,
    ttl_secs: i64,
) -> anyhow::Result<String> {
    let claims = Claims {
        sub: admin.username.clone(),
        iat: now,
        exp: now + ttl_secs,
        pwd: admin.password_changed_at,
    };
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Password rules for admins.
pub fn check_password_strength(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 8 {
        return Err(ApiError::invalid(
            "password",
            "must be at least 8 characters",
        ));
    }
    Ok(())
}

/// The authenticated admin of a request.
#[derive(Clone, Debug)]
pub struct AuthedAdmin {
    /// The admin's row.
    pub admin: AdminRow,
    /// Services the admin may use (empty with `all_services_access` or sudo).
    pub services: Vec<i64>,
}

impl AuthedAdmin {
    /// Sudo only.
    pub fn require_sudo(&self) -> Result<(), ApiError> {
        if !self.admin.is_sudo {
            return Err(ApiError::Forbidden("only a sudo admin may do this".into()));
        }
        Ok(())
    }

    /// May change things (not a read-only admin).
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.admin.read_only {
            return Err(ApiError::Forbidden("this admin is read-only".into()));
        }
        Ok(())
    }

    /// May create or change users.
    pub fn require_user_write(&self) -> Result<(), ApiError> {
        self.require_write()?;
        if !self.admin.is_sudo && !self.admin.modify_users_access {
            return Err(ApiError::Forbidden(
                "this admin may not modify users".into(),
            ));
        }
        Ok(())
    }

    /// Whether the admin may hand out `service`.
    pub fn may_use_service(&self, service: i64) -> bool {
        self.admin.is_sudo || self.admin.all_services_access || self.services.contains(&service)
    }

    /// Whether the admin sees a user owned by `owner`.
    pub fn sees_owner(&self, owner: Option<i64>) -> bool {
        self.admin.is_sudo || owner == Some(self.admin.id)
    }
}

/// Bearer-token authentication of admins.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", key_name = "Authorization", checker = "check_bearer")]
pub struct AdminAuth(pub AuthedAdmin);

async fn check_bearer(req: &poem::Request, bearer: Bearer) -> poem::Result<AuthedAdmin> {
    let unauthorized =
        |m: &str| poem::Error::from_string(m.to_string(), poem::http::StatusCode::UNAUTHORIZED);
    let state = req
        .data::<AppState>()
        .ok_or_else(|| unauthorized("no state"))?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    let claims = decode::<Claims>(
        &bearer.token,
        &DecodingKey::from_secret(state.jwt_secret.as_bytes()),
        &validation,
    )
    .map_err(|_| unauthorized("invalid or expired token"))?
    .claims;
    let (admin, services) = db::admin_with_services(&state.db, &claims.sub)
        .await
        .map_err(|e| {
            poem::Error::from_string(e.to_string(), poem::http::StatusCode::INTERNAL_SERVER_ERROR)
        })?
        .ok_or_else(|| unauthorized("invalid or expired token"))?;
    if !admin.enabled || admin.password_changed_at != claims.pwd {
        return Err(unauthorized("invalid or expired token"));
    }
    Ok(AuthedAdmin { admin, services })
}

/// The client a login attempt is counted against: an IPv4 address as it is, an IPv6 address by
/// the /64 it is in (one host commonly holds a whole /64 and could take a fresh address for
/// every attempt), an IPv4-mapped IPv6 address as the IPv4 address.
pub fn client_of(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => {
            let s = a.segments();
            let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{prefix}/64")
        }
    }
}

/// Counts a login attempt from `client` as admin `username`, before its password is checked,
/// and refuses it once the pair has made [`MAX_FAILURES`] attempts in the current window that
/// did not succeed. Counted first, in one statement, so that attempts sent at once cannot all
/// pass the check before any is recorded.
pub async fn take_attempt(db: &Db, client: &str, username: &str, now: i64) -> Result<(), ApiError> {
    let row = sqlx::query(
        "INSERT INTO login_attempts (client, username, attempts, window_start) VALUES ($1, $2, 1, $3) \
         ON CONFLICT (client, username) DO UPDATE SET \
           attempts = CASE WHEN login_attempts.window_start + $4 <= $3 THEN 1 ELSE login_attempts.attempts + 1 END, \
           window_start = CASE WHEN login_attempts.window_start + $4 <= $3 THEN $3 ELSE login_attempts.window_start END \
         RETURNING attempts, window_start",
    )
    .bind(client)
    .bind(username)
    .bind(now)
    .bind(THROTTLE_WINDOW)
    .fetch_one(&db.pool)
    .await?;
    let attempts: i64 = row.try_get("attempts")?;
    let start: i64 = row.try_get("window_start")?;
    if attempts > MAX_FAILURES {
        return Err(ApiError::Throttled(
            (start + THROTTLE_WINDOW - now).max(1) as u64
        ));
    }
    Ok(())
}

/// Forgets the attempts of `client` as `username` after a successful login (only that pair:
/// a client's own account does not wipe its failures as another admin).
pub async fn forgive(db: &Db, client: &str, username: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_attempts WHERE client = $1 AND username = $2")
        .bind(client)
        .bind(username)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Deletes the counts whose window has passed (they would start over anyway).
pub async fn prune_attempts(db: &Db, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_attempts WHERE window_start + $1 <= $2")
        .bind(THROTTLE_WINDOW)
        .bind(now)
        .execute(&db.pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let client = |s: &str| client_of(s.parse().unwrap());
        assert_eq!(client("203.0.113.7"), "203.0.113.7");
        assert_eq!(client("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(client("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(client("2001:db8:1:2:ffff:1:2:3"), "2001:db8:1:2::/64");
        assert_ne!(client("2001:db8:1:3::1"), client("2001:db8:1:2::1"));
        assert_eq!(client("::1"), "::/64");
    }

    #[tokio::test]
    async fn hashes_verify_with_their_own_parameters() {
        let ours = hash_password("correct horse".into()).await.unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{ours}");
        assert!(verify_password("correct horse".into(), ours.clone()).await);
        assert!(!verify_password("wrong horse".into(), ours).await);
        // A hash made with argon2's defaults (19 MiB, 2 passes) still verifies.
        let salt = SaltString::generate(&mut OsRng);
        let default = Argon2::default()
            .hash_password(b"old password", &salt)
            .unwrap()
            .to_string();
        assert!(default.contains("m=19456,t=2,p=1"), "{default}");
        assert!(verify_password("old password".into(), default.clone()).await);
        assert!(!verify_password("new password".into(), default).await);
    }
}
