// sori live page — #errors: the last few problems, newest last. Non-fatal ones fade out.

import { $, h } from './util.js';

const ERROR_FADE_MS = 15000;
const ERROR_MAX_SHOWN = 5;

let box = null;

export function initErrors() {
  box = $('errors');
}

export function showError(code, message, { sticky = false } = {}) {
  // The same problem again (e.g. repeated reconnect failures) replaces the old line.
  for (const old of box.querySelectorAll('.error-item')) {
    if (old.dataset.code === code && old.dataset.message === message) old.remove();
  }
  const item = h('div', 'error-item');
  item.dataset.code = code;
  item.dataset.message = message;
  if (sticky) item.classList.add('sticky');
  const dismiss = h('button', 'error-dismiss', '×');
  dismiss.type = 'button';
  dismiss.title = '닫기 / dismiss';
  dismiss.setAttribute('aria-label', '닫기 / dismiss');
  dismiss.addEventListener('click', () => item.remove());
  item.append(h('strong', 'error-code', code), h('span', 'error-message', message), dismiss);
  box.append(item);
  while (box.children.length > ERROR_MAX_SHOWN) box.firstElementChild.remove();
  if (!sticky) {
    setTimeout(() => {
      item.classList.add('fading');
      setTimeout(() => item.remove(), 700);
    }, ERROR_FADE_MS);
  }
}
