// Users: the table (search, status filter, sort, pages, bulk actions), the create/edit dialog
// and the user page (usage chart, subscription link, QR code).

import { ApiError, UserStatusValues, UserOrderValues, ResetStrategyValues, ExpireStrategyValues, SubscriptionFormatValues } from "./api.js";
import { t, bytes, date, num } from "./i18n.js";
import { h, modal, confirmDialog, toast, showError, field, setFieldError, select, badge, usageBar, usageChart, onlineDot, qrCode, copyText, fromLocalInput, toLocalInput } from "./ui.js";

const GB = 1024 ** 3;
const DAY = 86400;

/** The list's filters, kept while moving between pages of the dashboard. */
const view = { username: "", status: "", order: "created_desc", page: 1, size: 20 };

/** The subscription URL of a user. */
export function subscriptionUrl(user) {
  return `${location.origin}/sub/${encodeURIComponent(user.username)}/${encodeURIComponent(user.key)}`;
}

function expiryText(user) {
  if (user.expire_strategy === "fixed_date") return date(user.expire_date);
  if (user.expire_strategy === "start_on_first_use") {
    if (user.activated_at && user.usage_duration) return date(user.activated_at + user.usage_duration);
    return `${t("start_on_first_use")} (${num(Math.round((user.usage_duration ?? 0) / DAY))}d)`;
  }
  return t("never");
}

/** @param {HTMLElement} root @param {import("./app.js").Session} session */
export async function usersPage(root, session) {
  const { api, can } = session;
  /** @type {Set<string>} */
  const chosen = new Set();
  const services = await api.getServices();
  const tableBox = h("div", { class: "table-box" });
  const bulkBar = h("div", { class: "bulk", hidden: true });
  const pager = h("div", { class: "pager" });

  async function load() {
    let page;
    try {
      page = await api.getUsers({ username: view.username, status: view.status || undefined, order: view.order, page: view.page, size: view.size });
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) showError(error);
      return;
    }
    const pages = Math.max(1, Math.ceil(page.total / page.size));
    if (view.page > pages) {
      view.page = pages;
      return load();
    }
    chosen.clear();
    drawBulk();
    const all = h("input", { type: "checkbox", "aria-label": t("select_all"), onchange: (e) => {
      for (const box of tableBox.querySelectorAll("input.row-select")) {
        /** @type {HTMLInputElement} */ (box).checked = e.target.checked;
        e.target.checked ? chosen.add(box.dataset.user) : chosen.delete(box.dataset.user);
      }
      drawBulk();
    } });
    const rows = page.items.map((u) => h("tr", { "data-user": u.username },
      can.users ? h("td", { class: "select" }, h("input", { type: "checkbox", class: "row-select", dataset: { user: u.username }, "aria-label": t("select_row", { what: u.username }), onchange: (e) => {
        e.target.checked ? chosen.add(u.username) : chosen.delete(u.username);
        drawBulk();
      } })) : null,
      h("td", { class: "name", "data-label": t("username") }, h("a", { href: `#/users/${encodeURIComponent(u.username)}`, text: u.username }), onlineDot(u.online_at)),
      h("td", { "data-label": t("status") }, badge(u.status)),
      h("td", { "data-label": t("usage") }, usageBar(u.used_traffic, u.data_limit)),
      h("td", { "data-label": t("expiry"), text: expiryText(u) }),
      can.users ? h("td", { class: "row-actions" },
        h("button", { type: "button", class: "small", "data-test": "edit", text: t("edit"), onclick: () => userDialog(session, u, services, load) })) : null));
    tableBox.replaceChildren(page.items.length ? h("table", { class: "users" },
      h("thead", {}, h("tr", {},
        can.users ? h("th", { class: "select" }, all) : null,
        sortable("username", "username"), h("th", { text: t("status") }), sortable("usage", "used_traffic_desc"), h("th", { text: t("expiry") }),
        can.users ? h("th", { text: t("actions") }) : null)),
      h("tbody", {}, rows)) : h("p", { class: "muted", text: t("no_users") }));
    pager.replaceChildren(
      h("span", { "data-test": "total", text: t("total_users", { n: num(page.total) }) }),
      h("button", { type: "button", class: "small", "data-test": "prev", disabled: view.page <= 1, text: t("previous"), onclick: () => { view.page--; load(); } }),
      h("span", { text: t("page_of", { page: num(view.page), pages: num(pages) }) }),
      h("button", { type: "button", class: "small", "data-test": "next", disabled: view.page >= pages, text: t("next"), onclick: () => { view.page++; load(); } }),
      h("label", { class: "inline" }, t("per_page"), " ", select(["10", "20", "50", "100"], String(view.size), { onchange: (e) => { view.size = Number(e.target.value); view.page = 1; load(); } }, (v) => num(Number(v)))));
  }

  function drawBulk() {
    bulkBar.hidden = chosen.size === 0;
    if (!chosen.size) return;
    const run = (action, key, danger) => h("button", { type: "button", class: danger ? "small danger" : "small", "data-test": `bulk-${action}`, text: t(key), onclick: async () => {
      const names = [...chosen];
      if (!(await confirmDialog(t("confirm_bulk", { action: t(key), n: num(names.length) }), danger))) return;
      const results = await Promise.allSettled(names.map((n) => action === "delete" ? api.deleteUsersByUsername(n)
        : action === "enable" ? api.postUsersByUsernameEnable(n)
        : action === "disable" ? api.postUsersByUsernameDisable(n)
        : api.postUsersByUsernameReset(n)));
      const failed = results.filter((r) => r.status === "rejected");
      failed.length ? showError(/** @type {PromiseRejectedResult} */ (failed[0]).reason) : toast(t("done"));
      load();
    } });
    bulkBar.replaceChildren(h("span", { text: t("selected", { n: num(chosen.size) }) }),
      run("enable", "enable"), run("disable", "disable"), run("reset", "reset_usage"), run("delete", "delete", true));
  }

  const orderSelect = /** @type {HTMLSelectElement} */ (select([...UserOrderValues], view.order, { "aria-label": t("order"), "data-test": "order", onchange: (e) => { view.order = e.target.value; view.page = 1; load(); } }));
  /** A column header that sorts by `order` when clicked. */
  function sortable(key, order) {
    const current = view.order === order;
    return h("th", { "aria-sort": current ? (order.endsWith("_desc") ? "descending" : "ascending") : false },
      h("button", { type: "button", class: "sort", "data-test": `sort-${order}`, text: t(key) + (current ? (order.endsWith("_desc") ? " ↓" : " ↑") : ""), onclick: () => {
        view.order = order;
        orderSelect.value = order;
        view.page = 1;
        load();
      } }));
  }
  let debounce = 0;
  const search = h("input", { type: "search", "data-test": "search", placeholder: t("search"), "aria-label": t("search"), value: view.username, oninput: (e) => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { view.username = e.target.value.trim(); view.page = 1; load(); }, 250);
  } });
  const toolbar = h("div", { class: "toolbar" },
    search,
    select(["", ...UserStatusValues], view.status, { "aria-label": t("status"), "data-test": "status-filter", onchange: (e) => { view.status = e.target.value; view.page = 1; load(); } }, (v) => v ? t(v) : t("all_statuses")),
    orderSelect,
    can.users ? h("button", { type: "button", class: "primary", "data-test": "new-user", text: t("new_user"), onclick: () => userDialog(session, null, services, load) }) : null);
  root.replaceChildren(h("h1", { text: t("users") }), toolbar, bulkBar, tableBox, pager);
  await load();
}

