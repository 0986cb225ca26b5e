// The dashboard shell: session (token, expiry), the signed-in admin's permissions, theme and
// locale, navigation, and the login page. Pages live in users.js and pages.js.

import { Api, ApiError } from "./api.js";
import { t, setLocale, applyLocale, locale, LOCALES } from "./i18n.js";
import { h, select, toast } from "./ui.js";
import { usersPage, userPage } from "./users.js";
import { overviewPage, servicesPage, inboundsPage, adminsPage, settingsPage } from "./pages.js";

const TOKEN_KEY = "mz.token";
const THEME_KEY = "mz.theme";

/**
 * What every page gets: the API client, the signed-in admin and what they may do.
 * @typedef {Object} Session
 * @property {Api} api
 * @property {import("./api.js").Admin} me
 * @property {{users: boolean, sudo: boolean}} can users: create/change users; sudo: everything else
 * @property {() => void} rerender draw the current page again
 */

let expiryTimer = 0;
/** Why the last session ended, shown on the login page. */
let endReason = "";

const api = new Api({
  token: () => localStorage.getItem(TOKEN_KEY),
  onUnauthorized: () => endSession("session_expired"),
});

/** The `exp` claim of a JWT, Unix seconds, or 0. */
function tokenExpiry(token) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return Number(payload.exp) || 0;
  } catch {
    return 0;
  }
}

function endSession(reason) {
  if (!localStorage.getItem(TOKEN_KEY)) return;
  localStorage.removeItem(TOKEN_KEY);
  clearTimeout(expiryTimer);
  endReason = reason;
  navigate("#/login");
}

/** Goes to `hash` and draws it (once: a changed hash draws through `hashchange`). */
export function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function startSession(token) {
  localStorage.setItem(TOKEN_KEY, token);
  watchExpiry(token);
}

/** Ends the session when the token expires; false if it already has. */
function watchExpiry(token) {
  clearTimeout(expiryTimer);
  const exp = tokenExpiry(token);
  if (!exp) return true;
  const ms = exp * 1000 - Date.now();
  if (ms <= 0) {
    endSession("session_expired");
    return false;
  }
  // setTimeout holds at most 2^31-1 ms.
  expiryTimer = setTimeout(() => endSession("session_expired"), Math.min(ms, 2 ** 31 - 1));
  return true;
}

function theme() {
  return localStorage.getItem(THEME_KEY) ?? (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
}

export function setTheme(value) {
  localStorage.setItem(THEME_KEY, value);
  document.documentElement.dataset.theme = value;
}

function loginPage(root) {
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const message = h("div", { class: endReason ? "notice" : "", role: "alert", "data-test": "login-message", text: endReason ? t(endReason) : "" });
  const button = h("button", { class: "primary", type: "submit", text: t("login") });
  const form = h("form", { class: "card login", onsubmit: async (e) => {
    e.preventDefault();
    button.setAttribute("disabled", "");
    message.className = "";
    message.textContent = "";
    try {
      const token = await api.postAdminsToken({ username: username.value, password: password.value });
      endReason = "";
      startSession(token.access_token);
      navigate("#/overview");
    } catch (error) {
      message.className = "error";
      const detail = error instanceof ApiError ? error.message : String(error);
      message.textContent = error instanceof ApiError && error.status === 429 ? `${t("throttled")} ${detail}` : detail;
    } finally {
      button.removeAttribute("disabled");
    }
  } },
  h("h1", { text: t("brand") }),
  h("label", { class: "field" }, h("span", { class: "label", text: t("username") }), username),
  h("label", { class: "field" }, h("span", { class: "label", text: t("password") }), password),
  message,
  button,
  h("div", { class: "login-prefs" }, prefsControls()));
  root.replaceChildren(h("main", { class: "login-wrap" }, form));
  username.focus();
}

function prefsControls() {
  return [
    select(LOCALES.map((l) => l.code), locale(), { "aria-label": t("language"), "data-test": "locale", onchange: (e) => { setLocale(e.target.value); render(); } }, (c) => LOCALES.find((l) => l.code === c)?.name ?? c),
    h("button", { type: "button", class: "icon", "data-test": "theme", "aria-label": t("theme"), title: t(theme() === "dark" ? "light" : "dark"), text: theme() === "dark" ? "☀" : "☾", onclick: () => { setTheme(theme() === "dark" ? "light" : "dark"); render(); } }),
  ];
}

const ROUTES = [
  { path: "overview", page: overviewPage },
  { path: "users", page: usersPage },
  { path: "services", page: servicesPage },
  { path: "inbounds", page: inboundsPage },
  { path: "admins", page: adminsPage, sudo: true },
  { path: "settings", page: settingsPage },
];

/** @type {import("./api.js").Admin|null} */
let me = null;

async function render() {
  const root = /** @type {HTMLElement} */ (document.getElementById("app"));
  applyLocale();
  document.title = t("brand");
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) {
    me = null;
    loginPage(root);
    return;
  }
  if (!watchExpiry(token)) return;
  if (!me) {
    try {
      me = await api.getAdminsCurrent();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
      root.replaceChildren(h("p", { class: "error", text: String(error.message ?? error) }));
      return;
    }
  }
  const [path, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const route = ROUTES.find((r) => r.path === path && (!r.sudo || me?.is_sudo)) ?? ROUTES[0];
  /** @type {Session} */
  const session = {
    api,
    me,
    can: {
      users: !me.read_only && (me.is_sudo || me.modify_users_access),
      sudo: me.is_sudo && !me.read_only,
    },
    rerender: render,
  };
  const nav = h("nav", { class: "nav", "aria-label": t("menu") }, ROUTES.filter((r) => !r.sudo || me?.is_sudo).map((r) =>
    h("a", { href: `#/${r.path}`, class: r === route ? "current" : "", "aria-current": r === route ? "page" : false, text: t(r.path) })));
  const header = h("header", { class: "top" },
    h("a", { class: "brand", href: "#/overview", text: t("brand") }),
    h("div", { class: "top-tools" },
      prefsControls(),
      h("span", { class: "me", "data-test": "me", text: me.username }),
      h("button", { type: "button", "data-test": "logout", text: t("logout"), onclick: () => { endReason = "logged_out"; endSession("logged_out"); } })));
  const main = h("main", { class: "content" });
  if (me.read_only) main.append(h("p", { class: "notice", "data-test": "read-only", text: t("read_only_note") }));
  const page = h("div", { class: "page" }, h("p", { class: "muted", text: t("loading") }));
  main.append(page);
  root.replaceChildren(header, nav, main);
  try {
    if (route.path === "users" && rest.length && rest[0]) await userPage(page, session, decodeURIComponent(rest[0]));
    else await route.page(page, session);
    // Drawn: tests wait for this.
    page.dataset.ready = [route.path, ...rest].join("/");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) page.replaceChildren(h("p", { class: "error", role: "alert", text: String(error.message ?? error) }));
  }
}

window.addEventListener("hashchange", render);
window.addEventListener("storage", (e) => {
  if (e.key === TOKEN_KEY) {
    me = null;
    render();
  }
});
document.documentElement.dataset.theme = theme();
render().catch((e) => toast(String(e), "error"));
