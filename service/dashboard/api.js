// The Marzneshin API client, generated from openapi/openapi.json by
//     cargo run -p service -- openapi --client > service/dashboard/api.js
// Do not edit: change the API, then regenerate.
// @ts-check

import { ApiBase, ApiError } from "./api-base.js";
export { ApiBase, ApiError };

/** @typedef {import("./api-base.js").ApiOptions} ApiOptions */

/**
 * An admin as the API shows it.
 * @typedef {Object} Admin
 * @property {boolean} all_services_access May use every service.
 * @property {boolean} enabled May log in.
 * @property {boolean} is_sudo May do everything.
 * @property {boolean} modify_users_access May create and change users.
 * @property {boolean} read_only Sees, never changes.
 * @property {Array<number>} service_ids Services this admin may use (when not `all_services_access`).
 * @property {string} username Login name.
 */

/**
 * A new admin.
 * @typedef {Object} AdminCreate
 * @property {boolean} [all_services_access] May use every service.
 * @property {boolean} [is_sudo] May do everything.
 * @property {boolean} [modify_users_access] May create and change users.
 * @property {string} password At least 8 characters.
 * @property {boolean} [read_only] Sees, never changes.
 * @property {Array<number>} [service_ids] Services this admin may use.
 * @property {string} username Login name: 3-32 letters, digits or underscores.
 */

/**
 * Changes to an admin (absent fields stay as they are).
 * @typedef {Object} AdminModify
 * @property {boolean} [all_services_access] May use every service.
 * @property {boolean} [enabled] May log in.
 * @property {boolean} [is_sudo] May do everything.
 * @property {boolean} [modify_users_access] May create and change users.
 * @property {string} [password] New password (invalidates existing tokens).
 * @property {boolean} [read_only] Sees, never changes.
 * @property {Array<number>} [service_ids] Services this admin may use.
 */

/**
 * The engine in this panel's process.
 * @typedef {Object} EngineStatus
 * @property {Array<InboundTraffic>} inbounds Every inbound the engine serves, by tag.
 * @property {string} run_id Identifies this engine run (counters restart with each run).
 * @property {boolean} running Whether the engine serves connections (false once it has been stopped).
 * @property {number} started_at When this run started, Unix seconds.
 * @property {number} uptime Seconds since the start.
 * @property {number} workers Worker threads.
 */

/**
 * The body of every error response.
 * @typedef {Object} ErrorBody
 * @property {string} detail What went wrong, for a person.
 * @property {string} [field] The field at fault, when there is one.
 */

/** When a user's access ends. @typedef {("never"|"fixed_date"|"start_on_first_use")} ExpireStrategy */
/** @type {ReadonlyArray<ExpireStrategy>} */
export const ExpireStrategyValues = Object.freeze(["never", "fixed_date", "start_on_first_use"]);

/**
 * A host of an inbound.
 * @typedef {Object} Host
 * @property {string} address Address clients connect to (placeholders allowed).
 * @property {string} [host] HTTP Host header of a WebSocket transport (not used by Shadowsocks). A list and `*` as for `sni`.
 * @property {number} id Id.
 * @property {number} inbound_id The inbound it belongs to.
 * @property {string} [path] HTTP path (not used by Shadowsocks).
 * @property {number} [port] Port clients connect to (absent: the inbound's port).
 * @property {string} remark Name shown by clients. Placeholders such as `{USERNAME}`, `{DATA_LEFT}`, `{DAYS_LEFT}`, `{EXPIRE_DATE}` are filled per user (docs/subscriptions.md).
 * @property {HostSecurity} security TLS towards this host (not used by Shadowsocks).
 * @property {string} [sni] TLS server name (not used by Shadowsocks). A comma-separated list gives one at random per fetch; `*` is replaced by a random label.
 * @property {number} weight Order in subscriptions: lower weights come first.
 */

/**
 * A new or changed host.
 * @typedef {Object} HostInput
 * @property {string} address Address clients connect to, 1 to 256 characters (placeholders allowed).
 * @property {string} [host] HTTP Host header of a WebSocket transport (a list and `*` as for `sni`).
 * @property {string} [path] HTTP path.
 * @property {number} [port] Port clients connect to, 1 to 65535 (absent: the inbound's port).
 * @property {string} remark Name shown by clients, 1 to 256 characters (placeholders allowed).
 * @property {HostSecurity} [security] TLS towards this host.
 * @property {string} [sni] TLS server name, or a comma-separated list of them (one is picked at random per fetch; `*` is replaced by a random label).
 * @property {number} [weight] Order in subscriptions: lower weights come first (default 1).
 */

