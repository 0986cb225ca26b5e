// Translations (English, Persian) and locale-aware formatting. The chosen locale is kept in
// localStorage; Persian switches the page to right-to-left.

const en = {
  brand: "Marzneshin",
  login: "Log in",
  logout: "Log out",
  username: "Username",
  password: "Password",
  throttled: "Too many failed logins from this address.",
  session_expired: "Your session expired. Log in again.",
  logged_out: "You are logged out.",
  overview: "Overview",
  users: "Users",
  services: "Services",
  inbounds: "Inbounds",
  hosts: "Hosts",
  admins: "Admins",
  settings: "Settings",
  theme: "Theme",
  light: "Light",
  dark: "Dark",
  language: "Language",
  read_only_note: "Read-only: you can look, not change.",
  search: "Search users",
  all_statuses: "All statuses",
  status: "Status",
  active: "Active",
  disabled: "Disabled",
  limited: "Limited",
  expired: "Expired",
  on_hold: "On hold",
  order: "Sort",
  created_desc: "Newest first",
  created_asc: "Oldest first",
  used_traffic_desc: "Most traffic",
  usage: "Usage",
  expiry: "Expiry",
  never: "Never",
  unlimited: "Unlimited",
  new_user: "New user",
  edit: "Edit",
  delete: "Delete",
  enable: "Enable",
  disable: "Disable",
  reset_usage: "Reset usage",
  revoke_sub: "Revoke subscription",
  selected: "{n} selected",
  page_of: "Page {page} of {pages}",
  per_page: "Per page",
  previous: "Previous",
  next: "Next",
  total_users: "{n} users",
  no_users: "No users match.",
  save: "Save",
  cancel: "Cancel",
  create: "Create",
  close: "Close",
  confirm: "Confirm",
  confirm_delete: "Delete {what}? This cannot be undone.",
  confirm_bulk: "{action} {n} users?",
  confirm_revoke: "Give {what} a new key? Their old links stop working.",
  data_limit: "Data limit (GB)",
  data_limit_hint: "0 or empty: unlimited",
  reset_strategy: "Reset data usage",
  no_reset: "Never",
  day: "Daily",
  week: "Weekly",
  month: "Monthly",
  year: "Yearly",
  expire_strategy: "Expiry",
  fixed_date: "On a date",
  start_on_first_use: "Starts on first use",
  expire_date: "Expires at",
  usage_duration: "Days of access after first use",
  activation_deadline: "Must start before",
  note: "Note",
  enabled: "Enabled",
  err_username: "3 to 32 letters, digits or underscores.",
  err_negative: "Must not be negative.",
  err_required: "Required.",
  err_future: "Must be in the future.",
  err_positive: "Must be more than zero.",
  err_json: "Not valid JSON: {error}",
  err_port: "A port from 1 to 65535.",
  saved: "Saved.",
  deleted: "Deleted.",
  done: "Done.",
  copied: "Copied.",
  copy: "Copy",
  copy_link: "Copy link",
  subscription: "Subscription",
  subscription_url: "Subscription URL",
  formats: "Client formats",
  qr_code: "QR code",
  usage_24h: "24 hours",
  usage_7d: "7 days",
  uplink: "Upload",
  downlink: "Download",
  used: "Used",
  lifetime: "Lifetime",
  created: "Created",
  online_at: "Last online",
  sub_updated_at: "Last subscription fetch",
  owner: "Owner",
  back: "Back",
  users_by_status: "Users by status",
  online_users: "Online users",
  online_now: "online in the last 5 minutes",
  total_traffic: "Traffic, ever",
  traffic_over_time: "Traffic over time (busiest users)",
  top_users: "Busiest users",
  no_data: "No traffic yet.",
  name: "Name",
  inbound_ids: "Inbounds",
  new_service: "New service",
  new_inbound: "New inbound",
  tag: "Tag",
  protocol: "Protocol",
  listen: "Listen address",
  method: "Method",
  psk: "Server key (psk, base64)",
  fallback: "Fallback (IP:port)",
  tls: "TLS",
  tls_none: "None",
  tls_files: "Certificate files",
  tls_self_signed: "Self-signed (testing)",
  certificate: "Certificate path",
  key: "Key path",
  server_names: "Server names (comma-separated)",
  network: "Network",
  form: "Form",
  raw_json: "Raw JSON",
  new_host: "New host",
  remark: "Remark",
  address: "Address",
  port: "Port",
  sni: "SNI",
  host_header: "Host header",
  path: "Path",
  security: "Security",
  inbound_default: "As the inbound",
  weight: "Weight",
  no_hosts: "No hosts: subscriptions use the inbound's listen address.",
  new_admin: "New admin",
  is_sudo: "Sudo",
  read_only: "Read-only",
  all_services_access: "All services",
  modify_users_access: "May change users",
  role: "Role",
  role_sudo: "Sudo",
  role_admin: "Admin",
  role_read_only: "Read-only",
  you: "you",
  change_password: "Change password",
  new_password: "New password (at least 8 characters)",
  preferences: "Preferences",
  account: "Account",
  server_settings_note:
    "Subscription options and webhooks have no API yet; they are set by environment variables (docs/configuration.md).",
  none: "None",
  actions: "Actions",
  select_all: "Select all",
  select_row: "Select {what}",
  not_found: "Not found.",
  loading: "Loading…",
  menu: "Menu",
};

