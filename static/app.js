// sori — live page: microphone → /ws (binary PCM), transcript + keyword chips, server monitor.
// Protocol: docs/protocol.md. No build step, no dependencies: ES modules loaded by
// `<script type="module" src="/static/app.js">`. This one wires them to the page's controls:
//
//   capture.js     microphone → AudioWorklet (pcm-worklet.js) → PCM chunks
//   connection.js  the /ws socket: PCM out, events in, stop, reconnect
//   transcript.js  partials, finals, keyword chips, related passages   (segments.js: the data)
//   keywords.js    categories, chips, the top-keywords panel
//   downloads.js   .txt / .srt
//   monitor.js     the server panel (/api/status/stream)
//   controls.js    #start, #language, #conn;  errors.js  #errors;  util.js  helpers
//
// The only global is the small read-only `window.sori` handle at the end, for tests.

import { describeCaptureError, flushCapture, startCapture, stopCapture } from './capture.js';
import { cancelReconnect, connect, finish, initConnection, sendAudioChunk, sendLanguage } from './connection.js';
import { controls, initControls, setButton, setConn } from './controls.js';
import { initDownloads, transcriptSrt, transcriptText } from './downloads.js';
import { initErrors, showError } from './errors.js';
import { initKeywords } from './keywords.js';
import { startMonitor } from './monitor.js';
import { absEnd, absStart, sortedFinals } from './segments.js';
import { initTranscript, updateFinalCount } from './transcript.js';

const app = {
  running: false, // between Start and Stop
  starting: false, // waiting for the microphone
  capture: null, // see startCapture()
};

/** What capture.js and connection.js ask of the page. */
const page = {
  running: () => app.running,
  current: () => app.capture,
  captureRate: () => (app.capture ? app.capture.sampleRate : null),
  stop: () => stop(),
};

async function start() {
  if (app.running || app.starting) return;
  app.starting = true;
  controls.start.disabled = true;
  setConn('connecting', '마이크 준비 중', 'opening the microphone');
  try {
    const cap = await startCapture(sendAudioChunk, page); // must run first, inside the click
    app.capture = cap;
    app.running = true;
    setButton('running');
    connect(cap.sampleRate);
  } catch (err) {
    const e = describeCaptureError(err);
    showError(e.code, e.message, { sticky: true });
    setConn('error');
  } finally {
    app.starting = false;
    controls.start.disabled = false;
  }
}

async function stop() {
  if (!app.running) return;
  app.running = false;
  cancelReconnect();
  setButton('idle');
  controls.start.disabled = true; // only for the flush (≤ capture.js's FLUSH_TIMEOUT_MS)
  const cap = app.capture;
  try {
    if (cap) await flushCapture(cap); // its last chunk still goes to the live connection
  } finally {
    if (cap) stopCapture(cap);
    app.capture = null;
    finish();
    controls.start.disabled = false;
  }
}

function init() {
  initControls();
  initErrors();
  initKeywords();
  initTranscript();
  initDownloads();
  initConnection(page);

  controls.start.addEventListener('click', () => {
    if (app.running) stop();
    else start();
  });
  controls.language.addEventListener('change', () => sendLanguage(controls.language.value));

  setButton('idle');
  setConn('idle');
  updateFinalCount();
  startMonitor();
}

// A read-only handle for tests and debugging; nothing on it changes the page.
window.sori = Object.freeze({
  finals: () => sortedFinals().map((s) => ({
    session_id: s.sessionId,
    segment_id: s.id,
    text: s.text,
    start: absStart(s),
    end: absEnd(s),
    keywords: (s.keywords ?? s.early).map((k) => ({ ...k })),
  })),
  transcriptText: () => transcriptText(),
  transcriptSrt: () => transcriptSrt(),
});

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
else init();