/** Whether clients use TLS to reach a host. @typedef {("inbound_default"|"none"|"tls")} HostSecurity */
/** @type {ReadonlyArray<HostSecurity>} */
export const HostSecurityValues = Object.freeze(["inbound_default", "none", "tls"]);

/**
 * An inbound: a listener of the engine.
 * @typedef {Object} Inbound
 * @property {*} config The engine inbound configuration (docs/engine-config.md), without users.
 * @property {number} id Id.
 * @property {string} protocol Protocol (`shadowsocks`, ...).
 * @property {string} tag Unique tag.
 */

/**
 * A new or changed inbound.
 * @typedef {Object} InboundInput
 * @property {*} config The engine inbound configuration (docs/engine-config.md); `settings.users` must be empty or absent: users come from services.
 */

/**
 * One inbound's traffic in this engine run.
 * @typedef {Object} InboundTraffic
 * @property {number} downlink Bytes to clients in this run.
 * @property {number} open Connections (TCP) and sessions (UDP) open now.
 * @property {string} tag Inbound tag.
 * @property {number} uplink Bytes from clients in this run.
 */

/**
 * The OAuth2 password form.
 * @typedef {Object} LoginForm
 * @property {string} password Password.
 * @property {string} username Admin name.
 */

/** When a user's used traffic is reset. @typedef {("no_reset"|"day"|"week"|"month"|"year")} ResetStrategy */
/** @type {ReadonlyArray<ResetStrategy>} */
export const ResetStrategyValues = Object.freeze(["no_reset", "day", "week", "month", "year"]);

/**
 * A service: a group of inbounds users are given together.
 * @typedef {Object} Service
 * @property {number} id Id.
 * @property {Array<number>} inbound_ids Inbounds in the service.
 * @property {string} name Unique name.
 */

/**
 * A new or changed service.
 * @typedef {Object} ServiceInput
 * @property {Array<number>} [inbound_ids] Inbounds in the service.
 * @property {string} name Unique name.
 */

/** A format asked for by name. @typedef {("links"|"base64"|"sing-box"|"clash-meta"|"xray"|"v2ray"|"clash")} SubscriptionFormat */
/** @type {ReadonlyArray<SubscriptionFormat>} */
export const SubscriptionFormatValues = Object.freeze(["links", "base64", "sing-box", "clash-meta", "xray", "v2ray", "clash"]);

/**
 * The subscription options as the API shows them.
 * @typedef {Object} SubscriptionSettings
 * @property {string} [profile_title] The `profile-title` clients show, with the placeholders of host remarks (`{USERNAME}`, `{DATA_LEFT}`, `{DAYS_LEFT}`...) filled per user; absent: the user's name.
 * @property {string} [support_url] Where users get help (`support-url`, and a link on the subscription page); absent: none.
 * @property {number} update_interval Hours between a client's fetches (`profile-update-interval`), 1 to 168.
 */

/**
 * A change to the subscription options. Absent fields keep their value; `null` goes back to the default (the user's name as the title; no support URL).
 * @typedef {Object} SubscriptionSettingsInput
 * @property {string} [profile_title] 1 to 128 characters without control characters (trimmed); `null`: the user's name.
 * @property {string} [support_url] `http://` or `https://` URL of at most 2048 printable ASCII characters; `null`: none.
 * @property {number} [update_interval] Hours between fetches, 1 to 168.
 */

/**
 * Users by status and traffic totals.
 * @typedef {Object} SystemStats
 * @property {number} active_users Active users.
 * @property {number} disabled_users Disabled users.
 * @property {number} expired_users Expired users.
 * @property {number} limited_users Users over their data limit.
 * @property {number} on_hold_users Users waiting for first use.
 * @property {number} online_users Users with traffic in the last 5 minutes.
 * @property {number} total_downlink Bytes to users, ever.
 * @property {number} total_uplink Bytes from users, ever.
 * @property {number} total_users Every user.
 */