/** @type {Record<string, string>} */
const fa = {
  brand: "مرزنشین",
  login: "ورود",
  logout: "خروج",
  username: "نام کاربری",
  password: "گذرواژه",
  throttled: "تلاش‌های ناموفق زیادی از این نشانی انجام شده است.",
  session_expired: "نشست شما به پایان رسید. دوباره وارد شوید.",
  logged_out: "از حساب خارج شدید.",
  overview: "نمای کلی",
  users: "کاربران",
  services: "سرویس‌ها",
  inbounds: "ورودی‌ها",
  hosts: "میزبان‌ها",
  admins: "مدیران",
  settings: "تنظیمات",
  theme: "پوسته",
  light: "روشن",
  dark: "تیره",
  language: "زبان",
  read_only_note: "فقط‌خواندنی: می‌توانید ببینید، نه تغییر دهید.",
  search: "جستجوی کاربران",
  all_statuses: "همه وضعیت‌ها",
  status: "وضعیت",
  active: "فعال",
  disabled: "غیرفعال",
  limited: "محدود شده",
  expired: "منقضی",
  on_hold: "در انتظار",
  order: "مرتب‌سازی",
  created_desc: "جدیدترین",
  created_asc: "قدیمی‌ترین",
  used_traffic_desc: "بیشترین مصرف",
  usage: "مصرف",
  expiry: "انقضا",
  never: "هرگز",
  unlimited: "نامحدود",
  new_user: "کاربر جدید",
  edit: "ویرایش",
  delete: "حذف",
  enable: "فعال‌سازی",
  disable: "غیرفعال‌سازی",
  reset_usage: "بازنشانی مصرف",
  revoke_sub: "باطل‌کردن اشتراک",
  selected: "{n} انتخاب شده",
  page_of: "صفحه {page} از {pages}",
  per_page: "در هر صفحه",
  previous: "قبلی",
  next: "بعدی",
  total_users: "{n} کاربر",
  no_users: "کاربری یافت نشد.",
  save: "ذخیره",
  cancel: "انصراف",
  create: "ایجاد",
  close: "بستن",
  confirm: "تأیید",
  confirm_delete: "{what} حذف شود؟ این کار برگشت‌پذیر نیست.",
  confirm_bulk: "{action} برای {n} کاربر؟",
  confirm_revoke: "کلید جدید برای {what}؟ پیوندهای قبلی از کار می‌افتند.",
  data_limit: "حجم مجاز (گیگابایت)",
  data_limit_hint: "۰ یا خالی: نامحدود",
  reset_strategy: "بازنشانی مصرف",
  no_reset: "هرگز",
  day: "روزانه",
  week: "هفتگی",
  month: "ماهانه",
  year: "سالانه",
  expire_strategy: "انقضا",
  fixed_date: "در تاریخ مشخص",
  start_on_first_use: "شروع از اولین استفاده",
  expire_date: "تاریخ انقضا",
  usage_duration: "روزهای دسترسی پس از اولین استفاده",
  activation_deadline: "آخرین مهلت شروع",
  note: "یادداشت",
  enabled: "فعال",
  err_username: "۳ تا ۳۲ حرف لاتین، رقم یا زیرخط.",
  err_negative: "نباید منفی باشد.",
  err_required: "الزامی است.",
  err_future: "باید در آینده باشد.",
  err_positive: "باید بیشتر از صفر باشد.",
  err_json: "JSON نامعتبر: {error}",
  err_port: "درگاهی از ۱ تا ۶۵۵۳۵.",
  saved: "ذخیره شد.",
  deleted: "حذف شد.",
  done: "انجام شد.",
  copied: "کپی شد.",
  copy: "کپی",
  copy_link: "کپی پیوند",
  subscription: "اشتراک",
  subscription_url: "نشانی اشتراک",
  formats: "قالب‌های کلاینت",
  qr_code: "کد QR",
  usage_24h: "۲۴ ساعت",
  usage_7d: "۷ روز",
  uplink: "ارسال",
  downlink: "دریافت",
  used: "مصرف‌شده",
  lifetime: "کل مصرف",
  created: "ایجاد",
  online_at: "آخرین اتصال",
  sub_updated_at: "آخرین دریافت اشتراک",
  owner: "مالک",
  back: "بازگشت",
  users_by_status: "کاربران بر اساس وضعیت",
  online_users: "کاربران آنلاین",
  online_now: "آنلاین در ۵ دقیقه گذشته",
  total_traffic: "کل ترافیک",
  traffic_over_time: "ترافیک در طول زمان (پرمصرف‌ترین کاربران)",
  top_users: "پرمصرف‌ترین کاربران",
  no_data: "هنوز ترافیکی نیست.",
  name: "نام",
  inbound_ids: "ورودی‌ها",
  new_service: "سرویس جدید",
  new_inbound: "ورودی جدید",
  tag: "برچسب",
  protocol: "پروتکل",
  listen: "نشانی شنود",
  method: "روش رمزنگاری",
  psk: "کلید سرور (psk، base64)",
  fallback: "مقصد جایگزین (IP:port)",
  tls: "TLS",
  tls_none: "بدون TLS",
  tls_files: "فایل‌های گواهی",
  tls_self_signed: "خودامضا (آزمایشی)",
  certificate: "مسیر گواهی",
  key: "مسیر کلید",
  server_names: "نام‌های سرور (جدا با ویرگول)",
  network: "شبکه",
  form: "فرم",
  raw_json: "JSON خام",
  new_host: "میزبان جدید",
  remark: "عنوان",
  address: "نشانی",
  port: "درگاه",
  sni: "SNI",
  host_header: "سرآیند Host",
  path: "مسیر",
  security: "امنیت",
  inbound_default: "مانند ورودی",
  weight: "وزن",
  no_hosts: "میزبانی نیست: اشتراک‌ها از نشانی شنود ورودی استفاده می‌کنند.",
  new_admin: "مدیر جدید",
  is_sudo: "مدیر ارشد",
  read_only: "فقط‌خواندنی",
  all_services_access: "همه سرویس‌ها",
  modify_users_access: "اجازه تغییر کاربران",
  role: "نقش",
  role_sudo: "مدیر ارشد",
  role_admin: "مدیر",
  role_read_only: "فقط‌خواندنی",
  you: "شما",
  change_password: "تغییر گذرواژه",
  new_password: "گذرواژه جدید (دست‌کم ۸ نویسه)",
  preferences: "ترجیحات",
  account: "حساب",
  server_settings_note:
    "گزینه‌های اشتراک و وب‌هوک‌ها هنوز API ندارند و با متغیرهای محیطی تنظیم می‌شوند (docs/configuration.md).",
  none: "هیچ",
  actions: "عملیات",
  select_all: "انتخاب همه",
  select_row: "انتخاب {what}",
  not_found: "یافت نشد.",
  loading: "در حال بارگذاری…",
  menu: "منو",
};

