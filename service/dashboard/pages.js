// Overview, services, inbounds (protocol forms and raw JSON) with their hosts, admins and
// settings.

import { ApiError, HostSecurityValues } from "./api.js";
import { t, bytes, num, date, duration, locale, setLocale, LOCALES } from "./i18n.js";
import { h, modal, confirmDialog, toast, showError, field, setFieldError, select, usageChart, countBars, sparkline, onlineDot } from "./ui.js";
import { setTheme, navigate } from "./app.js";

/** @typedef {import("./app.js").Session} Session */

/** A delete button that asks first. */
function deleteButton(what, fn, done) {
  return h("button", { type: "button", class: "small danger", "data-test": "delete", text: t("delete"), onclick: async () => {
    if (!(await confirmDialog(t("confirm_delete", { what })))) return;
    try {
      await fn();
      toast(t("deleted"));
      done();
    } catch (error) {
      showError(error);
    }
  } });
}

/** Shows an API error inline when it names one of `inputs`, else as a toast. */
function fieldOrToast(error, inputs) {
  if (error instanceof ApiError && error.field) {
    const key = error.field.split(".").pop() ?? "";
    const input = inputs[error.field] ?? inputs[key];
    if (input) {
      setFieldError(input, error.message);
      return;
    }
  }
  showError(error);
}

/**
 * The engine's status (`GET /api/system/engine`): running or stopped, uptime, start, workers,
 * and each inbound's open connections and traffic since the start.
 * @param {import("./api.js").EngineStatus} engine
 */
function engineCard(engine) {
  const state = engine.running ? "engine_running" : "engine_stopped";
  return h("section", { class: "card", "data-test": "engine" },
    h("h2", {}, t("engine"), " ", h("span", { class: `badge ${engine.running ? "active" : "disabled"}`, "data-test": "engine-state", "data-running": String(engine.running), text: t(state) })),
    h("dl", { class: "facts" },
      h("dt", { text: t("engine_uptime") }), h("dd", { "data-test": "engine-uptime", text: duration(engine.uptime) }),
      h("dt", { text: t("engine_started") }), h("dd", { "data-test": "engine-started", text: date(engine.started_at) }),
      h("dt", { text: t("engine_workers") }), h("dd", { "data-test": "engine-workers", text: num(engine.workers) })),
    engine.inbounds.length ? h("div", { class: "table-scroll" }, h("table", { class: "compact", "data-test": "engine-inbounds" },
      h("thead", {}, h("tr", {}, [t("tag"), t("engine_open"), t("uplink"), t("downlink")].map((k) => h("th", { text: k })))),
      h("tbody", {}, engine.inbounds.map((i) => h("tr", { "data-inbound": i.tag },
        h("td", { class: "mono", text: i.tag }),
        h("td", { "data-test": "open", text: num(i.open) }),
        h("td", { text: bytes(i.uplink) }),
        h("td", { text: bytes(i.downlink) })))))) : h("p", { class: "muted", text: t("engine_no_inbounds") }));
}

/**
 * Hourly traffic summed over every user this admin sees (`GET /api/system/usage`), over the
 * last 24 hours or 7 days.
 * @param {Session} session
 */
async function trafficCard(session) {
  const { api, me } = session;
  const chartBox = h("div");
  async function draw(hours) {
    const now = Math.floor(Date.now() / 1000);
    const start = Math.floor(now / 3600) * 3600 - (hours - 1) * 3600;
    const usage = await api.getSystemUsage({ hours });
    chartBox.replaceChildren(usageChart(usage, start, hours));
  }
  const ranges = h("div", { class: "tabs", role: "tablist" }, [["usage_24h", 24], ["usage_7d", 168]].map(([key, hours], i) =>
    h("button", { type: "button", role: "tab", class: "small", "data-test": `range-${hours}`, "aria-selected": String(i === 0), text: t(key), onclick: (e) => {
      ranges.querySelectorAll("button").forEach((b) => b.setAttribute("aria-selected", String(b === e.target)));
      draw(hours).catch(showError);
    } })));
  await draw(24);
  return h("section", { class: "card", "data-test": "traffic" },
    h("h2", { text: t("traffic_over_time") }),
    h("p", { class: "muted", text: t(me.is_sudo ? "traffic_scope_all" : "traffic_scope_own") }),
    ranges, chartBox);
}

