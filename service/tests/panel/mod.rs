//! A real `marzneshin serve` for tests: the binary on a free loopback port over a fresh
//! database (SQLite in a temporary folder, or a new database on the PostgreSQL server named by
//! `MARZNESHIN_TEST_POSTGRES_URL`), an HTTP client for its API, and direct SQL access to the
//! same database for arranging what the API cannot (old usage, traffic counters).
//!
//! The PostgreSQL variant of a test fails when `MARZNESHIN_TEST_POSTGRES_URL` is unset: start
//! a throwaway server with `bash tests/postgres.sh cargo test -p service` (tests/run.sh does).
//! To run only the SQLite variants, filter by name: `cargo test -p service -- sqlite::`.

#![allow(dead_code)] // each test file uses part of this

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Connection as _;

/// The first sudo admin every test panel starts with.
pub const ADMIN: &str = "admin";
/// Their password.
pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// Which database a panel runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the panel's temporary folder.
    Sqlite,
    /// A fresh database on the server of `MARZNESHIN_TEST_POSTGRES_URL`.
    Postgres,
}

/// Runs each named `fn(Backend)` as two tests, `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name($crate::panel::Backend::Sqlite) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name($crate::panel::Backend::Postgres) })*
        }
    };
}

/// A database made for one panel, dropped with it.
enum Database {
    Sqlite,
    Postgres { server_url: String, name: String },
}

/// A running panel process; stopped (and its database dropped) when dropped.
pub struct TestPanel {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The panel's database URL.
    pub database_url: String,
    /// The panel's data folder (a temporary folder).
    pub dir: PathBuf,
    child: Option<Child>,
    database: Database,
    client: reqwest::blocking::Client,
    runtime: tokio::runtime::Runtime,
}

/// An HTTP response: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// The raw body.
    pub text: String,
}

impl Reply {
    /// The body, after checking the status is 200.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.status, 200, "expected 200, got {self:?}");
        self.body
    }

    /// Checks an error reply: its status, the field it names and part of its message.
    #[track_caller]
    pub fn expect_error(&self, status: u16, field: Option<&str>, detail_part: &str) {
        assert_eq!(self.status, status, "reply: {self:?}");
        assert_eq!(
            self.body["field"].as_str(),
            field,
            "field of the error: {self:?}"
        );
        let detail = self.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(detail_part),
            "detail {detail:?} should contain {detail_part:?}"
        );
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique_name() -> String {
    format!(
        "mz_test_{}_{}_{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// The PostgreSQL server for tests, or a failure saying how to get one.
pub fn postgres_server_url() -> String {
    match std::env::var("MARZNESHIN_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "MARZNESHIN_TEST_POSTGRES_URL is not set{}: the PostgreSQL variant of this test needs \
             a server. Run `bash tests/postgres.sh cargo test -p service` (it starts a throwaway \
             server; tests/run.sh does this), point the variable at a server where this user may \
             CREATE DATABASE, or run only the SQLite variants with `cargo test -p service -- sqlite::`",
            if std::env::var_os("CI").is_some() {
                " in CI"
            } else {
                ""
            }
        ),
    }
}

/// `url` with its database name replaced by `name` (query string kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let authority_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..authority_end])
}

/// A loopback port nothing listens on right now, below the ephemeral range (so no
/// connection's own port takes it meanwhile).
pub use e2e::free_port;

/// Extra settings for a test panel.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Environment variables for `marzneshin serve` on top of the test defaults.
    pub env: Vec<(String, String)>,
}

impl Options {
    /// Adds an environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Options {
        self.env.push((name.into(), value.into()));
        self
    }
}

impl TestPanel {
    /// Starts a panel on `backend` with the test defaults.
    pub fn start(backend: Backend) -> TestPanel {
        TestPanel::start_with(backend, Options::default())
    }