/**
 * An access token.
 * @typedef {Object} Token
 * @property {string} access_token The bearer token.
 * @property {boolean} is_sudo Whether the admin is sudo.
 * @property {string} token_type Always `bearer`.
 */

/**
 * Hourly usage of a user, or of every user an admin sees.
 * @typedef {Object} UsageBucket
 * @property {number} downlink Bytes to the user.
 * @property {number} hour Start of the hour, Unix seconds.
 * @property {number} uplink Bytes from the user.
 */

/**
 * A proxy user as the API shows it.
 * @typedef {Object} User
 * @property {number} [activated_at] When a start_on_first_use user started.
 * @property {number} [activation_deadline] Latest start for start_on_first_use, Unix seconds.
 * @property {number} created_at Created, Unix seconds.
 * @property {number} [data_limit] Bytes allowed per reset period (none: unlimited).
 * @property {ResetStrategy} data_limit_reset_strategy When used traffic resets.
 * @property {boolean} enabled Enabled by an admin.
 * @property {number} [expire_date] Expiry (fixed_date), Unix seconds.
 * @property {ExpireStrategy} expire_strategy How the user expires.
 * @property {number} id Id.
 * @property {string} key The secret every per-protocol credential derives from.
 * @property {number} lifetime_used_traffic Bytes used ever.
 * @property {string} [note] Free text.
 * @property {number} [online_at] Last traffic seen, Unix seconds.
 * @property {string} [owner_username] The owning admin.
 * @property {Array<number>} service_ids Services the user belongs to.
 * @property {UserStatus} status Current status.
 * @property {string} [sub_last_user_agent] User agent of the last subscription fetch.
 * @property {number} [sub_updated_at] Last subscription fetch, Unix seconds.
 * @property {number} [usage_duration] Seconds of access after first use (start_on_first_use).
 * @property {number} used_traffic Bytes used since the last reset.
 * @property {string} username Name: 3-32 letters, digits or underscores.
 */

/**
 * A new user.
 * @typedef {Object} UserCreate
 * @property {number} [activation_deadline] Latest start for start_on_first_use, Unix seconds.
 * @property {number} [data_limit] Bytes allowed per reset period (absent or 0: unlimited).
 * @property {ResetStrategy} [data_limit_reset_strategy] When used traffic resets.
 * @property {boolean} [enabled] Enabled (default true).
 * @property {number} [expire_date] Expiry for fixed_date, Unix seconds.
 * @property {ExpireStrategy} [expire_strategy] How the user expires.
 * @property {string} [note] Free text.
 * @property {Array<number>} [service_ids] Services the user belongs to.
 * @property {number} [usage_duration] Seconds of access after first use, for start_on_first_use.
 * @property {string} username Name: 3-32 letters, digits or underscores.
 */

/**
 * Changes to a user (absent fields stay as they are; `null` clears optional ones where noted).
 * @typedef {Object} UserModify
 * @property {number} [activation_deadline] Latest start for start_on_first_use.
 * @property {number} [data_limit] Bytes allowed (0 clears the limit).
 * @property {ResetStrategy} [data_limit_reset_strategy] When used traffic resets.
 * @property {boolean} [enabled] Enabled.
 * @property {number} [expire_date] Expiry for fixed_date.
 * @property {ExpireStrategy} [expire_strategy] How the user expires.
 * @property {string} [note] Free text.
 * @property {Array<number>} [service_ids] Services the user belongs to.
 * @property {number} [usage_duration] Seconds of access after first use.
 */

/** Sort orders for the user list. @typedef {("created_desc"|"created_asc"|"username"|"used_traffic_desc")} UserOrder */
/** @type {ReadonlyArray<UserOrder>} */
export const UserOrderValues = Object.freeze(["created_desc", "created_asc", "username", "used_traffic_desc"]);

/**
 * A page of users.
 * @typedef {Object} UserPage
 * @property {Array<User>} items The users on this page.
 * @property {number} page Page number, from 1.
 * @property {number} size Page size.
 * @property {number} total Users matching the filter, on every page.
 */

/** Where a user stands. @typedef {("active"|"disabled"|"limited"|"expired"|"on_hold")} UserStatus */
/** @type {ReadonlyArray<UserStatus>} */
export const UserStatusValues = Object.freeze(["active", "disabled", "limited", "expired", "on_hold"]);