/** @param {HTMLElement} root @param {Session} session */
export async function overviewPage(root, session) {
  const { api } = session;
  const [stats, top, engine, traffic] = await Promise.all([
    api.getSystemStats(),
    api.getUsers({ order: "used_traffic_desc", size: 10 }),
    api.getSystemEngine(),
    trafficCard(session),
  ]);
  const now = Math.floor(Date.now() / 1000);
  const hours = 24;
  const start = Math.floor(now / 3600) * 3600 - (hours - 1) * 3600;
  const usages = await Promise.all(top.items.map((u) => api.getUsersByUsernameUsage(u.username, { start, end: now }).catch(() => [])));
  const tile = (label, value, test) => h("div", { class: "tile", "data-test": test }, h("div", { class: "tile-value", text: value }), h("div", { class: "tile-label", text: label }));
  root.replaceChildren(
    h("h1", { text: t("overview") }),
    h("div", { class: "tiles" },
      tile(t("users"), num(stats.total_users), "total-users"),
      tile(t("online_users"), num(stats.online_users), "online-users"),
      tile(`${t("total_traffic")} · ${t("uplink")}`, bytes(stats.total_uplink), "uplink"),
      tile(`${t("total_traffic")} · ${t("downlink")}`, bytes(stats.total_downlink), "downlink")),
    h("div", { class: "grid2" }, traffic, engineCard(engine)),
    h("div", { class: "grid2" },
      h("section", { class: "card" }, h("h2", { text: t("users_by_status") }), countBars([
        { key: "active", value: stats.active_users },
        { key: "on_hold", value: stats.on_hold_users },
        { key: "limited", value: stats.limited_users },
        { key: "expired", value: stats.expired_users },
        { key: "disabled", value: stats.disabled_users },
      ])),
      h("section", { class: "card" }, h("h2", { text: t("top_users") }),
        top.items.length ? h("ol", { class: "top-users" }, top.items.map((u, n) => h("li", {},
          h("a", { href: `#/users/${encodeURIComponent(u.username)}`, text: u.username }), onlineDot(u.online_at), " ",
          h("span", { class: "muted", text: bytes(u.used_traffic) }), " ",
          sparkline(usages[n], start, hours)))) : h("p", { class: "muted", text: t("no_users") }))));
}

/** @param {HTMLElement} root @param {Session} session */
export async function servicesPage(root, session) {
  const { api, can } = session;
  const [services, inbounds] = await Promise.all([api.getServices(), api.getInbounds()]);
  const reload = () => servicesPage(root, session);
  const tagOf = (id) => inbounds.find((i) => i.id === id)?.tag ?? `#${id}`;
  function dialog(service) {
    const name = h("input", { name: "name", value: service?.name ?? "" });
    const boxes = inbounds.map((i) => h("label", { class: "check" }, h("input", { type: "checkbox", value: String(i.id), checked: service?.inbound_ids.includes(i.id) ?? false }), `${i.tag} (${i.protocol})`));
    const save = h("button", { type: "submit", class: "primary", text: service ? t("save") : t("create") });
    const form = h("form", { class: "form", novalidate: true, onsubmit: async (e) => {
      e.preventDefault();
      setFieldError(name, "");
      if (!name.value.trim()) return setFieldError(name, t("err_required"));
      const body = { name: name.value.trim(), inbound_ids: boxes.map((b) => /** @type {HTMLInputElement} */ (b.querySelector("input"))).filter((i) => i.checked).map((i) => Number(i.value)) };
      try {
        service ? await api.putServicesById(service.id, body) : await api.postServices(body);
        d.close();
        toast(t("saved"));
        reload();
      } catch (error) {
        fieldOrToast(error, { name });
      }
    } }, field(t("name"), name), h("fieldset", { class: "field" }, h("legend", { text: t("inbound_ids") }), boxes), h("footer", { class: "form-actions" }, save));
    const d = modal({ title: service ? `${t("edit")}: ${service.name}` : t("new_service"), body: form });
  }
  root.replaceChildren(
    h("h1", { text: t("services") }),
    can.sudo ? h("div", { class: "toolbar" }, h("button", { type: "button", class: "primary", "data-test": "new-service", text: t("new_service"), onclick: () => dialog(null) })) : null,
    services.length ? h("div", { class: "cards" }, services.map((s) => h("section", { class: "card" },
      h("h2", { text: s.name }),
      h("p", { class: "muted", text: s.inbound_ids.map(tagOf).join(", ") || "—" }),
      can.sudo ? h("div", { class: "toolbar" }, h("button", { type: "button", class: "small", "data-test": "edit", text: t("edit"), onclick: () => dialog(s) }), deleteButton(s.name, () => api.deleteServicesById(s.id), reload)) : null))) : h("p", { class: "muted", text: "—" }));
}

const SS_METHODS = ["aes-128-gcm", "aes-256-gcm", "chacha20-ietf-poly1305", "2022-blake3-aes-128-gcm", "2022-blake3-aes-256-gcm", "2022-blake3-chacha20-poly1305"];
const PROTOCOLS = ["shadowsocks", "vless", "trojan", "vmess", "hysteria2"];
const MASQUERADES = ["masq_none", "masq_string", "masq_file", "masq_proxy"];

