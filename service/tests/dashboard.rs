//! The dashboard in a real browser: Debian's headless Chromium driven through ChromeDriver by
//! fantoccini, against a real `marzneshin serve` on a fresh SQLite database (the harness in
//! `panel/`).
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`apt-get install -y chromium
//! chromium-driver`; tests/run.sh installs them), or `MARZNESHIN_CHROMIUM` and
//! `MARZNESHIN_CHROMEDRIVER`. Without them every test here fails and says so.
//!
//! A failing test saves a screenshot of the page under `target/tmp/dashboard-failures/`. The
//! run also refreshes the screenshots of the main pages in `docs/dashboard/`, rewriting a file
//! only when the page looks different outside what shows the clock or the run (see
//! [`document`]), so a re-run leaves the tree clean.

mod panel;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use panel::{Backend, TestPanel, ADMIN, ADMIN_PASSWORD};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T = ()> = std::result::Result<T, Error>;

const GIB: i64 = 1 << 30;
/// How long a page gets to show what a step waits for.
const WAIT: Duration = Duration::from_secs(15);
const DESKTOP: (u32, u32) = (1100, 760);
const PHONE: (u32, u32) = (375, 812);

fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(message.into().into())
}

fn tool(var: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    if !path.is_file() {
        panic!(
            "{} not found: the dashboard tests need Debian's {package} (`apt-get install -y chromium \
             chromium-driver`; tests/run.sh installs it) or {var} pointing at the binary",
            path.display()
        );
    }
    path
}

/// One browser at a time: the tests share a small machine with the rest of the suite, and a
/// starved browser makes waits time out.
static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// ChromeDriver with one headless Chromium session on a fresh profile.
struct Browser {
    client: Client,
    driver: Child,
    profile: PathBuf,
    runtime: tokio::runtime::Runtime,
    test: &'static str,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Browser {
    fn start(test: &'static str) -> Browser {
        let turn = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
        let chromium = tool("MARZNESHIN_CHROMIUM", "/usr/bin/chromium", "chromium");
        let chromedriver = tool(
            "MARZNESHIN_CHROMEDRIVER",
            "/usr/bin/chromedriver",
            "chromium-driver",
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let profile = std::env::temp_dir().join(format!(
            "mz_dashboard_{test}_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let port = panel::free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", chromedriver.display()));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = runtime
            .block_on(
                ClientBuilder::new(connector)
                    .capabilities(caps)
                    .connect(&format!("http://{addr}")),
            )
            .unwrap_or_else(|e| panic!("start a Chromium session through chromedriver: {e}"));
        Browser {
            client,
            driver,
            profile,
            runtime,
            test,
            _turn: turn,
        }
    }

    /// Runs one step of the test; on failure saves a screenshot and fails the test.
    fn step<F: std::future::Future<Output = Result>>(
        &self,
        name: &str,
        f: impl FnOnce(Client) -> F,
    ) {
        let client = self.client.clone();
        if let Err(e) = self.runtime.block_on(f(client)) {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-failures");
            let _ = std::fs::create_dir_all(&dir);
            let shot = dir.join(format!("{}-{name}.png", self.test));
            let saved = match self.runtime.block_on(self.client.screenshot()) {
                Ok(png) => std::fs::write(&shot, png)
                    .map(|_| format!("screenshot: {}", shot.display()))
                    .unwrap_or_else(|e| format!("screenshot not saved: {e}")),
                Err(e) => format!("no screenshot: {e}"),
            };
            panic!("{} / {name}: {e}\n{saved}", self.test);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), client.close()).await
        });
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Evaluates a JavaScript expression in the page.
async fn js(c: &Client, expression: &str) -> Result<Value> {
    Ok(c.execute(&format!("return ({expression});"), vec![])
        .await?)
}

