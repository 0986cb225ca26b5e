// Small DOM building blocks: elements, dialogs, toasts, form fields, the usage chart and QR
// codes. No framework: pages rebuild their part of the DOM when their data changes.

import { t, bytes, hour, day, num } from "./i18n.js";

/**
 * Creates an element. `attrs`: `class`, `text`, `on<event>` handlers, `dataset`, boolean and
 * string attributes; children may be nodes, strings, arrays, or null/false (skipped).
 * @param {string} tag
 * @param {Record<string, *>} [attrs]
 * @param {...*} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") /** @type {HTMLInputElement} */ (el).value = v;
    else if (k === "checked") /** @type {HTMLInputElement} */ (el).checked = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Shows a short message at the bottom of the page. */
export function toast(message, kind = "ok") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const el = h("div", { class: `toast ${kind}`, text: message });
  box.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 6000 : 3000);
}

/** Shows an API error (or any error) as a toast. */
export function showError(error) {
  toast(error?.message || String(error), "error");
}

/**
 * A modal dialog. `body` is a node; `actions` are buttons. Returns the dialog; `close()` it.
 * @param {{title: string, body: Node, actions?: Node[], wide?: boolean}} options
 */
export function modal({ title, body, actions = [], wide = false }) {
  const dialog = /** @type {HTMLDialogElement} */ (
    h(
      "dialog",
      { class: wide ? "wide" : "", "aria-label": title },
      h("header", {}, h("h2", { text: title }), h("button", { class: "icon", type: "button", "aria-label": t("close"), text: "✕", onclick: () => dialog.close() })),
      h("div", { class: "dialog-body" }, body),
      actions.length ? h("footer", {}, actions) : null,
    )
  );
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

/** Asks a yes/no question; resolves to the answer. */
export function confirmDialog(message, danger = true) {
  return new Promise((resolve) => {
    let answer = false;
    const yes = h("button", { class: danger ? "danger" : "primary", type: "button", "data-test": "confirm", text: t("confirm"), onclick: () => { answer = true; dialog.close(); } });
    const no = h("button", { type: "button", text: t("cancel"), onclick: () => dialog.close() });
    const dialog = modal({ title: t("confirm"), body: h("p", { text: message }), actions: [no, yes] });
    dialog.addEventListener("close", () => resolve(answer));
  });
}

/** Copies text to the clipboard and says so. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = h("textarea", { class: "offscreen", value: text });
    document.body.append(area);
    /** @type {HTMLTextAreaElement} */ (area).select();
    document.execCommand("copy");
    area.remove();
  }
  toast(t("copied"));
}

/**
 * A labelled form field with room for an inline error. `input` is the control.
 * @param {string} label
 * @param {HTMLElement} input
 * @param {string} [hint]
 */
export function field(label, input, hint) {
  const error = h("div", { class: "field-error", role: "alert" });
  const wrap = h("label", { class: "field" }, h("span", { class: "label", text: label }), input, hint ? h("small", { text: hint }) : null, error);
  return wrap;
}

/** Sets (or clears, with "") the inline error of the field holding `input`. */
export function setFieldError(input, message) {
  const wrap = input.closest(".field");
  const error = wrap?.querySelector(".field-error");
  if (error) error.textContent = message;
  input.setAttribute("aria-invalid", message ? "true" : "false");
}

/** A select over `values`, labelled through `t()`. */
export function select(values, current, attrs = {}, label = (v) => t(v)) {
  return h("select", attrs, values.map((v) => h("option", { value: v, selected: v === current, text: label(v) })));
}

/** A status badge. */
export function badge(status) {
  return h("span", { class: `badge ${status}`, "data-status": status, text: t(status) });
}

/** A usage bar: used of limit. */
export function usageBar(used, limit) {
  const share = limit ? Math.min(1, used / limit) : 0;
  return h(
    "div",
    { class: "usage" },
    h("div", { class: "usage-text" }, h("bdi", { text: bytes(used) }), " / ", h("bdi", { text: limit ? bytes(limit) : t("unlimited") })),
    limit ? h("div", { class: "bar" }, h("div", { class: share >= 1 ? "fill full" : share > 0.8 ? "fill high" : "fill", style: `width:${(share * 100).toFixed(1)}%` })) : null,
  );
}

const SVG = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c);
  return el;
}

/**
 * Hourly usage as stacked bars (upload, download) in an inline SVG that scales to its box.
 * @param {Array<{hour: number, uplink: number, downlink: number}>} buckets
 * @param {number} start first hour shown (Unix seconds, on the hour)
 * @param {number} hours how many hours
 */
