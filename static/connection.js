// sori live page — the /ws WebSocket (protocol: docs/protocol.md): the URL and its options,
// microphone PCM out as binary frames (held briefly while no socket is open), server events in
// (handed to transcript.js), `stop` and draining on Stop, and reconnecting when the socket drops.
// One live connection at a time; connections that were sent `stop` may still be finishing.

import { LAG_WARN_MS, num, shortId, str } from './util.js';
import { showError } from './errors.js';
import { controls, setConn } from './controls.js';
import { noteAudioStart, sessionIdOf } from './segments.js';
import {
  addNote, hasTranscript, onFinal, onKeyword, onKeywords, onPartial, onRag, onRevision, removeDeadPartials,
} from './transcript.js';

const PENDING_MAX_SECONDS = 5; // audio kept while the socket is down (older audio is dropped)
const SOCKET_BUFFER_MAX_SECONDS = 10; // unsent audio beyond this: the network cannot keep up
const RECONNECT_BASE_MS = 500;
const RECONNECT_MAX_MS = 10000;
const SERVER_FULL_MIN_MS = 15000; // close 1013: wait longer before asking again
const SERVER_FULL_MAX_MS = 60000;
const STOP_TIMEOUT_MS = 45000; // after `stop` the server may wait for the LLM (llm.timeout_ms)

const state = {
  live: null, // the connection that receives audio now
  draining: new Set(), // connections that were sent `stop` and wait for `closed`
  reconnectAttempt: 0,
  reconnectTimer: null,
  pending: [], // [{buf, t}] audio captured while no socket was open
  pendingBytes: 0,
  droppedChunks: 0,
};
let connSeq = 0;

/** What this module asks of the page: running(), captureRate() (null: no capture), stop(). */
let page = null;

export function initConnection(hooks) {
  page = hooks;
}

const isOpen = (conn) => conn.ws.readyState === WebSocket.OPEN;

// --- the page's side -------------------------------------------------------------------

/** Opens the live connection for a capture at `sampleRate` (Start). */
export function connect(sampleRate) {
  state.reconnectAttempt = 0;
  // state.pending may already hold the first chunks (posted while the capture was starting);
  // they go out as soon as the socket opens. finish() empties it.
  state.live = openConnection(sampleRate);
  setConn('connecting');
}

/** Stop: no more reconnects. */
export function cancelReconnect() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
}

/** Stop, after the last chunk was sent: drops held audio, lets the live session finish. */
export function finish() {
  state.pending = [];
  state.pendingBytes = 0;
  const conn = state.live;
  state.live = null;
  if (conn) finishConnection(conn);
  else if (state.draining.size === 0) setConn('closed');
}

/** The language select changed. Reconnects read the select, so only the live session needs telling. */
export function sendLanguage(language) {
  const conn = state.live;
  if (conn && isOpen(conn) && !conn.stopping) {
    conn.ws.send(JSON.stringify({ type: 'start', language }));
  }
}

// --- audio out -------------------------------------------------------------------------

/** A chunk of PCM from the capture: sent now, or held until a socket is open. */
export function sendAudioChunk(buf, sampleRate) {
  // Wall time of the chunk's first sample, to line reconnected sessions up on one timeline.
  const item = { buf, t: Date.now() - (buf.byteLength / 2 / sampleRate) * 1000 };
  const conn = state.live;
  if (conn && isOpen(conn) && !conn.stopping) {
    sendPending(conn);
    sendAudio(conn, item);
  } else {
    queuePending(item, sampleRate);
  }
}

function queuePending(item, sampleRate) {
  state.pending.push(item);
  state.pendingBytes += item.buf.byteLength;
  const limit = sampleRate * 2 * PENDING_MAX_SECONDS;
  while (state.pendingBytes > limit && state.pending.length > 0) {
    state.pendingBytes -= state.pending.shift().buf.byteLength;
    state.droppedChunks += 1;
  }
}

function sendPending(conn) {
  while (state.pending.length > 0) sendAudio(conn, state.pending.shift());
  state.pendingBytes = 0;
}

function sendAudio(conn, item) {
  if (conn.ws.bufferedAmount > conn.sampleRate * 2 * SOCKET_BUFFER_MAX_SECONDS) {
    state.droppedChunks += 1; // the network is far behind; do not grow memory without bound
    return;
  }
  if (conn.audioStartWall == null) {
    conn.audioStartWall = item.t;
    noteAudioStart(item.t);
  }
  conn.ws.send(item.buf);
}

// --- one socket ------------------------------------------------------------------------