/** The inbound form: protocol-specific fields, or the raw JSON config. */
function inboundDialog(session, inbound, done) {
  const { api } = session;
  let config = structuredClone(inbound?.config ?? { tag: "", listen: "0.0.0.0:8388", protocol: "shadowsocks", settings: { method: "aes-256-gcm" } });
  let raw = false;
  const body = h("div");
  const inputs = {};
  const csv = (v) => v.split(",").map((s) => s.trim()).filter(Boolean);

  function drawForm() {
    const settings = config.settings ?? {};
    const tls = config.tls ?? null;
    const tag = h("input", { name: "tag", value: config.tag ?? "", oninput: (e) => { config.tag = e.target.value; } });
    const listen = h("input", { name: "listen", value: config.listen ?? "", oninput: (e) => { config.listen = e.target.value; } });
    const protocol = select(PROTOCOLS, config.protocol, { name: "protocol", onchange: (e) => {
      config.protocol = e.target.value;
      config.settings = config.protocol === "shadowsocks" ? { method: "aes-256-gcm" } : {};
      if (config.protocol === "shadowsocks") delete config.tls;
      // Hysteria2 runs on QUIC: TLS is required.
      if (config.protocol === "hysteria2" && !config.tls) config.tls = { self_signed: ["localhost"] };
      drawForm();
    } }, (v) => v);
    Object.assign(inputs, { tag, listen });
    const parts = [field(t("tag"), tag), h("div", { class: "row2" }, field(t("protocol"), protocol), field(t("listen"), listen))];
    if (config.protocol === "shadowsocks") {
      const method = select(SS_METHODS, settings.method, { name: "method", onchange: (e) => { config.settings.method = e.target.value; drawForm(); } }, (v) => v);
      parts.push(field(t("method"), method));
      if (String(settings.method).startsWith("2022-blake3-aes")) {
        const psk = h("input", { name: "psk", class: "mono", value: settings.psk ?? "", oninput: (e) => { if (e.target.value) config.settings.psk = e.target.value; else delete config.settings.psk; } });
        inputs.psk = psk;
        parts.push(field(t("psk"), psk));
      }
      const network = select(["tcp,udp", "tcp", "udp"], (config.network ?? ["tcp", "udp"]).join(","), { name: "network", onchange: (e) => { config.network = e.target.value.split(","); } }, (v) => v);
      parts.push(field(t("network"), network));
    } else {
      if (config.protocol === "hysteria2") parts.push(...hysteria2Parts(settings));
      if (config.protocol !== "vmess" && config.protocol !== "hysteria2") {
        const fallback = h("input", { name: "fallback", value: settings.fallback ?? "", placeholder: "127.0.0.1:8080", oninput: (e) => { if (e.target.value) config.settings.fallback = e.target.value; else delete config.settings.fallback; } });
        inputs.fallback = fallback;
        parts.push(field(t("fallback"), fallback));
      }
      if (config.protocol === "vless") {
        // XTLS Vision needs TLS directly (the engine refuses it without TLS or over WebSocket).
        const flow = select(["", "xtls-rprx-vision"], settings.flow ?? "", { name: "flow", onchange: (e) => { if (e.target.value) config.settings.flow = e.target.value; else delete config.settings.flow; } }, (v) => v || t("flow_none"));
        parts.push(field(t("flow"), flow));
      }
      const mode = !tls ? "tls_none" : tls.self_signed ? "tls_self_signed" : "tls_files";
      const modes = config.protocol === "hysteria2" ? ["tls_files", "tls_self_signed"] : ["tls_none", "tls_files", "tls_self_signed"];
      const tlsMode = select(modes, mode, { name: "tls", onchange: (e) => {
        config.tls = e.target.value === "tls_none" ? undefined : e.target.value === "tls_files" ? { certificate: "", key: "" } : { self_signed: ["localhost"] };
        if (!config.tls) delete config.tls;
        drawForm();
      } });
      parts.push(field(t("tls"), tlsMode));
      if (tls && !tls.self_signed) {
        const cert = h("input", { name: "certificate", value: tls.certificate ?? "", oninput: (e) => { config.tls.certificate = e.target.value; } });
        const key = h("input", { name: "key", value: tls.key ?? "", oninput: (e) => { config.tls.key = e.target.value; } });
        Object.assign(inputs, { certificate: cert, key });
        parts.push(h("div", { class: "row2" }, field(t("certificate"), cert), field(t("key"), key)));
      }
      if (tls) {
        const names = h("input", { name: "server_names", value: (tls.self_signed ?? tls.server_names ?? []).join(", "), oninput: (e) => {
          if (config.tls.self_signed) config.tls.self_signed = csv(e.target.value);
          else if (e.target.value.trim()) config.tls.server_names = csv(e.target.value);
          else delete config.tls.server_names;
        } });
        parts.push(field(t("server_names"), names));
      }
    }
    body.replaceChildren(...parts);
  }

  /** Hysteria2's own settings (docs/engine-config.md, "Hysteria2 settings"); TLS follows. */
  function hysteria2Parts(settings) {
    const setOr = (key, value) => { if (value === undefined) delete config.settings[key]; else config.settings[key] = value; };
    const mbps = (key) => {
      const input = h("input", { name: key, type: "number", min: "1", step: "1", value: settings[key] ? String(settings[key]) : "", oninput: (e) => {
        const n = Number(e.target.value);
        setOr(key, e.target.value && Number.isInteger(n) && n > 0 ? n : undefined);
      } });
      inputs[key] = input;
      return field(t(key), input);
    };
    const obfs = h("input", { name: "obfs_password", value: settings.obfs?.password ?? "", oninput: (e) => {
      setOr("obfs", e.target.value ? { type: "salamander", password: e.target.value } : undefined);
    } });
    inputs.obfs = obfs;
    const masq = settings.masquerade;
    const masqMode = !masq ? "masq_none" : masq.type === "proxy" ? "masq_proxy" : masq.type === "file" ? "masq_file" : "masq_string";
    const masqSelect = select(MASQUERADES, masqMode, { name: "masquerade", onchange: (e) => {
      const v = e.target.value;
      setOr("masquerade", v === "masq_string" ? { type: "string", status_code: 200, content: "" } : v === "masq_proxy" ? { type: "proxy", address: "" } : v === "masq_file" ? { type: "file", dir: "" } : undefined);
      drawForm();
    } });
    inputs.masquerade = masqSelect;
    const parts = [field(t("obfs_password"), obfs, t("obfs_hint")), field(t("masquerade"), masqSelect)];
    if (masqMode === "masq_string") {
      const status = h("input", { name: "masquerade_status", type: "number", min: "100", max: "599", value: String(masq.status_code ?? 200), oninput: (e) => {
        const n = Number(e.target.value);
        if (e.target.value && Number.isInteger(n)) config.settings.masquerade.status_code = n; else delete config.settings.masquerade.status_code;
      } });
      const content = h("input", { name: "masquerade_content", value: masq.content ?? "", oninput: (e) => { config.settings.masquerade.content = e.target.value; } });
      Object.assign(inputs, { masquerade_status: status, masquerade_content: content });
      parts.push(h("div", { class: "row2" }, field(t("masq_status"), status), field(t("masq_content"), content)));
    } else if (masqMode === "masq_file") {
      const dir = h("input", { name: "masquerade_dir", value: masq.dir ?? "", placeholder: "/var/www/site", oninput: (e) => { config.settings.masquerade.dir = e.target.value; } });
      inputs.masquerade_dir = dir;
      parts.push(field(t("masq_dir"), dir));
    } else if (masqMode === "masq_proxy") {
      const address = h("input", { name: "masquerade_address", value: masq.address ?? "", placeholder: "127.0.0.1:8080", oninput: (e) => { config.settings.masquerade.address = e.target.value; } });
      const host = h("input", { name: "masquerade_host", value: masq.host ?? "", oninput: (e) => {
        if (e.target.value) config.settings.masquerade.host = e.target.value; else delete config.settings.masquerade.host;
      } });
      Object.assign(inputs, { masquerade_address: address, masquerade_host: host });
      parts.push(h("div", { class: "row2" }, field(t("masq_address"), address), field(t("masq_host"), host)));
    }
    const ignore = h("input", { type: "checkbox", name: "ignore_client_bandwidth", checked: settings.ignore_client_bandwidth === true, onchange: (e) => {
      setOr("ignore_client_bandwidth", e.target.checked ? true : undefined);
    } });
    parts.push(h("div", { class: "row2" }, mbps("up_mbps"), mbps("down_mbps")), h("label", { class: "check" }, ignore, t("ignore_client_bandwidth")));
    return parts;
  }

  function drawRaw() {
    const area = h("textarea", { name: "config", class: "mono", rows: "14", spellcheck: "false", value: JSON.stringify(config, null, 2), oninput: (e) => {
      try {
        config = JSON.parse(e.target.value);
        setFieldError(area, "");
      } catch (error) {
        setFieldError(area, t("err_json", { error: String(error.message) }));
      }
    } });
    inputs.config = area;
    body.replaceChildren(field(t("raw_json"), area));
  }

  const tabs = h("div", { class: "tabs", role: "tablist" },
    h("button", { type: "button", role: "tab", "aria-selected": "true", text: t("form"), onclick: (e) => { raw = false; drawForm(); mark(e.target); } }),
    h("button", { type: "button", role: "tab", "aria-selected": "false", "data-test": "raw-json", text: t("raw_json"), onclick: (e) => { raw = true; drawRaw(); mark(e.target); } }));
  const mark = (tab) => tabs.querySelectorAll("button").forEach((b) => b.setAttribute("aria-selected", String(b === tab)));
  drawForm();
  const save = h("button", { type: "submit", class: "primary", text: inbound ? t("save") : t("create") });
  const form = h("form", { class: "form", novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    if (raw && inputs.config?.getAttribute("aria-invalid") === "true") return;
    if (!raw) {
      if (!config.tag) return setFieldError(inputs.tag, t("err_required"));
      setFieldError(inputs.tag, "");
    }
    try {
      inbound ? await api.putInboundsById(inbound.id, { config }) : await api.postInbounds({ config });
      d.close();
      toast(t("saved"));
      done();
    } catch (error) {
      fieldOrToast(error, inputs);
    }
  } }, tabs, body, h("footer", { class: "form-actions" }, save));
  const d = modal({ title: inbound ? `${t("edit")}: ${inbound.tag}` : t("new_inbound"), body: form, wide: true });
}

