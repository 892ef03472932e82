// sori live page — #transcript: partials and finals of every session, their keyword chips and
// related passages (RAG), session notes, the final count and following the newest line.
// The `on…` handlers take the connection a server event came on and the event itself.

import { $, bi, clockTenths, h, num, str } from './util.js';
import {
  absEnd, absStart, segmentFor, segmentIdOf, sessionIdOf, store,
} from './segments.js';
import { keywordKey, makeChip, normalizeKeyword, scheduleTopKeywords } from './keywords.js';
import { setDownloadsEnabled } from './downloads.js';

const SCROLL_SLACK_PX = 40;

let box = null; // #transcript
let jump = null; // #jump-latest
let finalCount = null; // #final-count
let stick = true; // follow new text (the user is at the bottom)

export function initTranscript() {
  box = $('transcript');
  jump = $('jump-latest');
  finalCount = $('final-count');
  box.addEventListener('scroll', onTranscriptScroll, { passive: true });
  if (typeof ResizeObserver === 'function') {
    // A resized panel (rotation, window resize, error lines above) keeps following the end.
    new ResizeObserver(() => {
      if (stick) box.scrollTop = box.scrollHeight;
    }).observe(box);
  }
  jump.addEventListener('click', jumpToLatest);
}

/** True once anything was shown (a new session then gets a note). */
export const hasTranscript = () => store.segments.size > 0 || store.finals.length > 0;

function buildSegmentElement(seg) {
  const row = h('div', 'segment');
  row.dataset.key = seg.key;
  row.dataset.session = seg.sessionId;
  row.dataset.segmentId = String(seg.id);
  seg.tsEl = h('span', 'ts');
  // The text element carries .final / .partial, so its textContent is exactly the text.
  seg.textEl = h('p', 'text partial');
  seg.chipsEl = h('div', 'chips');
  seg.chipsEl.hidden = true;
  seg.relatedEl = h('ul', 'related');
  seg.relatedEl.hidden = true;
  row.append(seg.tsEl, seg.textEl, seg.chipsEl, seg.relatedEl);
  seg.el = row;
}

function paintSegment(seg) {
  seg.el.classList.toggle('is-final', seg.final);
  seg.el.classList.toggle('is-partial', !seg.final);
  seg.textEl.className = seg.final ? 'text final' : 'text partial';
  seg.textEl.textContent = seg.text || '…';
  if (seg.language && seg.language !== 'auto') seg.textEl.lang = seg.language;
  seg.tsEl.textContent = `[${clockTenths(absStart(seg))}]`;
  seg.tsEl.title = `${clockTenths(absStart(seg))} – ${clockTenths(absEnd(seg))}`;
}

/** A final with no partial on screen goes before any later open segment of its session. */
function insertFinalInOrder(seg) {
  for (const el of box.querySelectorAll('.segment.is-partial')) {
    if (el.dataset.session === seg.sessionId && Number(el.dataset.segmentId) > seg.id) {
      box.insertBefore(seg.el, el);
      return;
    }
  }
  box.append(seg.el);
}

/**
 * Removes open segments of a session that can no longer become final: ids below a final that
 * arrived (finals come in order; the server dropped those segments), or all of them once the
 * session has ended.
 */
export function removeDeadPartials(sessionId, belowId = Infinity) {
  for (const seg of store.segments.values()) {
    if (seg.sessionId === sessionId && !seg.final && seg.id < belowId) {
      if (seg.el) seg.el.remove();
      store.segments.delete(seg.key);
    }
  }
}

export function onPartial(conn, msg) {
  const id = segmentIdOf(msg);
  if (id == null) return;
  const last = store.lastFinal.get(sessionIdOf(conn));
  if (last != null && id <= last) return; // its final (or a later one) already arrived
  const seg = segmentFor(conn, id);
  if (seg.final) return;
  seg.text = str(msg.text).trim();
  seg.start = num(msg.start) ?? seg.start;
  seg.end = num(msg.end) ?? seg.end;
  if (!seg.el) {
    buildSegmentElement(seg);
    box.append(seg.el);
  }
  paintSegment(seg);
  afterTranscriptChange();
}

export function onFinal(conn, msg) {
  const id = segmentIdOf(msg);
  if (id == null) return;
  const sessionId = sessionIdOf(conn);
  const seg = segmentFor(conn, id);
  const isNew = !seg.final;
  seg.final = true;
  seg.text = str(msg.text).trim();
  seg.start = num(msg.start) ?? seg.start;
  seg.end = num(msg.end) ?? seg.end;
  seg.language = str(msg.language);
  if (!seg.el) {
    buildSegmentElement(seg);
    insertFinalInOrder(seg);
  }
  paintSegment(seg);
  paintChips(seg);
  paintRelated(seg);
  if (isNew) store.finals.push(seg);
  store.lastFinal.set(sessionId, Math.max(store.lastFinal.get(sessionId) ?? -1, id));
  removeDeadPartials(sessionId, id);
  updateFinalCount();
  if (seg.early.length || seg.keywords) scheduleTopKeywords();
  afterTranscriptChange();
}