/** The locales offered, with their own names. */
export const LOCALES = [
  { code: "en", name: "English", dir: "ltr" },
  { code: "fa", name: "فارسی", dir: "rtl" },
];

const dictionaries = /** @type {Record<string, Record<string, string>>} */ ({ en, fa });

let current = localStorage.getItem("mz.locale") ?? "en";
if (!dictionaries[current]) current = "en";

/** The current locale code. */
export function locale() {
  return current;
}

/** Switches the locale, remembers it and sets the page's language and direction. */
export function setLocale(code) {
  if (!dictionaries[code]) return;
  current = code;
  localStorage.setItem("mz.locale", code);
  applyLocale();
}

/** Sets `lang` and `dir` on the page for the current locale. */
export function applyLocale() {
  const entry = LOCALES.find((l) => l.code === current) ?? LOCALES[0];
  document.documentElement.lang = entry.code;
  document.documentElement.dir = entry.dir;
}

/**
 * The text for `key` in the current locale (English when missing), `{name}` filled from vars.
 * @param {string} key
 * @param {Record<string, string|number>} [vars]
 */
export function t(key, vars = {}) {
  const text = dictionaries[current][key] ?? en[/** @type {keyof typeof en} */ (key)] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
}

/** A number in the locale's digits. */
export function num(n) {
  return new Intl.NumberFormat(current).format(n);
}

/** Bytes as B, KB, MB, GB or TB (powers of 1024). */
export function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB", "PB"];
  let i = 0;
  let v = Number(n) || 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const digits = i === 0 || v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return new Intl.NumberFormat(current, { maximumFractionDigits: digits }).format(v) + " " + units[i];
}

/** Unix seconds as a date and time (the Persian calendar in Persian). */
export function date(seconds) {
  if (seconds === undefined || seconds === null) return "—";
  return new Intl.DateTimeFormat(current, { dateStyle: "medium", timeStyle: "short" }).format(
    new Date(seconds * 1000),
  );
}

/** Unix seconds as an hour of the day, for chart axes. */
export function hour(seconds) {
  return new Intl.DateTimeFormat(current, { hour: "2-digit", minute: "2-digit" }).format(
    new Date(seconds * 1000),
  );
}

/** Unix seconds as a short day (weekday and day of month), for chart axes. */
export function day(seconds) {
  return new Intl.DateTimeFormat(current, { weekday: "short", day: "numeric" }).format(new Date(seconds * 1000));
}