/**
 * One event in the outbox (sent events are deleted, so they are not listed).
 * @typedef {Object} WebhookEvent
 * @property {number} attempts Failed attempts so far (0 again after a retry).
 * @property {number} created_at When the event happened (Unix seconds).
 * @property {string} event Event name, such as `user.created`.
 * @property {number} [failed_at] When the last attempt failed and the event was given up on (Unix seconds).
 * @property {number} id Event id (also the `X-Marzneshin-Delivery` header of each attempt).
 * @property {string} [last_error] Why the last attempt failed (the receiver's status or the connection error).
 * @property {number} [next_attempt_at] When the next attempt is due (Unix seconds, rounded up); none for a failed event.
 * @property {*} payload The body that is sent, as recorded when the event happened.
 * @property {WebhookEventStatus} status Pending or failed.
 */

/**
 * A page of outbox events, newest first.
 * @typedef {Object} WebhookEventPage
 * @property {Array<WebhookEvent>} items The events of this page.
 * @property {number} page This page, from 1.
 * @property {number} size Page size.
 * @property {number} total Events matching the filter, on all pages.
 */

/** Where an event of the outbox stands. @typedef {("pending"|"failed")} WebhookEventStatus */
/** @type {ReadonlyArray<WebhookEventStatus>} */
export const WebhookEventStatusValues = Object.freeze(["pending", "failed"]);

/**
 * The webhook configuration as the API shows it.
 * @typedef {Object} WebhookSettings
 * @property {number} failed Events given up on after repeated failures (kept in the outbox).
 * @property {number} pending Events waiting to be sent.
 * @property {string} [secret_hint] The secret's last four characters, to tell which one is set.
 * @property {boolean} secret_set Whether a secret is set (events are only recorded and sent with one).
 * @property {Array<number>} thresholds Percentages of a user's data limit that send `user.usage_threshold` when crossed.
 * @property {string} [url] Receiver of the events (absent: webhooks are off and no events are recorded).
 */

/**
 * A change to the webhook configuration. Absent fields keep their value; `url: null` turns webhooks off.
 * @typedef {Object} WebhookSettingsInput
 * @property {string} [secret] HMAC-SHA256 key, 16 to 256 characters. Required when a URL is set and no secret is stored yet.
 * @property {Array<number>} [thresholds] Percentages (1 to 100) of the data limit that send `user.usage_threshold`, at most 10.
 * @property {string} [url] `http://` or `https://` URL of the receiver, at most 2048 characters; `null`: off.
 */


/** One method per API operation. */
export class Api extends ApiBase {
  /** @param {ApiOptions} [options] */
  constructor(options = {}) {
    super({ base: "/api", ...options });
  }

  /**
   * Every admin (sudo only).
   * `GET /admins`
   * @returns {Promise<Array<Admin>>}
   */
  getAdmins() {
    return this.request("GET", "/admins");
  }

  /**
   * Create an admin (sudo only).
   * `POST /admins`
   * @param {AdminCreate} body
   * @returns {Promise<Admin>}
   */
  postAdmins(body) {
    return this.request("POST", "/admins", { json: body });
  }

  /**
   * The admin the token belongs to.
   * `GET /admins/current`
   * @returns {Promise<Admin>}
   */
  getAdminsCurrent() {
    return this.request("GET", "/admins/current");
  }

  /**
   * Log in: exchange a name and password for a bearer token. Failed logins are throttled per client address (an IPv6 address's /64) and admin name: 5 per 5 minutes.
   * `POST /admins/token`
   * @param {LoginForm} body
   * @returns {Promise<Token>}
   */
  postAdminsToken(body) {
    return this.request("POST", "/admins/token", { form: body });
  }

  /**
   * Delete an admin (sudo only; not yourself). Their users stay, without an owner.
   * `DELETE /admins/{username}`
   * @param {string} username 
   * @returns {Promise<boolean>}
   */
  deleteAdminsByUsername(username) {
    return this.request("DELETE", "/admins/" + encodeURIComponent(username));
  }

  /**
   * Change an admin (sudo; any admin may change their own password).
   * `PUT /admins/{username}`
   * @param {string} username 
   * @param {AdminModify} body
   * @returns {Promise<Admin>}
   */
  putAdminsByUsername(username, body) {
    return this.request("PUT", "/admins/" + encodeURIComponent(username), { json: body });
  }