    /// Starts a panel on `backend`; returns once its API answers.
    pub fn start_with(backend: Backend, options: Options) -> TestPanel {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let name = unique_name();
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let (database, database_url) = match backend {
            Backend::Sqlite => (
                Database::Sqlite,
                format!("sqlite://{}?mode=rwc", dir.join("panel.db").display()),
            ),
            Backend::Postgres => {
                let server_url = postgres_server_url();
                runtime.block_on(async {
                    let mut c = sqlx::PgConnection::connect(&server_url)
                        .await
                        .unwrap_or_else(|e| panic!("connect to MARZNESHIN_TEST_POSTGRES_URL: {e}"));
                    sqlx::query(&format!("CREATE DATABASE {name}"))
                        .execute(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
                });
                let url = with_database(&server_url, &name);
                (Database::Postgres { server_url, name }, url)
            }
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut panel = TestPanel {
            base: String::new(),
            database_url,
            dir,
            child: None,
            database,
            client,
            runtime,
        };
        // The port is free when chosen but another process may take it before the panel binds:
        // try a few.
        for _ in 0..5 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            if panel.spawn(addr, &options) {
                return panel;
            }
        }
        panic!("the panel did not start; log:\n{}", panel.log());
    }

    fn spawn(&mut self, addr: SocketAddr, options: &Options) -> bool {
        let log = std::fs::File::create(self.dir.join("panel.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_marzneshin"));
        cmd.arg("serve")
            .env("MARZNESHIN_LISTEN", addr.to_string())
            .env("DATABASE_URL", &self.database_url)
            .env("MARZNESHIN_DATA_DIR", &self.dir)
            .env("MARZNESHIN_ADMIN_USERNAME", ADMIN)
            .env("MARZNESHIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("MARZNESHIN_ENGINE_WORKERS", "1")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start marzneshin serve");
        self.base = format!("http://{addr}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // the port was taken meanwhile, or a startup error: see the log
            }
            let up = self
                .client
                .get(format!("{}/openapi.json", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if up {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the panel did not answer within 60 s; log:\n{}", self.log());
    }

    /// What the panel wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.join("panel.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Stops the panel with SIGTERM and checks that it exits cleanly.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success() || std::thread::panicking(),
                    "marzneshin serve exited with {status}; log:\n{}",
                    self.log()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("marzneshin serve did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Another panel instance on this panel's database, with its own data folder (and so its
    /// own engine). The database stays this panel's: it is dropped with this one.
    pub fn another_instance(&self, options: &Options) -> TestPanel {
        let dir = std::env::temp_dir().join(unique_name());
        std::fs::create_dir_all(&dir).unwrap();
        let mut panel = TestPanel {
            base: String::new(),
            database_url: self.database_url.clone(),
            dir,
            child: None,
            database: Database::Sqlite,
            client: self.client.clone(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        };
        for _ in 0..5 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            if panel.spawn(addr, options) {
                return panel;
            }
        }
        panic!("the second instance did not start; log:\n{}", panel.log());
    }

    /// Stops the panel (SIGTERM) and starts it again on the same database and data folder.
    pub fn restart(&mut self, options: &Options) {
        self.stop();
        for _ in 0..5 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            if self.spawn(addr, options) {
                return;
            }
        }
        panic!("the panel did not start again; log:\n{}", self.log());
    }

    /// Runs `f` with a connection pool on the panel's database.
    pub fn sql<T>(&self, f: impl AsyncFnOnce(&sqlx::AnyPool) -> T) -> T {
        self.runtime.block_on(async {
            sqlx::any::install_default_drivers();
            let pool = sqlx::any::AnyPoolOptions::new()
                .max_connections(1)
                .connect(&self.database_url)
                .await
                .expect("connect to the panel's database");
            let out = f(&pool).await;
            pool.close().await;
            out
        })
    }

    /// Runs one SQL statement on the panel's database (`$n` placeholders bound to `args`).
    pub fn execute(&self, statement: &str, args: &[i64]) {
        self.sql(async |pool| {
            let mut q = sqlx::query(statement);
            for a in args {
                q = q.bind(*a);
            }
            q.execute(pool)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        })
    }

    /// Sends a request; `token` is a bearer token.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        reply(req.send().expect("HTTP request"))
    }

    /// GET with a token.
    pub fn get(&self, token: &str, path: &str) -> Reply {
        self.call("GET", path, Some(token), None)
    }

    /// POST JSON with a token.
    pub fn post(&self, token: &str, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(token), Some(body))
    }

    /// PUT JSON with a token.
    pub fn put(&self, token: &str, path: &str, body: Value) -> Reply {
        self.call("PUT", path, Some(token), Some(body))
    }

    /// DELETE with a token.
    pub fn delete(&self, token: &str, path: &str) -> Reply {
        self.call("DELETE", path, Some(token), None)
    }

    /// The login form, with extra headers.
    pub fn login_with(&self, username: &str, password: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self
            .client
            .post(format!("{}/api/admins/token", self.base))
            .form(&[("username", username), ("password", password)]);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        reply(req.send().expect("HTTP request"))
    }

    /// The login form.
    pub fn login(&self, username: &str, password: &str) -> Reply {
        self.login_with(username, password, &[])
    }

    /// A token, or a failure.
    #[track_caller]
    pub fn token(&self, username: &str, password: &str) -> String {
        let body = self.login(username, password).ok();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A token of the first sudo admin.
    pub fn admin_token(&self) -> String {
        self.token(ADMIN, ADMIN_PASSWORD)
    }

    /// Creates an admin (as `sudo_token`) and returns a token of theirs.
    #[track_caller]
    pub fn new_admin(&self, sudo_token: &str, spec: Value) -> String {
        let username = spec["username"].as_str().unwrap().to_owned();
        let password = spec["password"].as_str().unwrap().to_owned();
        self.post(sudo_token, "/api/admins", spec).ok();
        self.token(&username, &password)
    }

    /// Creates a Shadowsocks inbound on 127.0.0.1 and returns it.
    #[track_caller]
    pub fn new_inbound(&self, token: &str, tag: &str, method: &str, port: u16) -> Value {
        self.post(
            token,
            "/api/inbounds",
            json!({"config": {
                "tag": tag,
                "listen": format!("127.0.0.1:{port}"),
                "protocol": "shadowsocks",
                "settings": {"method": method}
            }}),
        )
        .ok()
    }

    /// Creates a service and returns its id.
    #[track_caller]
    pub fn new_service(&self, token: &str, name: &str, inbound_ids: &[i64]) -> i64 {
        self.post(
            token,
            "/api/services",
            json!({"name": name, "inbound_ids": inbound_ids}),
        )
        .ok()["id"]
            .as_i64()
            .unwrap()
    }

    /// Creates a user and returns them.
    #[track_caller]
    pub fn new_user(&self, token: &str, spec: Value) -> Value {
        self.post(token, "/api/users", spec).ok()
    }
}

fn reply(r: reqwest::blocking::Response) -> Reply {
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, body, text }
}

impl Drop for TestPanel {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- panel log ({}) ---\n{}", self.base, self.log());
        }
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Database::Postgres { server_url, name } = &self.database {
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            self.runtime.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(server_url).await {
                    let _ = sqlx::query(&drop).execute(&mut c).await;
                }
            });
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