function hostDialog(session, inboundId, host, done) {
  const { api } = session;
  const v = (k) => host?.[k] ?? "";
  const inputs = {
    remark: h("input", { name: "remark", value: v("remark") || "{USERNAME}" }),
    address: h("input", { name: "address", value: v("address") }),
    port: h("input", { name: "port", type: "number", min: "1", max: "65535", value: host?.port ? String(host.port) : "" }),
    sni: h("input", { name: "sni", value: v("sni") }),
    host: h("input", { name: "host", value: v("host") }),
    path: h("input", { name: "path", value: v("path") }),
    security: select([...HostSecurityValues], host?.security ?? "inbound_default", { name: "security" }),
    weight: h("input", { name: "weight", type: "number", step: "1", value: String(host?.weight ?? 1) }),
  };
  const form = h("form", { class: "form", novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    let ok = true;
    for (const input of Object.values(inputs)) setFieldError(input, "");
    for (const k of ["remark", "address"]) if (!inputs[k].value.trim()) { setFieldError(inputs[k], t("err_required")); ok = false; }
    const port = inputs.port.value ? Number(inputs.port.value) : undefined;
    if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) { setFieldError(inputs.port, t("err_port")); ok = false; }
    if (!ok) return;
    const opt = (k) => inputs[k].value.trim() || undefined;
    const body = { remark: inputs.remark.value, address: inputs.address.value, port, sni: opt("sni"), host: opt("host"), path: opt("path"), security: inputs.security.value, weight: Number(inputs.weight.value) || 1 };
    try {
      host ? await api.putInboundsHostsById(host.id, body) : await api.postInboundsByIdHosts(inboundId, body);
      d.close();
      toast(t("saved"));
      done();
    } catch (error) {
      fieldOrToast(error, inputs);
    }
  } },
  field(t("remark"), inputs.remark),
  h("div", { class: "row2" }, field(t("address"), inputs.address), field(t("port"), inputs.port)),
  h("div", { class: "row2" }, field(t("sni"), inputs.sni), field(t("host_header"), inputs.host)),
  h("div", { class: "row2" }, field(t("path"), inputs.path), field(t("security"), inputs.security)),
  field(t("weight"), inputs.weight),
  h("footer", { class: "form-actions" }, h("button", { type: "submit", class: "primary", text: host ? t("save") : t("create") })));
  const d = modal({ title: host ? `${t("edit")}: ${host.remark}` : t("new_host"), body: form });
}