  /**
   * Every inbound.
   * `GET /inbounds`
   * @returns {Promise<Array<Inbound>>}
   */
  getInbounds() {
    return this.request("GET", "/inbounds");
  }

  /**
   * Create an inbound (sudo only); the engine starts listening at once.
   * `POST /inbounds`
   * @param {InboundInput} body
   * @returns {Promise<Inbound>}
   */
  postInbounds(body) {
    return this.request("POST", "/inbounds", { json: body });
  }

  /**
   * Delete a host (sudo only).
   * `DELETE /inbounds/hosts/{id}`
   * @param {number} id Host id.
   * @returns {Promise<boolean>}
   */
  deleteInboundsHostsById(id) {
    return this.request("DELETE", "/inbounds/hosts/" + encodeURIComponent(id));
  }

  /**
   * One host.
   * `GET /inbounds/hosts/{id}`
   * @param {number} id Host id.
   * @returns {Promise<Host>}
   */
  getInboundsHostsById(id) {
    return this.request("GET", "/inbounds/hosts/" + encodeURIComponent(id));
  }

  /**
   * Replace a host's fields (sudo only).
   * `PUT /inbounds/hosts/{id}`
   * @param {number} id Host id.
   * @param {HostInput} body
   * @returns {Promise<Host>}
   */
  putInboundsHostsById(id, body) {
    return this.request("PUT", "/inbounds/hosts/" + encodeURIComponent(id), { json: body });
  }

  /**
   * Delete an inbound (sudo only); its listener and connections close.
   * `DELETE /inbounds/{id}`
   * @param {number} id 
   * @returns {Promise<boolean>}
   */
  deleteInboundsById(id) {
    return this.request("DELETE", "/inbounds/" + encodeURIComponent(id));
  }

  /**
   * One inbound.
   * `GET /inbounds/{id}`
   * @param {number} id 
   * @returns {Promise<Inbound>}
   */
  getInboundsById(id) {
    return this.request("GET", "/inbounds/" + encodeURIComponent(id));
  }

  /**
   * Replace an inbound's configuration (sudo only). Connections on it are closed if its listener or protocol settings change.
   * `PUT /inbounds/{id}`
   * @param {number} id 
   * @param {InboundInput} body
   * @returns {Promise<Inbound>}
   */
  putInboundsById(id, body) {
    return this.request("PUT", "/inbounds/" + encodeURIComponent(id), { json: body });
  }

  /**
   * The hosts of an inbound, in id order. With none, subscriptions offer the inbound at its listen address (replace `0.0.0.0` with a host clients can reach).
   * `GET /inbounds/{id}/hosts`
   * @param {number} id Inbound id.
   * @returns {Promise<Array<Host>>}
   */
  getInboundsByIdHosts(id) {
    return this.request("GET", "/inbounds/" + encodeURIComponent(id) + "/hosts");
  }

  /**
   * Add a host to an inbound (sudo only).
   * `POST /inbounds/{id}/hosts`
   * @param {number} id Inbound id.
   * @param {HostInput} body
   * @returns {Promise<Host>}
   */
  postInboundsByIdHosts(id, body) {
    return this.request("POST", "/inbounds/" + encodeURIComponent(id) + "/hosts", { json: body });
  }

  /**
   * Services this admin may use.
   * `GET /services`
   * @returns {Promise<Array<Service>>}
   */
  getServices() {
    return this.request("GET", "/services");
  }

  /**
   * Create a service (sudo only).
   * `POST /services`
   * @param {ServiceInput} body
   * @returns {Promise<Service>}
   */
  postServices(body) {
    return this.request("POST", "/services", { json: body });
  }

  /**
   * Delete a service (sudo only).
   * `DELETE /services/{id}`
   * @param {number} id 
   * @returns {Promise<boolean>}
   */
  deleteServicesById(id) {
    return this.request("DELETE", "/services/" + encodeURIComponent(id));
  }

  /**
   * One service.
   * `GET /services/{id}`
   * @param {number} id 
   * @returns {Promise<Service>}
   */
  getServicesById(id) {
    return this.request("GET", "/services/" + encodeURIComponent(id));
  }

