// sori live page — small DOM and formatting helpers shared by the other modules.

/** Decoder lag above which the page marks a session or the server as behind. */
export const LAG_WARN_MS = 3000;

export const $ = (id) => document.getElementById(id);

export function h(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text != null) el.textContent = text;
  return el;
}

/** "한국어 / English": Korean first, the English part in a dimmer span. */
export function bi(ko, en) {
  const frag = document.createDocumentFragment();
  frag.append(ko);
  if (en) frag.append(h('span', 'en', ` / ${en}`));
  return frag;
}

export const pad = (n, width = 2) => String(n).padStart(width, '0');
export const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
export const str = (v) => (typeof v === 'string' ? v : '');
export const shortId = (id) => String(id).slice(0, 8);

/** Seconds → "mm:ss.s" (or "h:mm:ss.s" past an hour). */
export function clockTenths(seconds) {
  const tenths = Math.max(0, Math.round(seconds * 10));
  const minutes = Math.floor(tenths / 600);
  const rest = tenths % 600;
  const secs = `${pad(Math.floor(rest / 10))}.${rest % 10}`;
  return minutes >= 60 ? `${Math.floor(minutes / 60)}:${pad(minutes % 60)}:${secs}` : `${pad(minutes)}:${secs}`;
}

/** Seconds → "hh:mm:ss". */
export function clockSeconds(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}

/** Seconds → SRT's "hh:mm:ss,mmm". */
export function srtTime(seconds) {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const s = Math.floor(ms / 1000);
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)},${pad(ms % 1000, 3)}`;
}

/** A category id as a CSS class suffix (ids come from the server's config). */
export const cssId = (id) => String(id).toLowerCase().replace(/[^a-z0-9_-]+/g, '-') || 'other';

/** An error whose message is written for the operator (shown as is in #errors). */
export function userError(code, message) {
  return Object.assign(new Error(message), { code, userFacing: true });
}

/**
 * Headers carrying the page's own `?token=` as `Authorization: Bearer` (REST refuses tokens in
 * the URL; only /ws and the EventSource stream, which cannot set headers, take `?token=`).
 */
export function authHeaders() {
  const token = new URLSearchParams(window.location.search).get('token');
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** `path` with the page's own `?token=` (when the server asks for one) added: for the
 * EventSource stream only. */
export function withToken(path) {
  const token = new URLSearchParams(window.location.search).get('token');
  if (!token) return path;
  const sep = path.includes('?') ? '&' : '?';
  return `${path}${sep}token=${encodeURIComponent(token)}`;
}