/**
 * The create (user null) or edit dialog, with every field of UserCreate / UserModify.
 * @param {import("./app.js").Session} session
 * @param {import("./api.js").User|null} user
 * @param {import("./api.js").Service[]} services
 * @param {(saved: import("./api.js").User) => void} done
 */
export function userDialog(session, user, services, done) {
  const { api } = session;
  const username = h("input", { name: "username", value: user?.username ?? "", disabled: !!user, autocomplete: "off", pattern: "[A-Za-z0-9_]{3,32}" });
  const limit = h("input", { name: "data_limit", type: "number", min: "0", step: "any", inputmode: "decimal", value: user?.data_limit ? String(+(user.data_limit / GB).toFixed(3)) : "" });
  const reset = select([...ResetStrategyValues], user?.data_limit_reset_strategy ?? "no_reset", { name: "data_limit_reset_strategy" });
  const strategy = select([...ExpireStrategyValues], user?.expire_strategy ?? "never", { name: "expire_strategy" });
  const expireDate = h("input", { name: "expire_date", type: "datetime-local", value: toLocalInput(user?.expire_date) });
  const duration = h("input", { name: "usage_duration", type: "number", min: "1", step: "1", value: user?.usage_duration ? String(Math.round(user.usage_duration / DAY)) : "30" });
  const deadline = h("input", { name: "activation_deadline", type: "datetime-local", value: toLocalInput(user?.activation_deadline) });
  const note = h("textarea", { name: "note", rows: "2", value: user?.note ?? "" });
  const enabled = h("input", { name: "enabled", type: "checkbox", checked: user ? user.enabled : true });
  const serviceBoxes = services.map((s) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "service", value: String(s.id), checked: user ? user.service_ids.includes(s.id) : false }), s.name));
  const fixedFields = h("div", { class: "strategy-fields" }, field(t("expire_date"), expireDate));
  const firstUseFields = h("div", { class: "strategy-fields" }, field(t("usage_duration"), duration), field(t("activation_deadline"), deadline));
  const showStrategy = () => {
    fixedFields.hidden = strategy.value !== "fixed_date";
    firstUseFields.hidden = strategy.value !== "start_on_first_use";
  };
  strategy.addEventListener("change", showStrategy);
  showStrategy();
  const inputs = { username, data_limit: limit, expire_date: expireDate, usage_duration: duration, activation_deadline: deadline, note, service_ids: serviceBoxes[0]?.querySelector("input") ?? note };

  /** Inline checks; returns the request body, or null when a field is wrong. */
  function validate() {
    for (const input of Object.values(inputs)) setFieldError(input, "");
    let ok = true;
    const fail = (input, message) => { setFieldError(input, message); ok = false; };
    if (!user && !/^[A-Za-z0-9_]{3,32}$/.test(username.value)) fail(username, t("err_username"));
    const gb = limit.value === "" ? 0 : Number(limit.value);
    if (!(gb >= 0)) fail(limit, t("err_negative"));
    const body = {
      data_limit: Math.round(gb * GB),
      data_limit_reset_strategy: reset.value,
      expire_strategy: strategy.value,
      note: note.value,
      enabled: enabled.checked,
      service_ids: serviceBoxes.map((l) => /** @type {HTMLInputElement} */ (l.querySelector("input"))).filter((i) => i.checked).map((i) => Number(i.value)),
    };
    if (strategy.value === "fixed_date") {
      const at = fromLocalInput(expireDate.value);
      if (!at) fail(expireDate, t("err_required"));
      else if (at * 1000 < Date.now() && at !== user?.expire_date) fail(expireDate, t("err_future"));
      body.expire_date = at;
    }
    if (strategy.value === "start_on_first_use") {
      const days = Number(duration.value);
      if (!(days > 0)) fail(duration, t("err_positive"));
      body.usage_duration = Math.round(days * DAY);
      const by = fromLocalInput(deadline.value);
      if (by && by * 1000 < Date.now() && by !== user?.activation_deadline) fail(deadline, t("err_future"));
      if (by) body.activation_deadline = by;
    }
    if (!user) body.username = username.value;
    return ok ? body : null;
  }
  for (const input of [username, limit, expireDate, duration, deadline]) input.addEventListener("input", validate);

  const save = h("button", { type: "submit", class: "primary", "data-test": "save", text: user ? t("save") : t("create") });
  const form = h("form", { class: "form", novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    const body = validate();
    if (!body) return;
    save.setAttribute("disabled", "");
    try {
      const saved = user ? await api.putUsersByUsername(user.username, body) : await api.postUsers(/** @type {*} */ (body));
      dialog.close();
      toast(t("saved"));
      done(saved);
    } catch (error) {
      if (error instanceof ApiError && error.field && inputs[error.field]) setFieldError(inputs[error.field], error.message);
      else showError(error);
    } finally {
      save.removeAttribute("disabled");
    }
  } },
  field(t("username"), username),
  h("div", { class: "row2" }, field(t("data_limit"), limit, t("data_limit_hint")), field(t("reset_strategy"), reset)),
  field(t("expire_strategy"), strategy),
  fixedFields,
  firstUseFields,
  services.length ? h("fieldset", { class: "field" }, h("legend", { text: t("services") }), serviceBoxes, h("div", { class: "field-error", role: "alert" })) : null,
  field(t("note"), note),
  h("label", { class: "check" }, enabled, t("enabled")),
  h("footer", { class: "form-actions" }, h("button", { type: "button", text: t("cancel"), onclick: () => dialog.close() }), save));
  const dialog = modal({ title: user ? `${t("edit")}: ${user.username}` : t("new_user"), body: form });
}