  /**
   * Change a service (sudo only). Its users get or lose the inbounds at once.
   * `PUT /services/{id}`
   * @param {number} id 
   * @param {ServiceInput} body
   * @returns {Promise<Service>}
   */
  putServicesById(id, body) {
    return this.request("PUT", "/services/" + encodeURIComponent(id), { json: body });
  }

  /**
   * The routing rules (sudo admins only): the engine's rules object, as docs/rules.md describes it. `{"default": "allow"}` when none are set.
   * `GET /settings/routing`
   * @returns {Promise<*>}
   */
  getSettingsRouting() {
    return this.request("GET", "/settings/routing");
  }

  /**
   * Replace the routing rules (sudo admins that are not read-only) with a rules object as docs/rules.md describes it (`rules`, `default`, `timezone`, `geoip_database`). New connections and every UDP packet from now on are decided by them; a TCP connection already relaying keeps its destination. Rules that do not compile get 422 naming the field (`rules[2].ports[0]`) and change nothing. `{}` removes every rule.
   * `PUT /settings/routing`
   * @param {*} body
   * @returns {Promise<*>}
   */
  putSettingsRouting(body) {
    return this.request("PUT", "/settings/routing", { json: body });
  }

  /**
   * The subscription options (any admin may read them).
   * `GET /settings/subscription`
   * @returns {Promise<SubscriptionSettings>}
   */
  getSettingsSubscription() {
    return this.request("GET", "/settings/subscription");
  }

  /**
   * Change the subscription options (sudo admins that are not read-only). Every subscription fetched afterwards carries them.
   * `PUT /settings/subscription`
   * @param {SubscriptionSettingsInput} body
   * @returns {Promise<SubscriptionSettings>}
   */
  putSettingsSubscription(body) {
    return this.request("PUT", "/settings/subscription", { json: body });
  }

  /**
   * A user's subscription in the format their client reads, chosen by `User-Agent` (docs/subscriptions.md): Clash clients get Clash Meta YAML, sing-box clients sing-box JSON, newer v2rayN/v2rayNG and Streisand Xray JSON, browsers a page, others base64 links. Also served at `/sub/{username}/{key}` outside `/api`.
   * `GET /sub/{username}/{key}`
   * @param {string} username User name.
   * @param {string} key The user's key.
   * @returns {Promise<string>}
   */
  getSubByUsernameByKey(username, key) {
    return this.request("GET", "/sub/" + encodeURIComponent(username) + "/" + encodeURIComponent(key), { text: true });
  }

  /**
   * A user's subscription in the named format. Also served at `/sub/{username}/{key}/{format}` outside `/api`.
   * `GET /sub/{username}/{key}/{format}`
   * @param {string} username User name.
   * @param {string} key The user's key.
   * @param {SubscriptionFormat} format The format.
   * @returns {Promise<string>}
   */
  getSubByUsernameByKeyByFormat(username, key, format) {
    return this.request("GET", "/sub/" + encodeURIComponent(username) + "/" + encodeURIComponent(key) + "/" + encodeURIComponent(format), { text: true });
  }

  /**
   * The engine in this panel's process: running or stopped, this run's id and start, and each inbound's open connections and traffic since the start. Any admin may read it, as any admin may list the inbounds.
   * `GET /system/engine`
   * @returns {Promise<EngineStatus>}
   */
  getSystemEngine() {
    return this.request("GET", "/system/engine");
  }

  /**
   * Users by status and traffic totals (over the users this admin sees).
   * `GET /system/stats`
   * @returns {Promise<SystemStats>}
   */
  getSystemStats() {
    return this.request("GET", "/system/stats");
  }

  /**
   * Hourly usage summed over every user this admin sees (a non-sudo admin: their own users), for the last `hours` hours including the current one (1 to 744, default 24). Hours without traffic are left out.
   * `GET /system/usage`
   * @param {{hours?: number}} [query]
   * @returns {Promise<Array<UsageBucket>>}
   */
  getSystemUsage(query = {}) {
    return this.request("GET", "/system/usage", { query });
  }

  /**
   * Users this admin may see, filtered, sorted and paginated.
   * `GET /users`
   * @param {{username?: string, status?: UserStatus, order?: UserOrder, page?: number, size?: number}} [query]
   * @returns {Promise<UserPage>}
   */
  getUsers(query = {}) {
    return this.request("GET", "/users", { query });
  }