/// Waits until a JavaScript expression is truthy.
async fn until(c: &Client, expression: &str) -> Result {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = js(c, expression).await?;
        if v.as_bool() == Some(true) || (v.is_string() && v != "") || v.is_object() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return fail(format!("timed out waiting for `{expression}` (last: {v})"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for an element and clicks it.
async fn click(c: &Client, css: &str) -> Result {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await?
        .click()
        .await?;
    Ok(())
}

/// Waits for an input, clears it and types `text`.
async fn fill(c: &Client, css: &str, text: &str) -> Result {
    let e = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await?;
    e.clear().await?;
    e.send_keys(text).await?;
    Ok(())
}

/// Waits for a select and picks the option with `value`.
async fn choose(c: &Client, css: &str, value: &str) -> Result {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await?
        .select_by_value(value)
        .await?;
    Ok(())
}

async fn text_of(c: &Client, css: &str) -> Result<String> {
    Ok(c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await?
        .text()
        .await?)
}

async fn login(c: &Client, base: &str, username: &str, password: &str) -> Result {
    c.goto(&format!("{base}/dashboard/#/login")).await?;
    fill(c, "input[name=username]", username).await?;
    fill(c, "input[name=password]", password).await?;
    click(c, "form.login button[type=submit]").await?;
    until(c, "document.querySelector('[data-test=me]')?.textContent").await
}

async fn goto_page(c: &Client, base: &str, hash: &str, ready: &str) -> Result {
    c.goto(&format!("{base}/dashboard/#/{hash}")).await?;
    until(
        c,
        &format!("document.querySelector('.page[data-ready=\"{hash}\"]') !== null && document.querySelector({ready:?}) !== null"),
    )
    .await
}

/// The page is no wider than the window: nothing overflows sideways.
async fn no_horizontal_overflow(c: &Client, what: &str) -> Result {
    // Let layout settle (fonts, the QR code arriving).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let v = js(
        c,
        "[document.documentElement.scrollWidth, window.innerWidth, \
         [...document.querySelectorAll('body *')].filter(e => { const r = e.getBoundingClientRect(); \
         return r.width > 0 && (r.right > window.innerWidth + 1 || r.left < -1); }).slice(0, 3)\
         .map(e => e.tagName + '.' + e.className + ' ' + (e.textContent || '').slice(0, 40))]",
    )
    .await?;
    let (scroll, inner) = (v[0].as_i64().unwrap_or(0), v[1].as_i64().unwrap_or(0));
    if scroll > inner {
        return fail(format!(
            "{what}: document is {scroll} px wide in a {inner} px window; sticking out: {}",
            v[2]
        ));
    }
    Ok(())
}

/// Every page (a user page for `user`), with what shows it is drawn.
fn every_page(user: &str) -> Vec<(String, String)> {
    [
        ("overview".to_owned(), "[data-test=total-users]".to_owned()),
        ("users".to_owned(), format!("tr[data-user={user}]")),
        (format!("users/{user}"), "[data-test=qr] svg".to_owned()),
        ("services".to_owned(), ".card h2".to_owned()),
        ("inbounds".to_owned(), "[data-inbound=ss_main]".to_owned()),
        ("admins".to_owned(), ".card h2".to_owned()),
        ("settings".to_owned(), "select".to_owned()),
    ]
    .into()
}

/// What on a page depends on the clock or on the run rather than on the seeded data: chart
/// axis labels (hours of the day), the engine's uptime and start, when a user was created,
/// last online and last fetched their subscription, and the subscription URL and its QR code
/// (the panel's port and the user's key are new each run).
const VOLATILE: &str = ".chart .tick, [data-test=engine-uptime], [data-test=engine-started], \
     [data-field=online_at], [data-field=sub_updated_at], [data-field=created_at], \
     [data-test=sub-url], [data-test=qr]";

/// Compares two PNG screenshots (base64) in the page, pixel by pixel, outside `rects`
/// (`[left, top, right, bottom]` in CSS pixels); calls back with whether they match. Channels
/// may differ by 2: Chromium's anti-aliasing of rounded corners varies by one step between
/// runs.
const SAME_OUTSIDE: &str = r#"
const [before, after, rects, done] = arguments;
const pixels = async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  return context.getImageData(0, 0, bitmap.width, bitmap.height);
};
(async () => {
  const [a, b] = await Promise.all([pixels(before), pixels(after)]);
  if (a.width !== b.width || a.height !== b.height) return false;
  const scale = window.devicePixelRatio || 1;
  const masked = rects.map(([l, t, r, bt]) => [Math.floor(l * scale) - 1, Math.floor(t * scale) - 1, Math.ceil(r * scale) + 1, Math.ceil(bt * scale) + 1]);
  for (let y = 0; y < a.height; y++) {
    for (let x = 0; x < a.width; x++) {
      const i = (y * a.width + x) * 4;
      if ([0, 1, 2, 3].every((k) => Math.abs(a.data[i + k] - b.data[i + k]) <= 2)) continue;
      if (!masked.some(([l, t, r, bt]) => x >= l && x < r && y >= t && y < bt)) return false;
    }
  }
  return true;
})().then(done, () => done(false));
"#;

/// Saves a screenshot of the main pages into docs/dashboard/, unless the one there differs
/// only where the page shows the clock or the run ([`VOLATILE`]): a re-run leaves docs/
/// unchanged, while a change to the dashboard's look shows up as a changed file.
async fn document(c: &Client, name: &str) -> Result {
    use base64::Engine as _;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rects = js(
        c,
        &format!(
            "[...document.querySelectorAll({VOLATILE:?})].map(e => e.getBoundingClientRect())\
             .filter(r => r.width > 0 && r.height > 0).map(r => [r.left, r.top, r.right, r.bottom])"
        ),
    )
    .await?;
    let png = c.screenshot().await?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.png"));
    if let Ok(before) = std::fs::read(&path) {
        let b64 =
            |bytes: &[u8]| Value::from(base64::engine::general_purpose::STANDARD.encode(bytes));
        let same = c
            .execute_async(SAME_OUTSIDE, vec![b64(&before), b64(&png), rects])
            .await?;
        if same == json!(true) {
            return Ok(());
        }
    }
    std::fs::write(path, png)?;
    Ok(())
}

/// An inbound, a service, and `users` users with some hourly usage over the last hours.
fn seed(p: &TestPanel, token: &str, users: &[&str]) -> i64 {
    let inbound = p.new_inbound(token, "ss_main", "aes-256-gcm", panel::free_port());
    let service = p.new_service(token, "standard", &[inbound["id"].as_i64().unwrap()]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let hour = now / 3600 * 3600;
    for (n, name) in users.iter().enumerate() {
        let user = p.new_user(
            token,
            json!({"username": name, "data_limit": (n as i64 + 2) * GIB, "service_ids": [service],
                   "data_limit_reset_strategy": "month"}),
        );
        let id = user["id"].as_i64().unwrap();
        let mut used = 0;
        for h in 0..12 {
            let up = (n as i64 + 1) * (h % 5 + 1) * 7_000_000;
            let down = up * 4;
            used += up + down;
            p.execute(
                "INSERT INTO usage_hourly (user_id, hour, uplink, downlink) VALUES ($1, $2, $3, $4)",
                &[id, hour - h * 3600, up, down],
            );
        }
        p.execute(
            "UPDATE users SET used_traffic = $1, lifetime_used_traffic = $1 WHERE id = $2",
            &[used, id],
        );
        if n == 0 {
            // The first user was online a minute ago.
            p.execute(
                "UPDATE users SET online_at = $1 WHERE id = $2",
                &[now - 60, id],
            );
        }
    }
    service
}

#[test]
fn sudo_admin_creates_edits_disables_and_deletes_a_user() {
    let p = TestPanel::start(Backend::Sqlite);
    let token = p.admin_token();
    seed(&p, &token, &["bulk_one", "bulk_two"]);
    let b = Browser::start("sudo");
    let base = p.base.clone();

    b.step(
        "root redirects to the dashboard and shows the login",
        |c| async move {
            c.goto(&format!("{base}/")).await?;
            until(&c, "location.pathname === '/dashboard/'").await?;
            until(&c, "document.querySelector('form.login') !== null").await
        },
    );
    let base = p.base.clone();
    b.step("log in and see the overview", |c| async move {
        login(&c, &base, ADMIN, ADMIN_PASSWORD).await?;
        until(
            &c,
            "document.querySelector('[data-test=total-users] .tile-value')?.textContent === '2'",
        )
        .await
    });
    let base = p.base.clone();
    b.step("create a user, with inline validation first", |c| async move {
        goto_page(&c, &base, "users", "[data-test=new-user]").await?;
        click(&c, "[data-test=new-user]").await?;
        fill(&c, "dialog input[name=username]", "a!").await?;
        click(&c, "dialog [data-test=save]").await?;
        let error = text_of(&c, "dialog .field-error").await?;
        if !error.contains("3 to 32") {
            return fail(format!("no inline error for a bad name (got {error:?})"));
        }
        fill(&c, "dialog input[name=username]", "alice_ui").await?;
        fill(&c, "dialog input[name=data_limit]", "5").await?;
        choose(&c, "dialog select[name=expire_strategy]", "fixed_date").await?;
        click(&c, "dialog [data-test=save]").await?;
        // fixed_date needs a date: the dialog says so instead of sending.
        until(&c, "document.querySelector('dialog input[name=expire_date]').getAttribute('aria-invalid') === 'true'").await?;
        choose(&c, "dialog select[name=expire_strategy]", "never").await?;
        click(&c, "dialog input[name=service]").await?;
        click(&c, "dialog [data-test=save]").await?;
        until(&c, "document.querySelector('tr[data-user=alice_ui]') !== null").await?;
        until(&c, "document.querySelector('dialog') === null").await
    });
    let created = p.get(&token, "/api/users/alice_ui").ok();
    assert_eq!(created["data_limit"], 5 * GIB);
    assert_eq!(created["service_ids"].as_array().unwrap().len(), 1);
    let key = created["key"].as_str().unwrap().to_owned();

    let base = p.base.clone();
    b.step("see the QR code and copy the link", |c| async move {
        click(&c, "tr[data-user=alice_ui] td.name a").await?;
        until(&c, "document.querySelector('[data-test=qr] svg') !== null").await?;
        let url = c
            .find(Locator::Css("[data-test=sub-url]"))
            .await?
            .prop("value")
            .await?
            .unwrap_or_default();
        let expected = format!("{base}/sub/alice_ui/{key}");
        if url != expected {
            return fail(format!("subscription URL {url:?}, expected {expected:?}"));
        }
        click(&c, "[data-test=copy-link]").await?;
        until(
            &c,
            "[...document.querySelectorAll('.toast')].some(t => t.textContent === 'Copied.')",
        )
        .await?;
        // Paste the clipboard into the search box of the users page.
        goto_page(&c, &base, "users", "[data-test=search]").await?;
        let search = c.find(Locator::Css("[data-test=search]")).await?;
        search.click().await?;
        search
            .send_keys(&format!("{}v", char::from(Key::Control)))
            .await?;
        let pasted = search.prop("value").await?.unwrap_or_default();
        if pasted != expected {
            return fail(format!("clipboard held {pasted:?}, expected {expected:?}"));
        }
        // Empty the search again (typed, so the page sees it).
        let (ctrl, backspace) = (char::from(Key::Control), char::from(Key::Backspace));
        search
            .send_keys(&format!("{ctrl}a{ctrl}{backspace}"))
            .await?;
        until(
            &c,
            "document.querySelector('tr[data-user=alice_ui]') !== null",
        )
        .await
    });
    // The pasted link is a working subscription.
    let sub = p.call(
        "GET",
        &format!("/sub/alice_ui/{}/links", created["key"].as_str().unwrap()),
        None,
        None,
    );
    assert_eq!(sub.status, 200, "{sub:?}");
    assert!(sub.text.starts_with("ss://"), "{}", sub.text);

    let base = p.base.clone();
    b.step("change the data limit", |c| async move {
        goto_page(&c, &base, "users/alice_ui", "[data-test=edit]").await?;
        click(&c, "[data-test=edit]").await?;
        fill(&c, "dialog input[name=data_limit]", "10").await?;
        click(&c, "dialog [data-test=save]").await?;
        until(&c, "document.querySelector('dialog') === null").await?;
        until(
            &c,
            "document.querySelector('.facts .usage-text')?.textContent.includes('/ 10 GB')",
        )
        .await
    });
    assert_eq!(
        p.get(&token, "/api/users/alice_ui").ok()["data_limit"],
        10 * GIB
    );

    b.step(
        "disable the user and see the status change",
        |c| async move {
            until(
                &c,
                "document.querySelector('.facts [data-status]')?.dataset.status === 'active'",
            )
            .await?;
            click(&c, "[data-test=disable]").await?;
            until(
                &c,
                "document.querySelector('.facts [data-status]')?.dataset.status === 'disabled'",
            )
            .await?;
            // The action button turned into its opposite.
            until(&c, "document.querySelector('[data-test=enable]') !== null").await
        },
    );
    let disabled = p.get(&token, "/api/users/alice_ui").ok();
    assert_eq!(
        (disabled["enabled"].clone(), disabled["status"].clone()),
        (json!(false), json!("disabled"))
    );

    b.step("delete the user", |c| async move {
        click(&c, "[data-test=delete]").await?;
        click(&c, "dialog [data-test=confirm]").await?;
        until(&c, "location.hash === '#/users'").await?;
        until(
            &c,
            "document.querySelector('tr[data-user=bulk_one]') !== null",
        )
        .await?;
        until(
            &c,
            "document.querySelector('tr[data-user=alice_ui]') === null",
        )
        .await
    });
    assert_eq!(p.get(&token, "/api/users/alice_ui").status, 404);

    b.step("bulk disable, filter by status, search", |c| async move {
        click(&c, "tr[data-user=bulk_one] input.row-select").await?;
        click(&c, "tr[data-user=bulk_two] input.row-select").await?;
        click(&c, "[data-test=bulk-disable]").await?;
        click(&c, "dialog [data-test=confirm]").await?;
        until(&c, "[...document.querySelectorAll('tr[data-user] [data-status]')].every(b => b.dataset.status === 'disabled')").await?;
        choose(&c, "[data-test=status-filter]", "active").await?;
        until(&c, "document.querySelector('tr[data-user]') === null").await?;
        choose(&c, "[data-test=status-filter]", "").await?;
        fill(&c, "[data-test=search]", "two").await?;
        until(&c, "document.querySelectorAll('tr[data-user]').length === 1 && document.querySelector('tr[data-user=bulk_two]') !== null").await
    });
    for name in ["bulk_one", "bulk_two"] {
        assert_eq!(
            p.get(&token, &format!("/api/users/{name}")).ok()["status"],
            "disabled"
        );
    }

    b.step("log out", |c| async move {
        click(&c, "[data-test=logout]").await?;
        until(&c, "document.querySelector('form.login') !== null").await?;
        until(&c, "localStorage.getItem('mz.token') === null").await
    });
}

/// Buttons a read-only admin may see (and any `copy-*`, `range-*` or `sort-*` one): none of them changes
/// anything.
const HARMLESS: &str = "['logout', 'theme', 'prev', 'next', 'copy-link', 'raw-json']";

#[test]
fn read_only_admin_finds_no_control_that_changes_anything() {
    let p = TestPanel::start(Backend::Sqlite);
    let token = p.admin_token();
    seed(&p, &token, &["watched"]);
    p.post(
        &token,
        "/api/admins",
        json!({"username": "viewer", "password": "viewer-password-1", "is_sudo": true, "read_only": true}),
    )
    .ok();
    p.put(
        &token,
        "/api/webhook",
        json!({"url": "https://hooks.example.com/ro", "secret": "viewer-can-not-see-this-Ro42"}),
    )
    .ok();
    let b = Browser::start("read_only");
    let base = p.base.clone();
    b.step("every page shows no changing control", |c| async move {
        login(&c, &base, "viewer", "viewer-password-1").await?;
        // A read-only sudo admin sees the webhook settings, masked, without a form (the loop
        // below checks that no page has one).
        goto_page(&c, &base, "settings", "[data-test=webhooks]").await?;
        let hint = text_of(&c, "[data-test=webhook-secret]").await?;
        if hint != "…Ro42" || js(&c, &secret_shown("viewer-can-not-see-this")).await? != json!(false) {
            return fail(format!("webhook secret shown as {hint:?}"));
        }
        until(&c, "document.querySelector('[data-test=read-only]') !== null").await?;
        for (hash, ready) in every_page("watched") {
            goto_page(&c, &base, &hash, &ready).await?;
            let found = js(
                &c,
                &format!(
                    "[...document.querySelectorAll('button, form, input[type=checkbox], textarea, dialog')]\
                     .filter(e => !(e.tagName === 'BUTTON' && (({HARMLESS}).includes(e.dataset.test) \
                       || /^(copy|range|sort)-/.test(e.dataset.test || ''))))\
                     .map(e => e.tagName + ' ' + (e.dataset.test || e.textContent || e.name))"
                ),
            )
            .await?;
            if found.as_array().is_none_or(|a| !a.is_empty()) {
                return fail(format!("#/{hash} offers a read-only admin: {found}"));
            }
        }
        Ok(())
    });
    // The API agrees: the viewer may not change anything.
    let viewer = p.token("viewer", "viewer-password-1");
    assert_eq!(
        p.post(&viewer, "/api/users/watched/disable", json!({}))
            .status,
        403
    );
}

#[test]
fn login_shows_the_apis_errors_and_throttling() {
    let p = TestPanel::start(Backend::Sqlite);
    let b = Browser::start("login_errors");
    let base = p.base.clone();
    b.step("wrong passwords, then throttled", |c| async move {
        c.goto(&format!("{base}/dashboard/")).await?;
        for _ in 0..5 {
            fill(&c, "input[name=username]", ADMIN).await?;
            fill(&c, "input[name=password]", "wrong-password").await?;
            click(&c, "form.login button[type=submit]").await?;
            until(&c, "document.querySelector('[data-test=login-message]').textContent.includes('incorrect username or password')").await?;
            js(&c, "document.querySelector('[data-test=login-message]').textContent = ''").await?;
        }
        fill(&c, "input[name=password]", ADMIN_PASSWORD).await?;
        click(&c, "form.login button[type=submit]").await?;
        until(&c, "document.querySelector('[data-test=login-message]').textContent.includes('Too many failed logins')").await?;
        let message = text_of(&c, "[data-test=login-message]").await?;
        if !message.contains("try again in") {
            return fail(format!("the throttling message lacks the API's detail: {message:?}"));
        }
        Ok(())
    });
}

#[test]
fn expired_session_returns_to_the_login_with_a_message() {
    let p = TestPanel::start(Backend::Sqlite);
    let b = Browser::start("expiry");
    let base = p.base.clone();
    b.step("a token the API refuses ends the session", |c| async move {
        login(&c, &base, ADMIN, ADMIN_PASSWORD).await?;
        // What an expired (or revoked) token looks like to the dashboard: the API answers 401.
        js(
            &c,
            "localStorage.setItem('mz.token', 'x.eyJleHAiOjQxMDI0NDQ4MDB9.y'), true",
        )
        .await?;
        c.goto(&format!("{base}/dashboard/#/users")).await?;
        until(&c, "document.querySelector('form.login') !== null").await?;
        let message = text_of(&c, "[data-test=login-message]").await?;
        if !message.contains("session expired") {
            return fail(format!("no expiry message: {message:?}"));
        }
        Ok(())
    });
    let base = p.base.clone();
    b.step("a token past its expiry ends the session without asking the API", |c| async move {
        login(&c, &base, ADMIN, ADMIN_PASSWORD).await?;
        js(&c, "localStorage.setItem('mz.token', 'x.eyJleHAiOjEwMDB9.y'), true").await?;
        c.refresh().await?;
        until(&c, "document.querySelector('[data-test=login-message]')?.textContent.includes('session expired')").await
    });
}

#[test]
fn phone_and_persian_render_without_overflow_and_screenshots() {
    let p = TestPanel::start(Backend::Sqlite);
    let token = p.admin_token();
    seed(&p, &token, &["sara", "reza_m", "mina", "ali_k"]);
    p.put(&token, "/api/users/mina", json!({"enabled": false}))
        .ok();
    let b = Browser::start("layout");
    let base = p.base.clone();
    b.step("desktop, English, light", |c| async move {
        login(&c, &base, ADMIN, ADMIN_PASSWORD).await?;
        js(&c, "localStorage.setItem('mz.theme', 'light'), localStorage.setItem('mz.locale', 'en'), true").await?;
        c.refresh().await?;
        goto_page(&c, &base, "overview", "[data-test=total-users]").await?;
        until(&c, "document.querySelectorAll('.chart rect').length > 0").await?;
        // Per-user traffic over time, and who is online (the first seeded user).
        until(
            &c,
            "document.querySelectorAll('.top-users li').length === 4 \
             && [...document.querySelectorAll('.top-users li')].every(li => li.querySelectorAll('.spark rect').length === 12) \
             && document.querySelectorAll('.top-users .online').length === 1 \
             && document.querySelector('[data-test=online-users] .tile-value').textContent === '1'",
        )
        .await?;
        no_horizontal_overflow(&c, "overview").await?;
        document(&c, "desktop-light-en-overview").await?;
        goto_page(&c, &base, "settings", "[data-test=subscription-form]").await?;
        document(&c, "desktop-light-en-settings").await?;
        goto_page(&c, &base, "users", "tr[data-user=sara]").await?;
        // Sorting: oldest first from the menu, then by name from the column header.
        let order = "[...document.querySelectorAll('tr[data-user]')].map(r => r.dataset.user).join()";
        choose(&c, "[data-test=order]", "created_asc").await?;
        until(&c, &format!("{order} === 'sara,reza_m,mina,ali_k'")).await?;
        click(&c, "[data-test=sort-username]").await?;
        until(&c, &format!("{order} === 'ali_k,mina,reza_m,sara'")).await?;
        until(&c, "document.querySelector('[data-test=order]').value === 'username'").await?;
        document(&c, "desktop-light-en-users").await?;
        goto_page(&c, &base, "users/sara", "[data-test=qr] svg").await?;
        document(&c, "desktop-light-en-user").await?;
        // The seeded usage spans 12 hours: 12 bars over 24 hours (hours on the axis), the
        // same 12 over 7 days (days on the axis).
        until(&c, "document.querySelectorAll('.chart g').length === 12").await?;
        click(&c, "[data-test=range-168]").await?;
        until(&c, "document.querySelectorAll('.chart g').length === 12 && !document.querySelector('.chart .tick').textContent.includes(':')").await
    });
    let base = p.base.clone();
    b.step("Persian is right to left and remembered; dark theme toggles", |c| async move {
        choose(&c, "[data-test=locale]", "fa").await?;
        until(&c, "document.documentElement.dir === 'rtl' && document.documentElement.lang === 'fa'").await?;
        click(&c, "[data-test=theme]").await?;
        until(&c, "document.documentElement.dataset.theme === 'dark'").await?;
        c.refresh().await?;
        until(&c, "document.documentElement.dir === 'rtl' && document.documentElement.dataset.theme === 'dark'").await?;
        until(&c, "document.querySelector('.nav a')?.textContent === 'نمای کلی'").await?;
        goto_page(&c, &base, "users", "tr[data-user=sara]").await?;
        no_horizontal_overflow(&c, "users, Persian, desktop").await?;
        document(&c, "desktop-dark-fa-users").await
    });
    b.step("the window is a 375 px phone", |c| async move {
        c.set_window_size(PHONE.0, PHONE.1).await?;
        let width = js(&c, "window.innerWidth").await?;
        if width != PHONE.0 {
            return fail(format!("innerWidth is {width}, wanted {}", PHONE.0));
        }
        Ok(())
    });
    for locale in ["fa", "en"] {
        let base = p.base.clone();
        b.step(
            &format!("every page at 375 px in {locale}"),
            |c| async move {
                js(
                    &c,
                    &format!("localStorage.setItem('mz.locale', '{locale}'), true"),
                )
                .await?;
                c.refresh().await?;
                for (hash, ready) in every_page("sara") {
                    goto_page(&c, &base, &hash, &ready).await?;
                    no_horizontal_overflow(&c, &format!("#/{hash} at 375 px in {locale}")).await?;
                }
                goto_page(&c, &base, "users", "[data-test=new-user]").await?;
                click(&c, "[data-test=new-user]").await?;
                choose(
                    &c,
                    "dialog select[name=expire_strategy]",
                    "start_on_first_use",
                )
                .await?;
                no_horizontal_overflow(&c, &format!("the user dialog at 375 px in {locale}"))
                    .await?;
                js(&c, "document.querySelector('dialog').close(), true").await?;
                Ok(())
            },
        );
    }
    let base = p.base.clone();
    b.step("phone screenshots", |c| async move {
        js(&c, "localStorage.setItem('mz.locale', 'fa'), localStorage.setItem('mz.theme', 'light'), true").await?;
        c.refresh().await?;
        goto_page(&c, &base, "users", "tr[data-user=sara]").await?;
        document(&c, "phone-light-fa-users").await?;
        goto_page(&c, &base, "overview", "[data-test=engine]").await?;
        // The cards below the tiles: the traffic chart and the engine.
        js(&c, "document.querySelector('[data-test=traffic]').scrollIntoView(), true").await?;
        document(&c, "phone-light-fa-overview").await?;
        js(&c, "localStorage.setItem('mz.locale', 'en'), localStorage.setItem('mz.theme', 'dark'), true").await?;
        c.refresh().await?;
        goto_page(&c, &base, "users/sara", "[data-test=qr] svg").await?;
        document(&c, "phone-dark-en-user").await
    });
}

#[test]
fn sudo_admin_manages_inbounds_hosts_services_and_admins() {
    let p = TestPanel::start(Backend::Sqlite);
    let token = p.admin_token();
    let port = panel::free_port();
    let b = Browser::start("sudo_pages");
    let base = p.base.clone();
    b.step("create a Shadowsocks inbound through its form", |c| async move {
        login(&c, &base, ADMIN, ADMIN_PASSWORD).await?;
        goto_page(&c, &base, "inbounds", "[data-test=new-inbound]").await?;
        click(&c, "[data-test=new-inbound]").await?;
        fill(&c, "dialog input[name=tag]", "ss_ui").await?;
        fill(&c, "dialog input[name=listen]", &format!("127.0.0.1:{port}")).await?;
        choose(&c, "dialog select[name=method]", "2022-blake3-aes-128-gcm").await?;
        // A 2022 AES method offers the server key; a wrong one is the API's error, inline.
        fill(&c, "dialog input[name=psk]", "not-base64").await?;
        click(&c, "dialog button[type=submit]").await?;
        until(&c, "document.querySelector('dialog input[name=psk]')?.getAttribute('aria-invalid') === 'true'").await?;
        fill(&c, "dialog input[name=psk]", "AAAAAAAAAAAAAAAAAAAAAA==").await?;
        click(&c, "dialog button[type=submit]").await?;
        until(&c, "document.querySelector('[data-inbound=ss_ui]') !== null").await
    });
    let inbounds = p.get(&token, "/api/inbounds").ok();
    let inbound = &inbounds[0];
    assert_eq!(
        inbound["config"]["settings"]["method"],
        "2022-blake3-aes-128-gcm"
    );
    assert_eq!(inbound["config"]["listen"], format!("127.0.0.1:{port}"));
    let inbound_id = inbound["id"].as_i64().unwrap();

    let base = p.base.clone();
    b.step("change it through the raw JSON view", |c| async move {
        click(&c, "[data-inbound=ss_ui] [data-test=edit]").await?;
        click(&c, "dialog [data-test=raw-json]").await?;
        fill(&c, "dialog textarea[name=config]", "{").await?;
        until(
            &c,
            "document.querySelector('dialog textarea').getAttribute('aria-invalid') === 'true'",
        )
        .await?;
        let config = json!({"tag": "ss_ui", "listen": format!("127.0.0.1:{port}"),
                            "protocol": "shadowsocks", "settings": {"method": "aes-128-gcm"}});
        fill(&c, "dialog textarea[name=config]", &config.to_string()).await?;
        click(&c, "dialog button[type=submit]").await?;
        until(&c, "document.querySelector('dialog') === null").await?;
        goto_page(&c, &base, "inbounds", "[data-inbound=ss_ui]").await
    });
    assert_eq!(
        p.get(&token, &format!("/api/inbounds/{inbound_id}")).ok()["config"]["settings"]["method"],
        "aes-128-gcm"
    );

    b.step("add a host to it", |c| async move {
        click(&c, "[data-inbound=ss_ui] [data-test=new-host]").await?;
        fill(&c, "dialog input[name=address]", "127.0.0.1").await?;
        fill(&c, "dialog input[name=port]", "70000").await?;
        click(&c, "dialog button[type=submit]").await?;
        until(&c, "document.querySelector('dialog input[name=port]')?.getAttribute('aria-invalid') === 'true'").await?;
        fill(&c, "dialog input[name=port]", "8443").await?;
        fill(&c, "dialog input[name=remark]", "home {USERNAME}").await?;
        click(&c, "dialog button[type=submit]").await?;
        until(&c, "document.querySelector('[data-inbound=ss_ui] .hosts')?.textContent.includes('127.0.0.1:8443')").await
    });
    let hosts = p
        .get(&token, &format!("/api/inbounds/{inbound_id}/hosts"))
        .ok();
    assert_eq!(hosts[0]["remark"], "home {USERNAME}");
    assert_eq!(hosts[0]["port"], 8443);

    let base = p.base.clone();
    b.step("create a service with the inbound", |c| async move {
        goto_page(&c, &base, "services", "[data-test=new-service]").await?;
        click(&c, "[data-test=new-service]").await?;
        fill(&c, "dialog input[name=name]", "svc_ui").await?;
        click(&c, "dialog input[type=checkbox]").await?;
        click(&c, "dialog button[type=submit]").await?;
        until(
            &c,
            "[...document.querySelectorAll('.card h2')].some(h => h.textContent === 'svc_ui')",
        )
        .await
    });
    let services = p.get(&token, "/api/services").ok();
    assert_eq!(services[0]["inbound_ids"], json!([inbound_id]));

    let base = p.base.clone();
    b.step("create a read-only admin", |c| async move {
        goto_page(&c, &base, "admins", "[data-test=new-admin]").await?;
        click(&c, "[data-test=new-admin]").await?;
        fill(&c, "dialog input[name=username]", "helper_ui").await?;
        fill(&c, "dialog input[name=password]", "short").await?;
        click(&c, "dialog button[type=submit]").await?;
        until(&c, "document.querySelector('dialog input[name=password]').getAttribute('aria-invalid') === 'true'").await?;
        fill(&c, "dialog input[name=password]", "helper-password-1").await?;
        click(&c, "dialog input[name=read_only]").await?;
        click(&c, "dialog button[type=submit]").await?;
        until(&c, "[...document.querySelectorAll('.card')].some(c => c.textContent.includes('helper_ui') && c.textContent.includes('Read-only'))").await
    });
    let helper = p.token("helper_ui", "helper-password-1");
    let me = p.get(&helper, "/api/admins/current").ok();
    assert_eq!(
        (me["read_only"].clone(), me["is_sudo"].clone()),
        (json!(true), json!(false))
    );
}

/// The secret typed into the webhook form in `sudo_admin_sets_webhooks_others_do_not_see_them`.
const WEBHOOK_SECRET: &str = "a-long-random-secret-W3bh";

/// Whether `secret` shows anywhere on the page: its text, its HTML, or an input's value.
#[test]
fn sudo_admin_creates_a_hysteria2_inbound_through_its_form() {
    let p = TestPanel::start(Backend::Sqlite);
    let token = p.admin_token();
    let port = panel::free_port();
    let b = Browser::start("hysteria2_form");
    let base = p.base.clone();
    b.step(
        "create a Hysteria2 inbound through its form",
        |c| async move {
            login(&c, &base, ADMIN, ADMIN_PASSWORD).await?;
            goto_page(&c, &base, "inbounds", "[data-test=new-inbound]").await?;
            click(&c, "[data-test=new-inbound]").await?;
            fill(&c, "dialog input[name=tag]", "hy2_ui").await?;
            fill(
                &c,
                "dialog input[name=listen]",
                &format!("127.0.0.1:{port}"),
            )
            .await?;
            choose(&c, "dialog select[name=protocol]", "hysteria2").await?;
            // TLS is required: no "none" choice; self-signed is the default, certificate files
            // are offered.
            until(
                &c,
                "document.querySelector('dialog select[name=tls] option[value=tls_none]') === null",
            )
            .await?;
            choose(&c, "dialog select[name=tls]", "tls_files").await?;
            until(
                &c,
                "document.querySelector('dialog input[name=certificate]') !== null",
            )
            .await?;
            choose(&c, "dialog select[name=tls]", "tls_self_signed").await?;
            fill(&c, "dialog input[name=server_names]", "hy2.example.com").await?;
            fill(&c, "dialog input[name=obfs_password]", "salamander-secret").await?;
            choose(&c, "dialog select[name=masquerade]", "masq_proxy").await?;
            fill(
                &c,
                "dialog input[name=masquerade_address]",
                "127.0.0.1:8080",
            )
            .await?;
            fill(&c, "dialog input[name=masquerade_host]", "www.example.com").await?;
            choose(&c, "dialog select[name=masquerade]", "masq_file").await?;
            fill(&c, "dialog input[name=masquerade_dir]", "/var/www/site").await?;
            choose(&c, "dialog select[name=masquerade]", "masq_string").await?;
            fill(&c, "dialog input[name=masquerade_status]", "200").await?;
            fill(&c, "dialog input[name=masquerade_content]", "hello").await?;
            fill(&c, "dialog input[name=up_mbps]", "100").await?;
            fill(&c, "dialog input[name=down_mbps]", "50").await?;
            click(&c, "dialog input[name=ignore_client_bandwidth]").await?;
            click(&c, "dialog button[type=submit]").await?;
            until(
                &c,
                "document.querySelector('[data-inbound=hy2_ui]') !== null",
            )
            .await
        },
    );
    let inbounds = p.get(&token, "/api/inbounds").ok();
    let config = &inbounds[0]["config"];
    assert_eq!(config["protocol"], "hysteria2");
    assert_eq!(config["listen"], format!("127.0.0.1:{port}"));
    assert_eq!(config["tls"], json!({"self_signed": ["hy2.example.com"]}));
    let settings = &config["settings"];
    assert_eq!(
        settings["obfs"],
        json!({"type": "salamander", "password": "salamander-secret"})
    );
    let masquerade = &settings["masquerade"];
    assert_eq!(
        (
            &masquerade["type"],
            &masquerade["status_code"],
            &masquerade["content"]
        ),
        (&json!("string"), &json!(200), &json!("hello"))
    );
    assert_eq!(settings["up_mbps"], 100);
    assert_eq!(settings["down_mbps"], 50);
    assert_eq!(settings["ignore_client_bandwidth"], true);
}

fn secret_shown(secret: &str) -> String {
    format!(
        "document.documentElement.outerHTML.includes('{secret}') \
         || [...document.querySelectorAll('input')].some(i => i.value.includes('{secret}'))"
    )
}

/// Saves the webhook form, waits until the fact `test` reads `shown`, and checks that the
/// secret typed is nowhere on the page afterwards.
async fn save_webhook(c: &Client, test: &str, shown: &str) -> Result {
    click(c, "[data-test=save-webhook]").await?;
    until(
        c,
        &format!("document.querySelector('[data-test={test}]')?.textContent === {shown:?}"),
    )
    .await?;
    until(c, &format!("!({})", secret_shown(WEBHOOK_SECRET))).await
}

/// Logs out (the session ends) and logs in as another admin.
async fn relogin(c: &Client, base: &str, username: &str, password: &str) -> Result {
    click(c, "[data-test=logout]").await?;
    until(c, "document.querySelector('form.login') !== null").await?;
    login(c, base, username, password).await
}

#[test]
fn sudo_admin_sets_webhooks_others_do_not_see_them() {
    let p = TestPanel::start(Backend::Sqlite);
    let token = p.admin_token();
    let plain = p.new_admin(
        &token,
        json!({"username": "plain", "password": "plain-password-1", "is_sudo": false}),
    );
    p.new_admin(
        &token,
        json!({"username": "plain_ro", "password": "plain-password-2", "is_sudo": false, "read_only": true}),
    );
    let b = Browser::start("webhooks");
    let base = p.base.clone();
    b.step("webhooks are off at first", |c| async move {
        login(&c, &base, ADMIN, ADMIN_PASSWORD).await?;
        goto_page(&c, &base, "settings", "[data-test=webhook-form]").await?;
        let (url, secret) = (
            text_of(&c, "[data-test=webhook-url]").await?,
            text_of(&c, "[data-test=webhook-secret]").await?,
        );
        if (url.as_str(), secret.as_str()) != ("Off", "Not set") {
            return fail(format!("url {url:?}, secret {secret:?}"));
        }
        Ok(())
    });

    b.step("bad values are refused inline", |c| async move {
        fill(&c, "input[name=url]", "ftp://hooks.example.com/x").await?;
        fill(&c, "input[name=secret]", "too-short").await?;
        fill(&c, "input[name=thresholds]", "50, 150").await?;
        click(&c, "[data-test=save-webhook]").await?;
        for name in ["url", "secret", "thresholds"] {
            until(
                &c,
                &format!("document.querySelector('input[name={name}]').getAttribute('aria-invalid') === 'true'"),
            )
            .await?;
        }
        // A URL needs a secret while none is stored.
        fill(&c, "input[name=url]", "https://hooks.example.com/mz?token=abc").await?;
        fill(&c, "input[name=secret]", "").await?;
        fill(&c, "input[name=thresholds]", "90, 50").await?;
        click(&c, "[data-test=save-webhook]").await?;
        until(
            &c,
            "document.querySelector('input[name=secret]').closest('.field').querySelector('.field-error').textContent === 'Required with a URL.' \
             && document.querySelector('input[name=url]').getAttribute('aria-invalid') === 'false' \
             && document.querySelector('input[name=thresholds]').getAttribute('aria-invalid') === 'false'",
        )
        .await
    });
    // Nothing reached the API.
    let stored = p.get(&token, "/api/webhook").ok();
    assert_eq!(
        (stored["url"].clone(), stored["secret_set"].clone()),
        (Value::Null, json!(false)),
        "{stored}"
    );

    b.step("set URL, secret and thresholds", |c| async move {
        fill(&c, "input[name=secret]", WEBHOOK_SECRET).await?;
        save_webhook(&c, "webhook-secret", "…W3bh").await
    });
    let stored = p.get(&token, "/api/webhook").ok();
    assert_eq!(stored["url"], "https://hooks.example.com/mz?token=abc");
    assert_eq!(stored["secret_set"], true);
    assert_eq!(stored["secret_hint"], "…W3bh");
    assert_eq!(stored["thresholds"], json!([50, 90]));
    assert!(!stored.to_string().contains(WEBHOOK_SECRET));

    let base = p.base.clone();
    b.step(
        "an empty secret keeps the stored one; the page shows it masked",
        |c| async move {
            goto_page(&c, &base, "settings", "[data-test=webhook-form]").await?;
            until(
                &c,
                "document.querySelector('[data-test=webhook-thresholds]').textContent === '50%, 90%' \
                 && document.querySelector('input[name=url]').value === 'https://hooks.example.com/mz?token=abc' \
                 && document.querySelector('input[name=secret]').placeholder.includes('…W3bh')",
            )
            .await?;
            fill(&c, "input[name=thresholds]", "75").await?;
            save_webhook(&c, "webhook-thresholds", "75%").await
        },
    );
    let stored = p.get(&token, "/api/webhook").ok();
    assert_eq!(stored["thresholds"], json!([75]));
    assert_eq!(
        (stored["secret_set"].clone(), stored["secret_hint"].clone()),
        (json!(true), json!("…W3bh"))
    );

    for (name, password) in [
        ("plain", "plain-password-1"),
        ("plain_ro", "plain-password-2"),
    ] {
        let base = p.base.clone();
        b.step(&format!("{name} sees no webhooks"), |c| async move {
            relogin(&c, &base, name, password).await?;
            goto_page(&c, &base, "settings", "select").await?;
            let shown = js(
                &c,
                "document.querySelector('[data-test=webhooks]') !== null \
                 || document.body.textContent.includes('Webhooks') \
                 || document.body.textContent.includes('hooks.example.com')",
            )
            .await?;
            if shown != json!(false) {
                return fail(format!("{name} sees the webhook settings"));
            }
            Ok(())
        });
    }
    // The API agrees.
    assert_eq!(p.get(&plain, "/api/webhook").status, 403);
}

/// Two more admins: `viewer` (sudo, read-only; password `viewer-password-1`) and `plain` (not
/// sudo; `plain-password-1`).
fn viewer_and_plain(p: &TestPanel, token: &str) {
    p.new_admin(
        token,
        json!({"username": "viewer", "password": "viewer-password-1", "is_sudo": true, "read_only": true}),
    );
    p.new_admin(
        token,
        json!({"username": "plain", "password": "plain-password-1", "is_sudo": false}),
    );
}

/// A sudo admin edits the routing rules as JSON text: text that is not JSON is marked before
/// anything is sent, rules the API refuses show its message naming the field, saved rules show
/// in the summary and in the API. A read-only sudo admin sees them without a form; an admin
/// that is not sudo does not see them.
#[test]
fn sudo_admin_edits_routing_rules() {
    const ROUTING: &str = "/api/settings/routing";
    const ERROR: &str = "document.querySelector('textarea[name=routing]').closest('.field').querySelector('.field-error').textContent";
    let p = TestPanel::start(Backend::Sqlite);
    let token = p.admin_token();
    viewer_and_plain(&p, &token);
    let b = Browser::start("routing");
    let base = p.base.clone();
    b.step("no rules at first", |c| async move {
        login(&c, &base, ADMIN, ADMIN_PASSWORD).await?;
        goto_page(&c, &base, "settings", "[data-test=routing-form]").await?;
        let summary = text_of(&c, "[data-test=routing-summary]").await?;
        if summary != "Rules: 0 · anything else: allowed" {
            return fail(format!("summary {summary:?}"));
        }
        Ok(())
    });
    b.step("text that is not JSON is marked", |c| async move {
        fill(&c, "textarea[name=routing]", r#"{"rules": ["#).await?;
        click(&c, "[data-test=save-routing]").await?;
        until(
            &c,
            &format!("document.querySelector('textarea[name=routing]').getAttribute('aria-invalid') === 'true' && {ERROR}.startsWith('Not valid JSON')"),
        )
        .await
    });
    b.step("rules the API refuses name the field", |c| async move {
        fill(
            &c,
            "textarea[name=routing]",
            r#"{"rules": [{"action": "deny", "ports": [70000]}]}"#,
        )
        .await?;
        click(&c, "[data-test=save-routing]").await?;
        until(&c, &format!("{ERROR}.startsWith('rules[0].ports[0]: ')")).await
    });
    assert_eq!(p.get(&token, ROUTING).ok(), json!({"default": "allow"}));

    b.step("saved rules show in the summary", |c| async move {
        fill(
            &c,
            "textarea[name=routing]",
            r#"{"rules": [{"action": "allow", "users": ["alice"], "ports": [443]}], "default": "deny"}"#,
        )
        .await?;
        click(&c, "[data-test=save-routing]").await?;
        until(
            &c,
            "document.querySelector('[data-test=routing-summary]').textContent === 'Rules: 1 · anything else: denied'",
        )
        .await
    });
    assert_eq!(
        p.get(&token, ROUTING).ok(),
        json!({"rules": [{"action": "allow", "users": ["alice"], "ports": [443]}], "default": "deny"})
    );

    let base = p.base.clone();
    b.step("a read-only sudo admin sees them, without a form", |c| async move {
        relogin(&c, &base, "viewer", "viewer-password-1").await?;
        goto_page(&c, &base, "settings", "[data-test=routing-json]").await?;
        let shown = js(
            &c,
            "document.querySelector('[data-test=routing-form]') === null \
             && document.querySelector('[data-test=routing-json]').textContent.includes('\"alice\"')",
        )
        .await?;
        if shown != json!(true) {
            return fail("the read-only view is wrong");
        }
        Ok(())
    });
    let base = p.base.clone();
    b.step(
        "an admin that is not sudo does not see them",
        |c| async move {
            relogin(&c, &base, "plain", "plain-password-1").await?;
            goto_page(&c, &base, "settings", "select").await?;
            let shown = js(
                &c,
                "document.querySelector('[data-test=routing]') !== null \
             || document.body.textContent.includes('Routing rules')",
            )
            .await?;
            if shown != json!(false) {
                return fail("plain sees the routing rules");
            }
            Ok(())
        },
    );
}

/// The overview's engine card and traffic chart agree with the API: running, the workers,
/// one row per inbound, and as many bars as the panel-wide usage has hours.
async fn overview_cards(c: &Client, base: &str, engine: &Value, usage_hours: usize) -> Result {
    goto_page(c, base, "overview", "[data-test=engine]").await?;
    let workers = engine["workers"].as_i64().unwrap_or(-1);
    until(
        c,
        &format!(
            "document.querySelector('[data-test=engine-state]')?.dataset.running === 'true' \
             && document.querySelector('[data-test=engine-workers]')?.textContent === '{workers}' \
             && document.querySelector('[data-test=engine-uptime]')?.textContent.length > 0 \
             && document.querySelector('[data-test=engine-inbounds] tr[data-inbound=ss_main] [data-test=open]')?.textContent === '0'"
        ),
    )
    .await?;
    for range in [24, 168] {
        click(c, &format!("[data-test=traffic] [data-test=range-{range}]")).await?;
        until(
            c,
            &format!(
                "document.querySelector('[data-test=range-{range}]').getAttribute('aria-selected') === 'true' \
                 && document.querySelectorAll('[data-test=traffic] .chart g').length === {usage_hours}"
            ),
        )
        .await?;
    }
    Ok(())
}

#[test]
fn subscription_options_and_overview_cards_for_sudo_and_read_only_admins() {
    let p = TestPanel::start(Backend::Sqlite);
    let token = p.admin_token();
    seed(&p, &token, &["opt_one", "opt_two"]);
    viewer_and_plain(&p, &token);
    let engine = p.get(&token, "/api/system/engine").ok();
    let usage = p.get(&token, "/api/system/usage?hours=24").ok();
    let hours = usage.as_array().unwrap().len();
    assert_eq!(hours, 12, "the seeded hours: {usage}");
    let b = Browser::start("subscription_options");

    let base = p.base.clone();
    let running = engine.clone();
    b.step(
        "the overview shows the engine and the panel's traffic",
        |c| async move {
            login(&c, &base, ADMIN, ADMIN_PASSWORD).await?;
            overview_cards(&c, &base, &running, hours).await?;
            let scope = text_of(&c, "[data-test=traffic] p.muted").await?;
            if scope != "All users, hourly" {
                return fail(format!("traffic scope {scope:?}"));
            }
            Ok(())
        },
    );

    let base = p.base.clone();
    b.step("subscription options: defaults, then bad values refused inline", |c| async move {
        goto_page(&c, &base, "settings", "[data-test=subscription-form]").await?;
        let shown = (
            text_of(&c, "[data-test=profile-title]").await?,
            text_of(&c, "[data-test=update-interval]").await?,
            text_of(&c, "[data-test=support-url]").await?,
        );
        if shown != ("The user's name".into(), "every 12 hours".into(), "None".into()) {
            return fail(format!("defaults shown as {shown:?}"));
        }
        fill(&c, "input[name=profile_title]", &"x".repeat(129)).await?;
        fill(&c, "input[name=update_interval]", "0").await?;
        fill(&c, "input[name=support_url]", "ftp://help.example.com").await?;
        click(&c, "[data-test=save-subscription]").await?;
        for name in ["profile_title", "update_interval", "support_url"] {
            until(
                &c,
                &format!("document.querySelector('input[name={name}]').getAttribute('aria-invalid') === 'true'"),
            )
            .await?;
        }
        // Fixing one field clears its error as you type; the others stay marked.
        fill(&c, "input[name=update_interval]", "169").await?;
        fill(&c, "input[name=update_interval]", "6").await?;
        until(
            &c,
            "document.querySelector('input[name=update_interval]').getAttribute('aria-invalid') === 'false' \
             && document.querySelector('input[name=support_url]').getAttribute('aria-invalid') === 'true'",
        )
        .await
    });
    // Nothing reached the API.
    assert_eq!(
        p.get(&token, "/api/settings/subscription").ok(),
        json!({"profile_title": null, "update_interval": 12, "support_url": null})
    );

    b.step("set title, interval and support URL", |c| async move {
        fill(&c, "input[name=profile_title]", "Fast VPN · {USERNAME}").await?;
        fill(&c, "input[name=support_url]", "https://t.me/fastvpn_support").await?;
        click(&c, "[data-test=save-subscription]").await?;
        until(
            &c,
            "document.querySelector('[data-test=profile-title]')?.textContent === 'Fast VPN · {USERNAME}' \
             && document.querySelector('[data-test=update-interval]')?.textContent === 'every 6 hours' \
             && document.querySelector('[data-test=support-url]')?.textContent === 'https://t.me/fastvpn_support'",
        )
        .await
    });
    assert_eq!(
        p.get(&token, "/api/settings/subscription").ok(),
        json!({"profile_title": "Fast VPN · {USERNAME}", "update_interval": 6,
               "support_url": "https://t.me/fastvpn_support"})
    );
    // Subscriptions carry them.
    let user = p.get(&token, "/api/users/opt_one").ok();
    let sub = reqwest::blocking::get(format!(
        "{}/sub/opt_one/{}",
        p.base,
        user["key"].as_str().unwrap()
    ))
    .unwrap();
    assert_eq!(sub.headers()["profile-update-interval"], "6");
    assert_eq!(sub.headers()["support-url"], "https://t.me/fastvpn_support");

    let base = p.base.clone();
    b.step("an empty title goes back to the user's name", |c| async move {
        goto_page(&c, &base, "settings", "[data-test=subscription-form]").await?;
        until(&c, "document.querySelector('input[name=profile_title]').value === 'Fast VPN · {USERNAME}'").await?;
        fill(&c, "input[name=profile_title]", "").await?;
        click(&c, "[data-test=save-subscription]").await?;
        until(&c, "document.querySelector('[data-test=profile-title]')?.textContent === \"The user's name\"").await
    });
    assert_eq!(
        p.get(&token, "/api/settings/subscription").ok()["profile_title"],
        Value::Null
    );

    for (name, password, scope) in [
        ("viewer", "viewer-password-1", "All users, hourly"),
        ("plain", "plain-password-1", "Your users, hourly"),
    ] {
        let base = p.base.clone();
        let running = engine.clone();
        b.step(
            &format!("{name} sees the options and the overview, and no way to change them"),
            |c| async move {
                relogin(&c, &base, name, password).await?;
                goto_page(&c, &base, "settings", "[data-test=subscription-settings]").await?;
                until(
                    &c,
                    "document.querySelector('[data-test=update-interval]')?.textContent === 'every 6 hours' \
                     && document.querySelector('[data-test=support-url]')?.textContent === 'https://t.me/fastvpn_support'",
                )
                .await?;
                let controls = js(
                    &c,
                    "[...document.querySelectorAll('[data-test=subscription-settings] form, [data-test=subscription-settings] input, [data-test=subscription-settings] button')].length",
                )
                .await?;
                if controls != json!(0) {
                    return fail(format!("{name} has {controls} controls in the subscription options"));
                }
                // The viewer sees every user's traffic; the plain admin owns no users.
                let hours = if name == "viewer" { hours } else { 0 };
                overview_cards(&c, &base, &running, hours).await?;
                let shown = text_of(&c, "[data-test=traffic] p.muted").await?;
                if shown != scope {
                    return fail(format!("traffic scope {shown:?}, expected {scope:?}"));
                }
                Ok(())
            },
        );
    }
    // The API agrees.
    let viewer = p.token("viewer", "viewer-password-1");
    assert_eq!(
        p.put(
            &viewer,
            "/api/settings/subscription",
            json!({"update_interval": 1})
        )
        .status,
        403
    );
}

#[test]
fn dashboard_assets_are_served_with_their_types() {
    let p = TestPanel::start(Backend::Sqlite);
    let root = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/", p.base))
        .send()
        .unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/dashboard/");
    for (path, mime) in [
        ("/dashboard/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/api.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
    ] {
        let r = reqwest::blocking::get(format!("{}{path}", p.base)).unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(mime), "{path}: {ct}");
        let body = r.text().unwrap();
        // Code, not comments: the generated client's JSDoc quotes the API's field docs, which
        // may mention `https://` URLs.
        let code = body.lines().filter(|line| {
            let line = line.trim_start();
            !(line.starts_with("//") || line.starts_with("/*") || line.starts_with('*'))
        });
        for line in code {
            assert!(
                !line.contains("https://"),
                "{path} refers to another site: {line}"
            );
        }
    }
    let missing = reqwest::blocking::get(format!("{}/dashboard/nope.js", p.base)).unwrap();
    assert_eq!(missing.status(), 404);
    let qr = reqwest::blocking::Client::new()
        .post(format!("{}/dashboard/qr", p.base))
        .body("ss://example")
        .send()
        .unwrap();
    assert_eq!(qr.status(), 200);
    assert!(qr.text().unwrap().contains("<svg"));
}