function wsUrl(sampleRate) {
  const params = new URLSearchParams({
    sample_rate: String(Math.round(sampleRate)),
    encoding: 'pcm_s16le',
    channels: '1',
    language: controls.language.value,
    keywords: 'true',
  });
  // Related documents for each final, when the server has RAG on.
  if (document.body.dataset.rag === 'true') params.set('rag', 'true');
  const token = new URLSearchParams(window.location.search).get('token');
  if (token) params.set('token', token);
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${window.location.host}/ws?${params}`;
}

function openConnection(sampleRate) {
  connSeq += 1;
  const conn = {
    ws: null,
    sampleRate,
    localId: `local-${connSeq}`,
    sessionId: null,
    ready: false,
    options: {},
    stopping: false, // `stop` sent (or the socket was abandoned)
    gotClosed: false, // the server's `closed` arrived
    serverFull: false,
    timedOut: false,
    audioStartWall: null,
    readyWall: null,
    offset: null,
    stopTimer: null,
  };
  conn.ws = new WebSocket(wsUrl(sampleRate));
  conn.ws.binaryType = 'arraybuffer';
  conn.ws.addEventListener('open', () => {
    if (conn === state.live && !conn.stopping) sendPending(conn);
  });
  conn.ws.addEventListener('message', (event) => onSocketMessage(conn, event));
  conn.ws.addEventListener('close', (event) => onSocketClose(conn, event));
  // 'error' events carry no detail in browsers; the 'close' that always follows handles it.
  return conn;
}

function onSocketMessage(conn, event) {
  if (typeof event.data !== 'string') return; // the server sends JSON text frames only
  let msg;
  try {
    msg = JSON.parse(event.data);
  } catch {
    return;
  }
  if (!msg || typeof msg !== 'object') return;
  try {
    switch (msg.type) {
      case 'ready': onReady(conn, msg); break;
      case 'partial': onPartial(conn, msg); break;
      case 'final': onFinal(conn, msg); break;
      case 'revision': onRevision(conn, msg); break;
      case 'keyword': onKeyword(conn, msg); break;
      case 'keywords': onKeywords(conn, msg); break;
      case 'rag': onRag(conn, msg); break;
      case 'status': onSessionStatus(conn, msg); break;
      case 'error': onServerError(conn, msg); break;
      case 'closed': onClosed(conn, msg); break;
      default: break; // `filtered` (not requested) and future types
    }
  } catch (err) {
    console.error('sori: could not handle', msg.type, err);
  }
}

function onReady(conn, msg) {
  const first = !conn.ready;
  conn.ready = true;
  conn.options = msg.options && typeof msg.options === 'object' ? msg.options : {};
  if (msg.model) controls.model.textContent = String(msg.model);
  if (first) {
    conn.sessionId = str(msg.session_id) || conn.localId;
    conn.readyWall = Date.now();
    if (hasTranscript()) {
      const at = new Date().toLocaleTimeString();
      addNote(`새 세션 ${shortId(conn.sessionId)} · ${at}`, 'new session');
    }
  }
  if (conn !== state.live) return;
  state.reconnectAttempt = 0;
  setConn('open');
  controls.session.textContent = shortId(conn.sessionId);
  controls.session.title = `세션 ID / session id: ${conn.sessionId}`;
  const rate = num(conn.options.sample_rate);
  if (rate != null && rate !== Math.round(conn.sampleRate)) {
    showError('sample_rate',
      `서버가 ${rate} Hz로 해석합니다 (브라우저 ${conn.sampleRate} Hz). / ` +
      `The server reads the audio as ${rate} Hz but this browser captures ${conn.sampleRate} Hz.`,
      { sticky: true });
  }
}

function onSessionStatus(conn, msg) {
  if (conn !== state.live) return;
  const lag = num(msg.lag_ms);
  const queue = num(msg.queue_depth);
  const audio = num(msg.audio_seconds);
  const parts = [];
  if (lag != null) parts.push(`지연 / lag ${Math.round(lag)} ms`);
  if (queue != null) parts.push(`대기열 / queue ${queue}`);
  if (audio != null) parts.push(`${audio.toFixed(0)} s`);
  controls.connStats.textContent = parts.join(' · ');
  controls.connStats.classList.toggle('lagging', lag != null && lag > LAG_WARN_MS);
}

function onServerError(conn, msg) {
  const code = str(msg.code) || 'error';
  if (code === 'server_full') conn.serverFull = true;
  // Fatal errors stay until dismissed, except `server_full`: the page retries by itself.
  showError(code, str(msg.message) || code, { sticky: msg.fatal === true && code !== 'server_full' });
}

function onClosed(conn, msg) {
  conn.gotClosed = true;
  removeDeadPartials(sessionIdOf(conn));
  const summary = msg.summary && typeof msg.summary === 'object' ? msg.summary : {};
  const finals = num(summary.finals);
  const seconds = num(summary.audio_seconds);
  const ko = ['세션 종료'];
  const en = ['session ended'];
  if (finals != null) {
    ko.push(`${finals}문장`);
    en.push(`${finals} finals`);
  }
  if (seconds != null) {
    ko.push(`${seconds.toFixed(1)}초`);
    en.push(`${seconds.toFixed(1)} s`);
  }
  addNote(ko.join(' · '), en.join(' · '));
}

function onSocketClose(conn, event) {
  clearTimeout(conn.stopTimer);
  state.draining.delete(conn);
  removeDeadPartials(sessionIdOf(conn)); // they will never get a final now

  if (conn !== state.live) {
    // A connection the user stopped: it finished (after `closed`) or was cut off.
    if (conn.stopping && conn.ready && !conn.gotClosed) {
      showError(conn.timedOut ? 'stop_timeout' : 'closed_early',
        '마지막 결과를 받기 전에 연결이 끝났습니다 (서버에는 자막 파일이 남습니다). / ' +
        'The connection ended before the last results arrived (the server still wrote the transcript files).');
    }
    if (!page.running() && !state.live && state.draining.size === 0) {
      setConn(conn.gotClosed || conn.stopping ? 'closed' : 'error');
    }
    return;
  }

  state.live = null;
  if (!page.running()) {
    setConn('closed');
    return;
  }
  handleUnexpectedClose(conn, event);
}

// --- reconnecting ----------------------------------------------------------------------

function jittered(ms) {
  return Math.round(ms * (0.8 + Math.random() * 0.4));
}

function handleUnexpectedClose(conn, event) {
  const reason = event.reason ? `: ${event.reason}` : '';
  if (event.code === 1008) {
    // Authentication (or policy) failure: retrying with the same token cannot help.
    showError('unauthorized',
      `서버가 연결을 거부했습니다 (인증/정책, 1008)${reason}. 주소의 token을 확인하세요. / ` +
      `The server refused the connection (authentication/policy, 1008)${reason}. Check the token in the address.`,
      { sticky: true });
    page.stop().finally(() => setConn('error'));
    return;
  }
  let delay;
  if (event.code === 1013 || conn.serverFull) {
    if (!conn.serverFull) showError('server_full', `서버가 가득 찼습니다 / the server is full (1013)${reason}`);
    delay = jittered(Math.min(SERVER_FULL_MAX_MS, SERVER_FULL_MIN_MS * 2 ** Math.min(state.reconnectAttempt, 2)));
  } else {
    delay = Math.min(RECONNECT_MAX_MS, jittered(RECONNECT_BASE_MS * 2 ** Math.min(state.reconnectAttempt, 5)));
    if (conn.ready) {
      showError('disconnected',
        `연결이 끊겼습니다 (코드 ${event.code}). 다시 연결합니다. / Connection lost (code ${event.code}); reconnecting.`);
    } else if (state.reconnectAttempt === 0) {
      showError('connect_failed',
        `서버에 연결할 수 없습니다 (코드 ${event.code}). 계속 다시 시도합니다. / ` +
        `Cannot reach the server (code ${event.code}); retrying.`);
    }
  }
  state.reconnectAttempt += 1;
  scheduleReconnect(delay);
}

function scheduleReconnect(delay) {
  clearTimeout(state.reconnectTimer);
  const secs = (delay / 1000).toFixed(1);
  setConn('reconnecting', `재연결 중 (${secs}초 후)`, `reconnecting in ${secs} s`);
  state.reconnectTimer = setTimeout(() => {
    state.reconnectTimer = null;
    const sampleRate = page.captureRate();
    if (!page.running() || state.live || sampleRate == null) return;
    state.live = openConnection(sampleRate);
    setConn('reconnecting');
  }, delay);
}

/** Sends `stop` and lets the session finish (its last finals and keywords still arrive). */
function finishConnection(conn) {
  conn.stopping = true;
  if (isOpen(conn)) {
    conn.ws.send(JSON.stringify({ type: 'stop' }));
    state.draining.add(conn);
    setConn('open', '마무리 중…', 'finishing…');
    conn.stopTimer = setTimeout(() => {
      conn.timedOut = true;
      conn.ws.close(1000, 'stop timeout');
    }, STOP_TIMEOUT_MS);
  } else {
    // Still connecting: nothing was transcribed yet, abandon it.
    conn.ws.close();
    setConn('closed');
  }
}
