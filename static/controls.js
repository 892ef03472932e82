// sori live page — the controls bar: the #start button, the #language select and the connection
// state (#conn, #session, #conn-stats), plus the model name in the header (#model).

import { $, bi } from './util.js';

const LANGUAGES = ['ko', 'en', 'auto'];

const CONN_LABELS = {
  idle: ['대기', 'idle'],
  connecting: ['연결 중', 'connecting'],
  open: ['연결됨', 'connected'],
  reconnecting: ['재연결 중', 'reconnecting'],
  closed: ['종료됨', 'closed'],
  error: ['오류', 'error'],
};

/** The bar's elements, filled by initControls(). */
export const controls = {
  start: null,
  startLabel: null,
  language: null,
  conn: null,
  connLabel: null,
  connStats: null,
  session: null,
  model: null,
};

export function initControls() {
  Object.assign(controls, {
    start: $('start'),
    startLabel: document.querySelector('#start .start-label'),
    language: $('language'),
    conn: $('conn'),
    connLabel: $('conn-label'),
    connStats: $('conn-stats'),
    session: $('session'),
    model: $('model'),
  });
  if (!LANGUAGES.includes(controls.language.value)) controls.language.value = 'ko';
}

/** Shows a connection state; `ko`/`en` override the default label for that state. */
export function setConn(state, ko, en) {
  const [defaultKo, defaultEn] = CONN_LABELS[state];
  controls.conn.dataset.state = state;
  controls.connLabel.replaceChildren(bi(ko || defaultKo, en || defaultEn));
  if (state !== 'open') controls.connStats.replaceChildren();
}

export function setButton(state) {
  controls.start.dataset.state = state;
  controls.start.setAttribute('aria-pressed', String(state === 'running'));
  controls.startLabel.replaceChildren(state === 'running' ? bi('정지', 'Stop') : bi('시작', 'Start'));
}