/**
 * A final decoded again with the speech around it (`revision`): its text is replaced and the
 * line marked as revised; an empty text withdraws the line (its words went to a neighbour).
 * The revised text's `keywords` (and `rag`) follow and replace the line's chips.
 */
export function onRevision(conn, msg) {
  const id = segmentIdOf(msg);
  if (id == null) return;
  const seg = segmentFor(conn, id);
  const text = str(msg.text).trim();
  if (!seg.final) {
    // Its final was filtered: the revision is the first text this segment has.
    if (text) onFinal(conn, msg);
    else store.segments.delete(seg.key);
    if (text) markRevised(seg);
    return;
  }
  seg.text = text;
  seg.start = num(msg.start) ?? seg.start;
  seg.end = num(msg.end) ?? seg.end;
  if (!text) {
    if (seg.el) seg.el.remove();
    seg.el = null;
    // Its keywords went with its words; the neighbour's revision brings them again.
    seg.keywords = [];
    seg.early = [];
    scheduleTopKeywords();
    updateFinalCount();
    afterTranscriptChange();
    return;
  }
  if (!seg.el) {
    buildSegmentElement(seg);
    insertFinalInOrder(seg);
    paintChips(seg);
    paintRelated(seg);
  }
  paintSegment(seg);
  markRevised(seg);
  afterTranscriptChange();
}

function markRevised(seg) {
  seg.revised = true;
  if (!seg.el) return;
  seg.el.classList.add('revised');
  seg.textEl.title = '앞뒤 발화와 함께 다시 인식해 고쳤습니다 · revised with the speech around it';
}

/** A line between segments: a new session, a session's end. */
export function addNote(ko, en) {
  const note = h('div', 'note');
  note.append(bi(ko, en));
  box.append(note);
  afterTranscriptChange();
}

export function updateFinalCount() {
  const n = store.finals.length;
  finalCount.textContent = n ? `${n}문장 / ${n} final${n === 1 ? '' : 's'}` : '';
  setDownloadsEnabled(n !== 0);
}

// --- keywords and related passages ------------------------------------------------------

function paintChips(seg) {
  if (!seg.el || !seg.final) return;
  const list = seg.keywords ?? seg.early;
  seg.chipsEl.replaceChildren(...list.map(makeChip));
  seg.chipsEl.hidden = list.length === 0;
  seg.chipsEl.classList.toggle('provisional', !seg.keywords);
  const info = seg.keywordsInfo;
  seg.chipsEl.title = info
    ? [info.model, info.latency != null ? `${info.latency} ms` : '', info.cached ? '캐시 / cached' : '']
      .filter(Boolean).join(' · ')
    : '';
}

export function onKeyword(conn, msg) {
  const id = segmentIdOf(msg);
  if (id == null) return;
  const seg = segmentFor(conn, id);
  if (seg.keywords) return; // the authoritative list is already shown
  const k = normalizeKeyword(msg.keyword);
  if (!k || seg.early.some((e) => keywordKey(e) === keywordKey(k))) return;
  seg.early.push(k);
  paintChips(seg);
  scheduleTopKeywords();
  afterTranscriptChange();
}

export function onKeywords(conn, msg) {
  const id = segmentIdOf(msg);
  if (id == null) return;
  const seg = segmentFor(conn, id);
  seg.keywords = (Array.isArray(msg.keywords) ? msg.keywords : []).map(normalizeKeyword).filter(Boolean);
  seg.keywordsInfo = { model: str(msg.model), latency: num(msg.latency_ms), cached: msg.cached === true };
  paintChips(seg);
  scheduleTopKeywords();
  afterTranscriptChange();
}

/** Related document chunks of a final (`rag` event): source, page and the start of the text. */
export function onRag(conn, msg) {
  const id = segmentIdOf(msg);
  if (id == null || !Array.isArray(msg.hits)) return;
  const seg = segmentFor(conn, id);
  seg.related = msg.hits
    .filter((hit) => hit && typeof hit.text === 'string')
    .map((hit) => ({ text: hit.text, source: str(hit.source), page: num(hit.page), score: num(hit.score) }));
  paintRelated(seg);
  afterTranscriptChange();
}

function paintRelated(seg) {
  if (!seg.el || !seg.final) return;
  seg.relatedEl.replaceChildren(...seg.related.map((hit) => {
    const item = h('li', 'related-hit');
    const where = hit.page != null ? `${hit.source} · p.${hit.page}` : hit.source;
    item.append(h('span', 'related-source', where), h('span', 'related-text', snippet(hit.text, 140)));
    item.title = hit.text;
    return item;
  }));
  seg.relatedEl.hidden = seg.related.length === 0;
}

function snippet(text, max) {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

// --- auto-scroll ------------------------------------------------------------------------

function isAtBottom() {
  return box.scrollHeight - box.scrollTop - box.clientHeight <= SCROLL_SLACK_PX;
}

function onTranscriptScroll() {
  stick = isAtBottom();
  jump.hidden = stick;
}

function afterTranscriptChange() {
  if (stick) box.scrollTop = box.scrollHeight;
  else jump.hidden = false;
}

function jumpToLatest() {
  stick = true;
  box.scrollTop = box.scrollHeight;
  jump.hidden = true;
}