/** @param {HTMLElement} root @param {Session} session */
export async function inboundsPage(root, session) {
  const { api, can } = session;
  const inbounds = await api.getInbounds();
  const hosts = await Promise.all(inbounds.map((i) => api.getInboundsByIdHosts(i.id)));
  const reload = () => inboundsPage(root, session);
  root.replaceChildren(
    h("h1", { text: t("inbounds") }),
    can.sudo ? h("div", { class: "toolbar" }, h("button", { type: "button", class: "primary", "data-test": "new-inbound", text: t("new_inbound"), onclick: () => inboundDialog(session, null, reload) })) : null,
    inbounds.length ? h("div", { class: "cards" }, inbounds.map((ib, n) => h("section", { class: "card", "data-inbound": ib.tag },
      h("h2", {}, ib.tag, " ", h("span", { class: "badge", text: ib.protocol })),
      h("p", { class: "muted mono", text: `${ib.config?.listen ?? ""}${ib.config?.tls ? " · TLS" : ""}${ib.config?.settings?.method ? " · " + ib.config.settings.method : ""}` }),
      can.sudo ? h("div", { class: "toolbar" },
        h("button", { type: "button", class: "small", "data-test": "edit", text: t("edit"), onclick: () => inboundDialog(session, ib, reload) }),
        deleteButton(ib.tag, () => api.deleteInboundsById(ib.id), reload)) : null,
      h("h3", { text: t("hosts") }),
      hosts[n].length ? h("ul", { class: "hosts" }, hosts[n].map((host) => h("li", {},
        h("span", { class: "mono", text: `${host.remark} → ${host.address}${host.port ? ":" + host.port : ""}` }), " ",
        h("span", { class: "muted", text: `${t(host.security)} · ${t("weight")} ${num(host.weight)}` }),
        can.sudo ? h("span", { class: "inline-actions" },
          h("button", { type: "button", class: "small", text: t("edit"), onclick: () => hostDialog(session, ib.id, host, reload) }),
          deleteButton(host.remark, () => api.deleteInboundsHostsById(host.id), reload)) : null))) : h("p", { class: "muted", text: t("no_hosts") }),
      can.sudo ? h("button", { type: "button", class: "small", "data-test": "new-host", text: t("new_host"), onclick: () => hostDialog(session, ib.id, null, reload) }) : null))) : h("p", { class: "muted", text: "—" }));
}