export function usageChart(buckets, start, hours) {
  const byHour = new Map(buckets.map((b) => [b.hour, b]));
  const width = 600;
  const height = 180;
  const pad = { top: 10, bottom: 22, left: 4, right: 4 };
  const slot = (width - pad.left - pad.right) / hours;
  let max = 0;
  for (const b of buckets) max = Math.max(max, b.uplink + b.downlink);
  const chart = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": t("usage") });
  const inner = height - pad.top - pad.bottom;
  chart.append(s("line", { x1: pad.left, x2: width - pad.right, y1: height - pad.bottom, y2: height - pad.bottom, class: "axis" }));
  for (let i = 0; i < hours; i++) {
    const at = start + i * 3600;
    const b = byHour.get(at);
    const x = pad.left + i * slot;
    if (b && max > 0) {
      const up = (b.uplink / max) * inner;
      const down = (b.downlink / max) * inner;
      const title = s("title");
      title.textContent = `${day(at)} ${hour(at)} · ${t("uplink")} ${bytes(b.uplink)} · ${t("downlink")} ${bytes(b.downlink)}`;
      chart.append(
        s("g", {}, title,
          s("rect", { x: x + 1, width: Math.max(1, slot - 2), y: height - pad.bottom - down, height: down, class: "down" }),
          s("rect", { x: x + 1, width: Math.max(1, slot - 2), y: height - pad.bottom - down - up, height: up, class: "up" })),
      );
    }
    if (i % Math.max(1, Math.round(hours / 6)) === 0) {
      const label = s("text", { x: x + slot / 2, y: height - 6, class: "tick", "text-anchor": "middle" });
      label.textContent = hours > 48 ? day(at) : hour(at);
      chart.append(label);
    }
  }
  const legend = h("div", { class: "legend" },
    h("span", { class: "key up" }), t("uplink"), " ", h("span", { class: "key down" }), t("downlink"),
    max === 0 ? h("span", { class: "muted", text: " · " + t("no_data") }) : ` · max ${bytes(max)}/h`);
  return h("figure", { class: "chart-box" }, chart, legend);
}

/**
 * A small bar chart of hourly totals (upload + download), for lists.
 * @param {Array<{hour: number, uplink: number, downlink: number}>} buckets
 * @param {number} start first hour shown (Unix seconds, on the hour)
 * @param {number} hours how many hours
 */
export function sparkline(buckets, start, hours) {
  const width = 96;
  const height = 20;
  const max = Math.max(1, ...buckets.map((b) => b.uplink + b.downlink));
  const chart = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "spark", "aria-hidden": "true" });
  for (const b of buckets) {
    const i = Math.round((b.hour - start) / 3600);
    if (i < 0 || i >= hours) continue;
    const bar = Math.max(1, ((b.uplink + b.downlink) / max) * height);
    chart.append(s("rect", { x: (i * width) / hours, width: Math.max(1, width / hours - 0.5), y: height - bar, height: bar, class: "down" }));
  }
  return chart;
}

/** A dot for a user seen in the last 5 minutes (what the API counts as online). */
export function onlineDot(onlineAt) {
  if (!onlineAt || Date.now() / 1000 - onlineAt > 300) return null;
  return h("span", { class: "online", title: t("online_now"), "aria-label": t("online_now") });
}

/** Counts as labelled horizontal bars (users by status). */
export function countBars(rows) {
  const max = Math.max(1, ...rows.map((r) => r.value));
  return h("div", { class: "count-bars" }, rows.map((r) =>
    h("div", { class: "count-row" },
      h("span", { class: "count-label" }, badge(r.key)),
      h("span", { class: "count-track" }, h("span", { class: `count-fill ${r.key}`, style: `width:${(r.value / max) * 100}%` })),
      h("span", { class: "count-value", text: num(r.value) }))));
}

/** A QR code of `text`, drawn by the panel (`POST /dashboard/qr`), as an inline SVG. */
export async function qrCode(text) {
  const box = h("div", { class: "qr", "data-test": "qr" });
  const response = await fetch("/dashboard/qr", { method: "POST", body: text, headers: { "content-type": "text/plain" } });
  if (!response.ok) throw new Error(`QR code: ${response.status}`);
  const doc = new DOMParser().parseFromString(await response.text(), "image/svg+xml");
  const svg = doc.documentElement;
  if (svg.nodeName !== "svg") throw new Error("QR code: not SVG");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", t("qr_code"));
  box.append(document.importNode(svg, true));
  return box;
}

/** Unix seconds from a `datetime-local` value (local time), or undefined. */
export function fromLocalInput(value) {
  if (!value) return undefined;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}

/** A `datetime-local` value (local time) for Unix seconds. */
export function toLocalInput(seconds) {
  if (!seconds) return "";
  const d = new Date(seconds * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}