  /**
   * Create a user owned by this admin.
   * `POST /users`
   * @param {UserCreate} body
   * @returns {Promise<User>}
   */
  postUsers(body) {
    return this.request("POST", "/users", { json: body });
  }

  /**
   * Delete a user (their connections close at once).
   * `DELETE /users/{username}`
   * @param {string} username 
   * @returns {Promise<boolean>}
   */
  deleteUsersByUsername(username) {
    return this.request("DELETE", "/users/" + encodeURIComponent(username));
  }

  /**
   * One user.
   * `GET /users/{username}`
   * @param {string} username 
   * @returns {Promise<User>}
   */
  getUsersByUsername(username) {
    return this.request("GET", "/users/" + encodeURIComponent(username));
  }

  /**
   * Change a user.
   * `PUT /users/{username}`
   * @param {string} username 
   * @param {UserModify} body
   * @returns {Promise<User>}
   */
  putUsersByUsername(username, body) {
    return this.request("PUT", "/users/" + encodeURIComponent(username), { json: body });
  }

  /**
   * Disable a user (their connections close at once).
   * `POST /users/{username}/disable`
   * @param {string} username 
   * @returns {Promise<User>}
   */
  postUsersByUsernameDisable(username) {
    return this.request("POST", "/users/" + encodeURIComponent(username) + "/disable");
  }

  /**
   * Enable a user.
   * `POST /users/{username}/enable`
   * @param {string} username 
   * @returns {Promise<User>}
   */
  postUsersByUsernameEnable(username) {
    return this.request("POST", "/users/" + encodeURIComponent(username) + "/enable");
  }

  /**
   * Reset a user's used traffic to zero.
   * `POST /users/{username}/reset`
   * @param {string} username 
   * @returns {Promise<User>}
   */
  postUsersByUsernameReset(username) {
    return this.request("POST", "/users/" + encodeURIComponent(username) + "/reset");
  }

  /**
   * Give the user a new key: old subscription links and credentials stop working.
   * `POST /users/{username}/revoke_sub`
   * @param {string} username 
   * @returns {Promise<User>}
   */
  postUsersByUsernameRevokeSub(username) {
    return this.request("POST", "/users/" + encodeURIComponent(username) + "/revoke_sub");
  }

  /**
   * Hourly usage of a user between two times (Unix seconds; default: the last 24 hours).
   * `GET /users/{username}/usage`
   * @param {string} username 
   * @param {{start?: number, end?: number}} [query]
   * @returns {Promise<Array<UsageBucket>>}
   */
  getUsersByUsernameUsage(username, query = {}) {
    return this.request("GET", "/users/" + encodeURIComponent(username) + "/usage", { query });
  }

  /**
   * The webhook configuration (sudo only; the secret is never returned).
   * `GET /webhook`
   * @returns {Promise<WebhookSettings>}
   */
  getWebhook() {
    return this.request("GET", "/webhook");
  }

  /**
   * Change the webhook configuration (sudo admins that are not read-only). Events are recorded from now on while a URL and a secret are set; events already recorded are sent to the current URL.
   * `PUT /webhook`
   * @param {WebhookSettingsInput} body
   * @returns {Promise<WebhookSettings>}
   */
  putWebhook(body) {
    return this.request("PUT", "/webhook", { json: body });
  }

  /**
   * Events in the outbox, newest first: pending ones and those given up on after repeated failures (sudo only). Sent events are deleted and not listed.
   * `GET /webhook/events`
   * @param {{status?: WebhookEventStatus, page?: number, size?: number}} [query]
   * @returns {Promise<WebhookEventPage>}
   */
  getWebhookEvents(query = {}) {
    return this.request("GET", "/webhook/events", { query });
  }

  /**
   * Send a failed event again (sudo admins that are not read-only): its attempts start over and it is due now. Events are delivered oldest first, so it goes before any newer pending event. 409 when the event is not failed (it is still being tried).
   * `POST /webhook/events/{id}/retry`
   * @param {number} id Event id.
   * @returns {Promise<WebhookEvent>}
   */
  postWebhookEventsByIdRetry(id) {
    return this.request("POST", "/webhook/events/" + encodeURIComponent(id) + "/retry");
  }
}