/** @param {HTMLElement} root @param {import("./app.js").Session} session @param {string} name */
export async function userPage(root, session, name) {
  const { api, can } = session;
  const user = await api.getUsersByUsername(name);
  const services = await api.getServices();
  const chartBox = h("div");
  /** Draws the hourly usage of the last `hours` hours. */
  async function drawUsage(hours) {
    const now = Math.floor(Date.now() / 1000);
    const start = Math.floor(now / 3600) * 3600 - (hours - 1) * 3600;
    const usage = await api.getUsersByUsernameUsage(name, { start, end: now });
    chartBox.replaceChildren(usageChart(usage, start, hours));
  }
  const ranges = h("div", { class: "tabs", role: "tablist" }, [["usage_24h", 24], ["usage_7d", 168]].map(([key, hours], i) =>
    h("button", { type: "button", role: "tab", class: "small", "data-test": `range-${hours}`, "aria-selected": String(i === 0), text: t(key), onclick: (e) => {
      ranges.querySelectorAll("button").forEach((b) => b.setAttribute("aria-selected", String(b === e.target)));
      drawUsage(hours).catch(showError);
    } })));
  await drawUsage(24);
  const url = subscriptionUrl(user);
  const reload = () => session.rerender();

  const act = (key, fn, danger = false, ask = "") => h("button", { type: "button", class: danger ? "danger" : "", "data-test": key, text: t(key), onclick: async () => {
    if (ask && !(await confirmDialog(ask, danger))) return;
    try {
      await fn();
      toast(t("done"));
    } catch (error) {
      showError(error);
    }
  } });
  const actions = can.users ? h("div", { class: "toolbar" },
    h("button", { type: "button", class: "primary", "data-test": "edit", text: t("edit"), onclick: () => userDialog(session, user, services, reload) }),
    user.enabled ? act("disable", async () => { await api.postUsersByUsernameDisable(name); reload(); }) : act("enable", async () => { await api.postUsersByUsernameEnable(name); reload(); }),
    act("reset_usage", async () => { await api.postUsersByUsernameReset(name); reload(); }, false, t("confirm_bulk", { action: t("reset_usage"), n: num(1) })),
    act("revoke_sub", async () => { await api.postUsersByUsernameRevokeSub(name); reload(); }, true, t("confirm_revoke", { what: name })),
    act("delete", async () => { await api.deleteUsersByUsername(name); location.hash = "#/users"; }, true, t("confirm_delete", { what: name }))) : null;

  const facts = [
    [t("status"), badge(user.status)],
    [t("used"), usageBar(user.used_traffic, user.data_limit)],
    [t("reset_strategy"), t(user.data_limit_reset_strategy)],
    [t("lifetime"), bytes(user.lifetime_used_traffic)],
    [t("expiry"), expiryText(user)],
    [t("services"), user.service_ids.map((id) => services.find((s) => s.id === id)?.name ?? `#${id}`).join(", ") || "—"],
    [t("online_at"), date(user.online_at), "online_at"],
    [t("sub_updated_at"), user.sub_updated_at ? `${date(user.sub_updated_at)} (${user.sub_last_user_agent ?? ""})` : "—", "sub_updated_at"],
    [t("owner"), user.owner_username ?? "—"],
    [t("created"), date(user.created_at), "created_at"],
    [t("note"), user.note || "—"],
  ];
  const linkInput = h("input", { readonly: true, class: "mono", "data-test": "sub-url", value: url, "aria-label": t("subscription_url"), onfocus: (e) => e.target.select() });
  const formats = h("div", { class: "formats" }, SubscriptionFormatValues.map((f) => {
    const link = `${url}/${f}`;
    return h("button", { type: "button", class: "small", title: link, "data-test": `copy-${f}`, text: f, onclick: () => copyText(link) });
  }));
  const qrBox = h("div", { class: "qr-box" });
  qrCode(url).then((qr) => qrBox.replaceChildren(qr), showError);

  root.replaceChildren(
    h("p", {}, h("a", { href: "#/users", text: "← " + t("users") })),
    h("h1", { "data-test": "user-title", text: user.username }),
    actions,
    h("div", { class: "grid2" },
      h("section", { class: "card" }, h("dl", { class: "facts" }, facts.map(([k, v, name]) => [h("dt", { text: k }), h("dd", name ? { "data-field": name } : {}, v)]))),
      h("section", { class: "card" },
        h("h2", { text: t("subscription") }),
        h("div", { class: "copy-row" }, linkInput, h("button", { type: "button", class: "primary", "data-test": "copy-link", text: t("copy_link"), onclick: () => copyText(url) })),
        h("h3", { text: t("formats") }), formats,
        qrBox)),
    h("section", { class: "card" }, h("h2", { text: t("usage") }), ranges, chartBox));
}
