// sori live page — keywords: categories from the page's legend (#categories), the chip of one
// keyword, and the #top-keywords panel counted over every final.

import { $, cssId, h, str } from './util.js';
import { store } from './segments.js';

const TOP_KEYWORDS_SHOWN = 12;

/** category id → {ko, en}, from the page's legend. */
const categories = new Map();
let topList = null;
let topTimer = null;

export function initKeywords() {
  topList = $('top-keywords');
  for (const el of document.querySelectorAll('#categories [data-category]')) {
    categories.set(el.dataset.category, { ko: el.dataset.ko || el.dataset.category, en: el.dataset.en || '' });
  }
}

function categoryLabel(id) {
  const c = categories.get(id);
  return c ? c.ko : id;
}

/** A keyword of a `keyword` / `keywords` event as {text, category, label}, or null. */
export function normalizeKeyword(raw) {
  if (!raw || typeof raw.text !== 'string') return null;
  const text = raw.text.trim();
  if (!text) return null;
  const category = str(raw.category) || 'other';
  return { text, category, label: str(raw.label) || categoryLabel(category) };
}

export const keywordKey = (k) => k.text.normalize('NFC').toLowerCase();

export function makeChip(k) {
  // The chip's text is only the keyword (tests and copy-paste read it); the category is its
  // colour, its data-category and its tooltip.
  const chip = h('span', `keyword cat-${cssId(k.category)}`, k.text);
  chip.dataset.category = k.category;
  chip.title = k.label;
  return chip;
}

export function scheduleTopKeywords() {
  if (topTimer) return;
  topTimer = setTimeout(() => {
    topTimer = null;
    renderTopKeywords();
  }, 100);
}

/**
 * Counts every final segment's keywords once: its `keywords` list, or, when none came (the LLM
 * failed mid-answer), the `keyword` events it did send.
 */
function renderTopKeywords() {
  const tally = new Map();
  let order = 0;
  for (const seg of store.segments.values()) {
    if (!seg.final) continue;
    const seen = new Set();
    for (const k of seg.keywords ?? seg.early) {
      const key = keywordKey(k);
      if (seen.has(key)) continue;
      seen.add(key);
      order += 1;
      const t = tally.get(key);
      if (t) Object.assign(t, { count: t.count + 1, last: order, category: k.category, label: k.label });
      else tally.set(key, { text: k.text, category: k.category, label: k.label, count: 1, last: order });
    }
  }
  const top = [...tally.values()]
    .sort((a, b) => b.count - a.count || b.last - a.last)
    .slice(0, TOP_KEYWORDS_SHOWN);
  topList.replaceChildren(...top.map((t) => {
    const li = h('li', `top-keyword cat-${cssId(t.category)}`);
    li.dataset.category = t.category;
    li.dataset.count = String(t.count);
    li.title = `${t.label} · ${t.count}회 / ${t.count}×`;
    li.append(h('span', 'top-keyword-text', t.text), h('span', 'count', String(t.count)));
    return li;
  }));
}
