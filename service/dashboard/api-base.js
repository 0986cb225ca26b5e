// What every generated API client (api.js) builds on: sending a request with the admin's
// bearer token, decoding the answer, and turning error answers into `ApiError`s.
// Hand-written; api.js (generated) adds one method per operation.
// @ts-check

/** @typedef {{detail: string, field?: string}} ErrorBody */

/**
 * @typedef {Object} ApiOptions
 * @property {string} [base] Where the API is (default: the spec's server, `/api`).
 * @property {() => (string|null)} [token] The bearer token to send, if any.
 * @property {(error: ApiError) => void} [onUnauthorized] Called on every 401 answer.
 */

/** An error answer of the API: its status and its `ErrorBody`. */
export class ApiError extends Error {
  /** @param {number} status @param {ErrorBody} body */
  constructor(status, body) {
    super(body.detail);
    this.status = status;
    this.body = body;
    /** The field at fault, when there is one. */
    this.field = body.field;
  }
}

/** Sends requests; `Api` adds one method per operation. */
export class ApiBase {
  /** @param {ApiOptions} options */
  constructor(options) {
    this.base = options.base ?? "/api";
    this.token = options.token ?? (() => null);
    this.onUnauthorized = options.onUnauthorized ?? (() => {});
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {{query?: Object<string, *>, json?: *, form?: Object<string, *>, text?: boolean}} [options]
   * @returns {Promise<*>}
   */
  async request(method, path, options = {}) {
    let url = this.base + path;
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(options.query ?? {})) {
      if (v !== undefined && v !== null && v !== "") query.set(k, String(v));
    }
    if ([...query].length) url += "?" + query;
    /** @type {Record<string, string>} */
    const headers = { accept: "application/json" };
    const token = this.token();
    if (token) headers.authorization = "Bearer " + token;
    /** @type {BodyInit|undefined} */
    let body;
    if (options.form) {
      body = new URLSearchParams(options.form);
    } else if (options.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    let response;
    try {
      response = await fetch(url, { method, headers, body });
    } catch (e) {
      throw new ApiError(0, { detail: "network error: " + e });
    }
    const text = await response.text();
    if (!response.ok) {
      let detail;
      try {
        detail = JSON.parse(text);
      } catch {
        detail = { detail: text || response.statusText };
      }
      const error = new ApiError(response.status, detail);
      if (response.status === 401) this.onUnauthorized(error);
      throw error;
    }
    if (options.text) return text;
    return text ? JSON.parse(text) : undefined;
  }
}