/** @param {HTMLElement} root @param {Session} session */
export async function adminsPage(root, session) {
  const { api, can, me } = session;
  const [admins, services] = await Promise.all([api.getAdmins(), api.getServices()]);
  const reload = () => adminsPage(root, session);
  const role = (a) => a.is_sudo ? "role_sudo" : a.read_only ? "role_read_only" : "role_admin";
  function dialog(admin) {
    const inputs = {
      username: h("input", { name: "username", value: admin?.username ?? "", disabled: !!admin, autocomplete: "off" }),
      password: h("input", { name: "password", type: "password", autocomplete: "new-password", placeholder: admin ? "••••••••" : "" }),
    };
    const flag = (k, v) => h("label", { class: "check" }, h("input", { type: "checkbox", name: k, checked: v }), t(k));
    const flags = {
      is_sudo: flag("is_sudo", admin?.is_sudo ?? false),
      read_only: flag("read_only", admin?.read_only ?? false),
      all_services_access: flag("all_services_access", admin?.all_services_access ?? false),
      modify_users_access: flag("modify_users_access", admin?.modify_users_access ?? true),
      enabled: admin ? flag("enabled", admin.enabled) : null,
    };
    const boxes = services.map((s) => h("label", { class: "check" }, h("input", { type: "checkbox", value: String(s.id), checked: admin?.service_ids.includes(s.id) ?? false }), s.name));
    const checked = (l) => /** @type {HTMLInputElement} */ (l.querySelector("input")).checked;
    const form = h("form", { class: "form", novalidate: true, onsubmit: async (e) => {
      e.preventDefault();
      setFieldError(inputs.username, "");
      setFieldError(inputs.password, "");
      let ok = true;
      if (!admin && !/^[A-Za-z0-9_]{3,32}$/.test(inputs.username.value)) { setFieldError(inputs.username, t("err_username")); ok = false; }
      if ((!admin || inputs.password.value) && inputs.password.value.length < 8) { setFieldError(inputs.password, t("new_password")); ok = false; }
      if (!ok) return;
      const body = {
        is_sudo: checked(flags.is_sudo), read_only: checked(flags.read_only),
        all_services_access: checked(flags.all_services_access), modify_users_access: checked(flags.modify_users_access),
        service_ids: boxes.filter(checked).map((l) => Number(/** @type {HTMLInputElement} */ (l.querySelector("input")).value)),
      };
      if (inputs.password.value) body.password = inputs.password.value;
      try {
        if (admin) await api.putAdminsByUsername(admin.username, { ...body, enabled: flags.enabled ? checked(flags.enabled) : undefined });
        else await api.postAdmins({ ...body, username: inputs.username.value, password: inputs.password.value });
        d.close();
        toast(t("saved"));
        reload();
      } catch (error) {
        fieldOrToast(error, inputs);
      }
    } },
    field(t("username"), inputs.username), field(t("password"), inputs.password),
    h("div", { class: "checks" }, Object.values(flags)),
    services.length ? h("fieldset", { class: "field" }, h("legend", { text: t("services") }), boxes) : null,
    h("footer", { class: "form-actions" }, h("button", { type: "submit", class: "primary", text: admin ? t("save") : t("create") })));
    const d = modal({ title: admin ? `${t("edit")}: ${admin.username}` : t("new_admin"), body: form });
  }
  root.replaceChildren(
    h("h1", { text: t("admins") }),
    can.sudo ? h("div", { class: "toolbar" }, h("button", { type: "button", class: "primary", "data-test": "new-admin", text: t("new_admin"), onclick: () => dialog(null) })) : null,
    h("div", { class: "cards" }, admins.map((a) => h("section", { class: "card" },
      h("h2", {}, a.username, a.username === me.username ? h("span", { class: "muted", text: ` (${t("you")})` }) : null),
      h("p", {}, h("span", { class: "badge", text: t(role(a)) }), " ", a.enabled ? null : h("span", { class: "badge disabled", text: t("disabled") })),
      h("p", { class: "muted", text: a.all_services_access || a.is_sudo ? t("all_services_access") : a.service_ids.map((id) => services.find((s) => s.id === id)?.name ?? `#${id}`).join(", ") || "—" }),
      can.sudo ? h("div", { class: "toolbar" },
        h("button", { type: "button", class: "small", "data-test": "edit", text: t("edit"), onclick: () => dialog(a) }),
        a.username !== me.username ? deleteButton(a.username, () => api.deleteAdminsByUsername(a.username), reload) : null) : null))));
}

/** Persian and Arabic-Indic digits as ASCII, so numbers typed in either parse. */
const asciiDigits = (text) => text.replace(/[۰-۹]/g, (d) => String(d.charCodeAt(0) - 0x6f0)).replace(/[٠-٩]/g, (d) => String(d.charCodeAt(0) - 0x660));

/** Threshold percentages from "80, 100" (commas or spaces), or null when one is not 1 to 100 or there are more than 10. */
function parseThresholds(text) {
  const parts = asciiDigits(text).split(/[\s,،]+/).filter(Boolean);
  if (parts.length > 10 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) < 1 || Number(p) > 100)) return null;
  return parts.map(Number);
}

/**
 * The webhook settings (`GET`/`PUT /api/webhook`, docs/webhooks.md) for sudo admins: the URL,
 * the secret's last four characters (the API never returns the secret) and the thresholds; a
 * form to change them unless the admin is read-only. An empty secret keeps the stored one (the
 * API leaves an absent secret unchanged); an empty URL turns webhooks off (`url: null`).
 * @param {Session} session
 * @param {import("./api.js").WebhookSettings} settings
 */
function webhookSection(session, settings) {
  const { api, can } = session;
  const pct = (list) => list.length ? list.map((n) => `${num(n)}%`).join(", ") : t("none");
  const facts = h("dl", { class: "facts" },
    h("dt", { text: t("webhook_url") }), h("dd", { class: "mono", "data-test": "webhook-url", text: settings.url ?? t("webhook_off") }),
    h("dt", { text: t("webhook_secret") }), h("dd", { class: "mono", "data-test": "webhook-secret", text: settings.secret_set ? settings.secret_hint ?? "" : t("webhook_no_secret") }),
    h("dt", { text: t("webhook_thresholds") }), h("dd", { "data-test": "webhook-thresholds", text: pct(settings.thresholds) }),
    h("dt", { text: t("webhook_pending") }), h("dd", { text: `${num(settings.pending)} · ${t("webhook_failed")} ${num(settings.failed)}` }));
  const section = h("section", { class: "card", "data-test": "webhooks" }, h("h2", { text: t("webhooks") }), facts);
  if (!can.sudo) return section;
  const inputs = {
    url: h("input", { name: "url", type: "url", class: "mono", value: settings.url ?? "", placeholder: "https://hooks.example.com/marzneshin", autocomplete: "off" }),
    secret: h("input", { name: "secret", type: "password", class: "mono", autocomplete: "new-password", placeholder: settings.secret_set ? t("webhook_secret_keep", { hint: settings.secret_hint ?? "" }) : "" }),
    thresholds: h("input", { name: "thresholds", inputmode: "numeric", value: settings.thresholds.join(", "), placeholder: "80, 100" }),
  };
  /** Checks every field; returns the request body, or null after marking what is wrong. */
  function check() {
    for (const input of Object.values(inputs)) setFieldError(input, "");
    let ok = true;
    const url = inputs.url.value.trim();
    // As the API checks it: the scheme, at most 2048 bytes, no Unicode white space.
    if (url && (!/^https?:\/\//.test(url) || new TextEncoder().encode(url).length > 2048 || /[\s\u0085]/.test(url))) { setFieldError(inputs.url, t("err_webhook_url")); ok = false; }
    const secret = inputs.secret.value;
    const length = [...secret].length;
    if (secret && (length < 16 || length > 256)) { setFieldError(inputs.secret, t("err_webhook_secret")); ok = false; }
    if (url && !secret && !settings.secret_set) { setFieldError(inputs.secret, t("err_webhook_secret_required")); ok = false; }
    const thresholds = parseThresholds(inputs.thresholds.value);
    if (!thresholds) { setFieldError(inputs.thresholds, t("err_webhook_thresholds")); ok = false; }
    if (!ok) return null;
    /** @type {import("./api.js").WebhookSettingsInput} */
    const body = { url: url || null, thresholds: thresholds ?? [] };
    if (secret) body.secret = secret;
    return body;
  }
  for (const input of Object.values(inputs)) input.addEventListener("input", () => { if (input.getAttribute("aria-invalid") === "true") check(); });
  const form = h("form", { class: "form", novalidate: true, "data-test": "webhook-form", onsubmit: async (e) => {
    e.preventDefault();
    const body = check();
    if (!body) return;
    try {
      const saved = await api.putWebhook(body);
      toast(t("saved"));
      section.replaceWith(webhookSection(session, saved));
    } catch (error) {
      fieldOrToast(error, inputs);
    }
  } },
  field(t("webhook_url"), inputs.url, t("webhook_url_hint")),
  field(t("webhook_new_secret"), inputs.secret, settings.secret_set ? t("webhook_secret_hint") : t("webhook_secret_hint_first")),
  field(t("webhook_thresholds"), inputs.thresholds, t("webhook_thresholds_hint")),
  h("footer", { class: "form-actions" }, h("button", { type: "submit", class: "primary", "data-test": "save-webhook", text: t("save") })));
  section.append(form);
  return section;
}

/**
 * The routing rules (`GET`/`PUT /api/settings/routing`, docs/rules.md), for sudo admins only:
 * the engine's rules object, edited as JSON text. A read-only sudo admin sees the text without
 * the form. A rule the API refuses is named under the text (`rules[1].ports[0]: ...`).
 * @param {Session} session
 * @param {*} rules
 */
function routingSection(session, rules) {
  const { api, can } = session;
  const count = Array.isArray(rules.rules) ? rules.rules.length : 0;
  const summary = h("p", { "data-test": "routing-summary", text: t("routing_summary", { n: num(count), default: t(rules.default === "deny" ? "routing_deny" : "routing_allow") }) });
  const text = JSON.stringify(rules, null, 2);
  const section = h("section", { class: "card", "data-test": "routing" }, h("h2", { text: t("routing") }), summary);
  if (!can.sudo) {
    section.append(h("pre", { class: "mono", "data-test": "routing-json", text }));
    return section;
  }
  /** The parsed text; undefined while it is not JSON. */
  let parsed = rules;
  const area = h("textarea", { name: "routing", class: "mono", rows: "12", spellcheck: "false", "data-test": "routing-json", value: text, oninput: () => {
    try {
      parsed = JSON.parse(area.value);
      setFieldError(area, "");
    } catch (error) {
      parsed = undefined;
      setFieldError(area, t("err_json", { error: String(error.message) }));
    }
  } });
  const form = h("form", { class: "form", novalidate: true, "data-test": "routing-form", onsubmit: async (e) => {
    e.preventDefault();
    if (parsed === undefined) return;
    try {
      const saved = await api.putSettingsRouting(parsed);
      toast(t("saved"));
      section.replaceWith(routingSection(session, saved));
    } catch (error) {
      // The message names the field (`rules[0].ports[0]: ...`): show it under the text.
      if (error instanceof ApiError && error.field) setFieldError(area, error.message);
      else showError(error);
    }
  } },
  field(t("routing_rules"), area, t("routing_hint")),
  h("footer", { class: "form-actions" }, h("button", { type: "submit", class: "primary", "data-test": "save-routing", text: t("save") })));
  section.append(form);
  return section;
}

/**
 * The subscription options (`GET`/`PUT /api/settings/subscription`, docs/subscriptions.md):
 * every admin sees them; sudo admins that are not read-only get a form. An empty title or
 * support URL goes back to the default (`null`: the user's name; no support URL).
 * @param {Session} session
 * @param {import("./api.js").SubscriptionSettings} settings
 */
function subscriptionSection(session, settings) {
  const { api, can } = session;
  const facts = h("dl", { class: "facts" },
    h("dt", { text: t("profile_title") }), h("dd", { "data-test": "profile-title", text: settings.profile_title ?? t("profile_title_default") }),
    h("dt", { text: t("update_interval") }), h("dd", { "data-test": "update-interval", text: t("update_interval_value", { n: num(settings.update_interval) }) }),
    h("dt", { text: t("support_url") }), h("dd", { class: "mono", "data-test": "support-url", text: settings.support_url ?? t("none") }));
  const section = h("section", { class: "card", "data-test": "subscription-settings" }, h("h2", { text: t("subscription_settings") }), facts);
  if (!can.sudo) return section;
  const inputs = {
    profile_title: h("input", { name: "profile_title", value: settings.profile_title ?? "", placeholder: "{USERNAME}", autocomplete: "off" }),
    update_interval: h("input", { name: "update_interval", inputmode: "numeric", value: String(settings.update_interval) }),
    support_url: h("input", { name: "support_url", type: "url", class: "mono", value: settings.support_url ?? "", placeholder: "https://t.me/your_support", autocomplete: "off" }),
  };
  /** Checks every field as the API does; returns the request body, or null after marking what is wrong. */
  function check() {
    for (const input of Object.values(inputs)) setFieldError(input, "");
    let ok = true;
    const title = inputs.profile_title.value.trim();
    if ([...title].length > 128 || /[\u0000-\u001f\u007f-\u009f]/.test(title)) { setFieldError(inputs.profile_title, t("err_profile_title")); ok = false; }
    const hours = asciiDigits(inputs.update_interval.value.trim());
    if (!/^\d{1,3}$/.test(hours) || Number(hours) < 1 || Number(hours) > 168) { setFieldError(inputs.update_interval, t("err_update_interval")); ok = false; }
    const url = inputs.support_url.value.trim();
    if (url && (!/^https?:\/\/[\x21-\x7e]+$/.test(url) || url.length > 2048)) { setFieldError(inputs.support_url, t("err_support_url")); ok = false; }
    if (!ok) return null;
    return { profile_title: title || null, update_interval: Number(hours), support_url: url || null };
  }
  for (const input of Object.values(inputs)) input.addEventListener("input", () => { if (input.getAttribute("aria-invalid") === "true") check(); });
  const form = h("form", { class: "form", novalidate: true, "data-test": "subscription-form", onsubmit: async (e) => {
    e.preventDefault();
    const body = check();
    if (!body) return;
    try {
      const saved = await api.putSettingsSubscription(body);
      toast(t("saved"));
      section.replaceWith(subscriptionSection(session, saved));
    } catch (error) {
      fieldOrToast(error, inputs);
    }
  } },
  field(t("profile_title"), inputs.profile_title, t("profile_title_hint")),
  field(t("update_interval"), inputs.update_interval, t("update_interval_hint")),
  field(t("support_url"), inputs.support_url, t("support_url_hint")),
  h("footer", { class: "form-actions" }, h("button", { type: "submit", class: "primary", "data-test": "save-subscription", text: t("save") })));
  section.append(form);
  return section;
}

/** @param {HTMLElement} root @param {Session} session */
export async function settingsPage(root, session) {
  const { api, me } = session;
  const [subscription, webhooks, routing] = await Promise.all([
    api.getSettingsSubscription().then((settings) => subscriptionSection(session, settings)),
    me.is_sudo ? api.getWebhook().then((settings) => webhookSection(session, settings)) : null,
    // Rules stored that cannot be read must not take the rest of the page with them.
    me.is_sudo ? api.getSettingsRouting().then((rules) => routingSection(session, rules), (error) => { showError(error); return null; }) : null,
  ]);
  const theme = document.documentElement.dataset.theme ?? "light";
  const password = h("input", { type: "password", name: "password", autocomplete: "new-password" });
  const account = me.read_only ? null : h("section", { class: "card" }, h("h2", { text: t("account") }),
    h("form", { class: "form", novalidate: true, onsubmit: async (e) => {
      e.preventDefault();
      setFieldError(password, "");
      if (password.value.length < 8) return setFieldError(password, t("new_password"));
      try {
        await api.putAdminsByUsername(me.username, { password: password.value });
        toast(t("saved"));
        // The old token is void now: log in again.
        localStorage.removeItem("mz.token");
        navigate("#/login");
      } catch (error) {
        fieldOrToast(error, { password });
      }
    } }, field(t("new_password"), password), h("footer", { class: "form-actions" }, h("button", { type: "submit", class: "primary", text: t("change_password") }))));
  root.replaceChildren(
    h("h1", { text: t("settings") }),
    h("div", { class: "grid2" },
      h("section", { class: "card" }, h("h2", { text: t("preferences") }),
        field(t("language"), select(LOCALES.map((l) => l.code), locale(), { onchange: (e) => { setLocale(e.target.value); session.rerender(); } }, (c) => LOCALES.find((l) => l.code === c)?.name ?? c)),
        field(t("theme"), select(["light", "dark"], theme, { onchange: (e) => { setTheme(e.target.value); session.rerender(); } }))),
      account,
      subscription,
      webhooks,
      routing));
}
