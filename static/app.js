'use strict';
// sori — live page: microphone → /ws (binary PCM), transcript + keyword chips, server monitor.
// Protocol: docs/protocol.md. No build step, no dependencies; everything lives in this closure
// (the only global is the small read-only `window.sori` handle at the end, for tests).

(() => {
  // ---------------------------------------------------------------------------------------
  // Settings
  // ---------------------------------------------------------------------------------------
  const CHUNK_SECONDS = 0.1; // the worklet posts ~100 ms of PCM per message
  const PENDING_MAX_SECONDS = 5; // audio kept while the socket is down (older audio is dropped)
  const SOCKET_BUFFER_MAX_SECONDS = 10; // unsent audio beyond this: the network cannot keep up
  const MIN_SAMPLE_RATE = 8000; // what the server accepts (docs/protocol.md)
  const MAX_SAMPLE_RATE = 48000;
  const RECONNECT_BASE_MS = 500;
  const RECONNECT_MAX_MS = 10000;
  const SERVER_FULL_MIN_MS = 15000; // close 1013: wait longer before asking again
  const SERVER_FULL_MAX_MS = 60000;
  const STOP_TIMEOUT_MS = 45000; // after `stop` the server may wait for the LLM (llm.timeout_ms)
  const FLUSH_TIMEOUT_MS = 300;
  const ERROR_FADE_MS = 15000;
  const ERROR_MAX_SHOWN = 5;
  const TOP_KEYWORDS_SHOWN = 12;
  const STATUS_POLL_MS = 2000;
  const STATUS_STALE_MS = 5000;
  const SSE_MAX_FAILURES = 3;
  const SCROLL_SLACK_PX = 40;
  const LAG_WARN_MS = 3000;
  const LANGUAGES = ['ko', 'en', 'auto'];

  // ---------------------------------------------------------------------------------------
  // State
  // ---------------------------------------------------------------------------------------
  /** Capture and connection state; one live connection at a time, others may be finishing. */
  const app = {
    running: false, // between Start and Stop
    starting: false, // waiting for the microphone
    capture: null, // see startCapture()
    conn: null, // the connection that receives audio now
    draining: new Set(), // connections that were sent `stop` and wait for `closed`
    reconnectAttempt: 0,
    reconnectTimer: null,
    pending: [], // [{buf, t}] audio captured while no socket was open
    pendingBytes: 0,
    droppedChunks: 0,
    epoch: null, // wall time (ms) of the first audio sample sent: transcript time 0
  };

  /** Everything shown in #transcript, keyed by `session_id + ":" + segment_id`. */
  const transcript = {
    segments: new Map(),
    lastFinal: new Map(), // session id → highest final segment_id seen
    finals: [], // segment records in arrival order (for downloads)
    stick: true, // follow new text (the user is at the bottom)
    topTimer: null,
  };

  const monitor = {
    source: null,
    failures: 0,
    polling: false,
    lastUpdate: 0,
    via: '',
    rendered: {}, // section → JSON of what is shown (skip identical repaints)
  };

  /** category id → {ko, en}, from the page's legend. */
  const categories = new Map();

  let ui = null;
  let connSeq = 0;

  // ---------------------------------------------------------------------------------------
  // Small helpers
  // ---------------------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);

  function h(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text != null) el.textContent = text;
    return el;
  }

  /** "한국어 / English": Korean first, the English part in a dimmer span. */
  function bi(ko, en) {
    const frag = document.createDocumentFragment();
    frag.append(ko);
    if (en) frag.append(h('span', 'en', ` / ${en}`));
    return frag;
  }

  const pad = (n, width = 2) => String(n).padStart(width, '0');
  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const str = (v) => (typeof v === 'string' ? v : '');
  const shortId = (id) => String(id).slice(0, 8);

  /** Seconds → "mm:ss.s" (or "h:mm:ss.s" past an hour). */
  function clockTenths(seconds) {
    const tenths = Math.max(0, Math.round(seconds * 10));
    const minutes = Math.floor(tenths / 600);
    const rest = tenths % 600;
    const secs = `${pad(Math.floor(rest / 10))}.${rest % 10}`;
    return minutes >= 60 ? `${Math.floor(minutes / 60)}:${pad(minutes % 60)}:${secs}` : `${pad(minutes)}:${secs}`;
  }

  /** Seconds → "hh:mm:ss". */
  function clockSeconds(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
  }

  /** Seconds → SRT's "hh:mm:ss,mmm". */
  function srtTime(seconds) {
    const ms = Math.max(0, Math.round(seconds * 1000));
    const s = Math.floor(ms / 1000);
    return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)},${pad(ms % 1000, 3)}`;
  }

  /** A category id as a CSS class suffix (ids come from the server's config). */
  const cssId = (id) => String(id).toLowerCase().replace(/[^a-z0-9_-]+/g, '-') || 'other';

  function userError(code, message) {
    return Object.assign(new Error(message), { code, userFacing: true });
  }

  // ---------------------------------------------------------------------------------------
  // #errors: the last few problems, newest last. Non-fatal ones fade out.
  // ---------------------------------------------------------------------------------------
  function showError(code, message, { sticky = false } = {}) {
    // The same problem again (e.g. repeated reconnect failures) replaces the old line.
    for (const old of ui.errors.querySelectorAll('.error-item')) {
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
    ui.errors.append(item);
    while (ui.errors.children.length > ERROR_MAX_SHOWN) ui.errors.firstElementChild.remove();
    if (!sticky) {
      setTimeout(() => {
        item.classList.add('fading');
        setTimeout(() => item.remove(), 700);
      }, ERROR_FADE_MS);
    }
  }

  // ---------------------------------------------------------------------------------------
  // #conn and #start
  // ---------------------------------------------------------------------------------------
  const CONN_LABELS = {
    idle: ['대기', 'idle'],
    connecting: ['연결 중', 'connecting'],
    open: ['연결됨', 'connected'],
    reconnecting: ['재연결 중', 'reconnecting'],
    closed: ['종료됨', 'closed'],
    error: ['오류', 'error'],
  };

  /** Shows a connection state; `ko`/`en` override the default label for that state. */
  function setConn(state, ko, en) {
    const [defaultKo, defaultEn] = CONN_LABELS[state];
    ui.conn.dataset.state = state;
    ui.connLabel.replaceChildren(bi(ko || defaultKo, en || defaultEn));
    if (state !== 'open') ui.connStats.replaceChildren();
  }

  function setButton(state) {
    ui.start.dataset.state = state;
    ui.start.setAttribute('aria-pressed', String(state === 'running'));
    ui.startLabel.replaceChildren(state === 'running' ? bi('정지', 'Stop') : bi('시작', 'Start'));
  }

  // ---------------------------------------------------------------------------------------
  // Transcript
  // ---------------------------------------------------------------------------------------
  const sessionIdOf = (conn) => conn.sessionId || conn.localId;
  const segmentIdOf = (msg) => (Number.isInteger(msg.segment_id) && msg.segment_id >= 0 ? msg.segment_id : null);
  const absStart = (seg) => seg.offset + seg.start;
  const absEnd = (seg) => seg.offset + Math.max(seg.end, seg.start);

  /**
   * Seconds between transcript time 0 and this session's audio time 0. A reconnect starts a new
   * server session whose times restart at 0; the offset keeps the page's timestamps increasing.
   */
  function sessionOffset(conn) {
    if (conn.offset == null) {
      const t0 = conn.audioStartWall ?? conn.readyWall ?? Date.now();
      conn.offset = app.epoch == null ? 0 : Math.max(0, (t0 - app.epoch) / 1000);
    }
    return conn.offset;
  }

  function segmentFor(conn, id) {
    const sessionId = sessionIdOf(conn);
    const key = `${sessionId}:${id}`;
    let seg = transcript.segments.get(key);
    if (!seg) {
      seg = {
        key, sessionId, id, final: false, text: '', start: 0, end: 0, language: '',
        offset: sessionOffset(conn),
        early: [], // `keyword` events, until the segment's `keywords` list arrives
        keywords: null, // the authoritative `keywords` list
        keywordsInfo: null,
        el: null, tsEl: null, textEl: null, chipsEl: null, relatedEl: null,
        related: [], // hits of the segment's `rag` event
      };
      transcript.segments.set(key, seg);
    }
    return seg;
  }

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
    for (const el of ui.transcript.querySelectorAll('.segment.is-partial')) {
      if (el.dataset.session === seg.sessionId && Number(el.dataset.segmentId) > seg.id) {
        ui.transcript.insertBefore(seg.el, el);
        return;
      }
    }
    ui.transcript.append(seg.el);
  }

  /**
   * Removes open segments of a session that can no longer become final: ids below a final that
   * arrived (finals come in order; the server dropped those segments), or all of them once the
   * session has ended.
   */
  function removeDeadPartials(sessionId, belowId = Infinity) {
    for (const seg of transcript.segments.values()) {
      if (seg.sessionId === sessionId && !seg.final && seg.id < belowId) {
        if (seg.el) seg.el.remove();
        transcript.segments.delete(seg.key);
      }
    }
  }

  function onPartial(conn, msg) {
    const id = segmentIdOf(msg);
    if (id == null) return;
    const last = transcript.lastFinal.get(sessionIdOf(conn));
    if (last != null && id <= last) return; // its final (or a later one) already arrived
    const seg = segmentFor(conn, id);
    if (seg.final) return;
    seg.text = str(msg.text).trim();
    seg.start = num(msg.start) ?? seg.start;
    seg.end = num(msg.end) ?? seg.end;
    if (!seg.el) {
      buildSegmentElement(seg);
      ui.transcript.append(seg.el);
    }
    paintSegment(seg);
    afterTranscriptChange();
  }

  function onFinal(conn, msg) {
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
    if (isNew) transcript.finals.push(seg);
    transcript.lastFinal.set(sessionId, Math.max(transcript.lastFinal.get(sessionId) ?? -1, id));
    removeDeadPartials(sessionId, id);
    updateFinalCount();
    if (seg.early.length || seg.keywords) scheduleTopKeywords();
    afterTranscriptChange();
  }

  function addNote(ko, en) {
    const note = h('div', 'note');
    note.append(bi(ko, en));
    ui.transcript.append(note);
    afterTranscriptChange();
  }

  function updateFinalCount() {
    const n = transcript.finals.length;
    ui.finalCount.textContent = n ? `${n}문장 / ${n} final${n === 1 ? '' : 's'}` : '';
    ui.downloadTxt.disabled = n === 0;
    ui.downloadSrt.disabled = n === 0;
  }

  // --- keywords --------------------------------------------------------------------------

  function categoryLabel(id) {
    const c = categories.get(id);
    return c ? c.ko : id;
  }

  function normalizeKeyword(raw) {
    if (!raw || typeof raw.text !== 'string') return null;
    const text = raw.text.trim();
    if (!text) return null;
    const category = str(raw.category) || 'other';
    return { text, category, label: str(raw.label) || categoryLabel(category) };
  }

  const keywordKey = (k) => k.text.normalize('NFC').toLowerCase();

  function makeChip(k) {
    // The chip's text is only the keyword (tests and copy-paste read it); the category is its
    // colour, its data-category and its tooltip.
    const chip = h('span', `keyword cat-${cssId(k.category)}`, k.text);
    chip.dataset.category = k.category;
    chip.title = k.label;
    return chip;
  }

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

  function onKeyword(conn, msg) {
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

  function onKeywords(conn, msg) {
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
  function onRag(conn, msg) {
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

  function scheduleTopKeywords() {
    if (transcript.topTimer) return;
    transcript.topTimer = setTimeout(() => {
      transcript.topTimer = null;
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
    for (const seg of transcript.segments.values()) {
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
    ui.topKeywords.replaceChildren(...top.map((t) => {
      const li = h('li', `top-keyword cat-${cssId(t.category)}`);
      li.dataset.category = t.category;
      li.dataset.count = String(t.count);
      li.title = `${t.label} · ${t.count}회 / ${t.count}×`;
      li.append(h('span', 'top-keyword-text', t.text), h('span', 'count', String(t.count)));
      return li;
    }));
  }

  // --- auto-scroll -----------------------------------------------------------------------

  function isAtBottom() {
    const el = ui.transcript;
    return el.scrollHeight - el.scrollTop - el.clientHeight <= SCROLL_SLACK_PX;
  }

  function onTranscriptScroll() {
    transcript.stick = isAtBottom();
    ui.jump.hidden = transcript.stick;
  }

  function afterTranscriptChange() {
    if (transcript.stick) ui.transcript.scrollTop = ui.transcript.scrollHeight;
    else ui.jump.hidden = false;
  }

  function jumpToLatest() {
    transcript.stick = true;
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
    ui.jump.hidden = true;
  }

  // --- downloads -------------------------------------------------------------------------

  function sortedFinals() {
    return transcript.finals.filter((s) => s.text).sort((a, b) => absStart(a) - absStart(b));
  }

  const oneLine = (text) => text.replace(/\s+/g, ' ').trim();

  function transcriptText() {
    return sortedFinals().map((s) => `[${clockSeconds(absStart(s))}] ${oneLine(s.text)}\n`).join('');
  }

  function transcriptSrt() {
    return sortedFinals()
      .map((s, i) => `${i + 1}\n${srtTime(absStart(s))} --> ${srtTime(absEnd(s))}\n${oneLine(s.text)}\n\n`)
      .join('');
  }

  function fileStamp() {
    const d = new Date();
    return `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
  }

  function saveFile(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = h('a');
    a.href = url;
    a.download = name;
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    // Revoking at once can cancel the download in some browsers.
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ---------------------------------------------------------------------------------------
  // Microphone capture
  // ---------------------------------------------------------------------------------------
  function describeCaptureError(err) {
    if (err && err.userFacing) return err;
    const name = (err && err.name) || '';
    const detail = (err && err.message) || String(err);
    switch (name) {
      case 'NotAllowedError':
      case 'PermissionDeniedError':
      case 'SecurityError':
        return userError('microphone_denied',
          '마이크 권한이 거부되었습니다. 주소창의 사이트 설정에서 마이크를 허용한 뒤 다시 시작하세요. / ' +
          'Microphone permission was denied: allow the microphone in the site settings, then press Start again.');
      case 'NotFoundError':
      case 'DevicesNotFoundError':
      case 'OverconstrainedError':
        return userError('microphone_missing', '마이크를 찾을 수 없습니다. / No microphone was found.');
      case 'NotReadableError':
      case 'TrackStartError':
      case 'AbortError':
        return userError('microphone_busy',
          '마이크를 열 수 없습니다 (다른 프로그램이 사용 중일 수 있습니다). / ' +
          'The microphone could not be opened (another application may be using it).');
      default:
        return userError('audio_error', `오디오 오류 / audio error: ${name ? `${name}: ` : ''}${detail}`);
    }
  }

  function checkCaptureSupport() {
    if (!navigator.mediaDevices || typeof navigator.mediaDevices.getUserMedia !== 'function') {
      throw window.isSecureContext
        ? userError('microphone_unsupported', '이 브라우저는 마이크 입력을 지원하지 않습니다. / This browser cannot capture the microphone.')
        : userError('insecure_context',
          '마이크는 HTTPS 또는 localhost 주소에서만 사용할 수 있습니다. / ' +
          'The microphone is only available over HTTPS or on localhost.');
    }
    if (typeof AudioWorkletNode !== 'function' || !(window.AudioContext || window.webkitAudioContext)) {
      throw userError('audioworklet_unsupported',
        '이 브라우저는 AudioWorklet을 지원하지 않습니다. 최신 Chrome, Edge, Firefox, Safari를 사용하세요. / ' +
        'This browser has no AudioWorklet: use a current Chrome, Edge, Firefox or Safari.');
    }
  }

  /**
   * Opens the microphone and the PCM worklet. Call it directly from the click handler: the
   * AudioContext is created before the first await, while the click still counts as a user
   * gesture (autoplay policies).
   */
  async function startCapture(onChunk) {
    checkCaptureSupport();
    const AudioCtx = window.AudioContext || window.webkitAudioContext;
    let ctx = new AudioCtx();
    if (ctx.sampleRate < MIN_SAMPLE_RATE || ctx.sampleRate > MAX_SAMPLE_RATE) {
      // e.g. a 96 kHz interface: ask the browser to resample to a rate the server accepts.
      ctx.close().catch(() => {});
      ctx = new AudioCtx({ sampleRate: MAX_SAMPLE_RATE });
    }
    ctx.resume().catch(() => {});
    let stream = null;
    try {
      if (!ctx.audioWorklet) {
        throw userError('audioworklet_unsupported',
          'AudioWorklet을 사용할 수 없습니다 (HTTPS 또는 localhost 필요). / ' +
          'AudioWorklet is unavailable (it needs HTTPS or localhost).');
      }
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      await ctx.audioWorklet.addModule('/static/pcm-worklet.js');
      const sampleRate = ctx.sampleRate;
      const source = ctx.createMediaStreamSource(stream);
      const node = new AudioWorkletNode(ctx, 'pcm-s16le', {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        channelCount: 1,
        channelCountMode: 'explicit', // the browser downmixes to mono before process()
        channelInterpretation: 'speakers',
        processorOptions: { chunkSamples: Math.round(sampleRate * CHUNK_SECONDS) },
      });
      // The node must reach the destination to be pulled by the graph in every browser, but
      // through a muted gain: the operator must never hear themselves (feedback).
      const sink = ctx.createGain();
      sink.gain.value = 0;
      source.connect(node);
      node.connect(sink);
      sink.connect(ctx.destination);

      const cap = { ctx, stream, source, node, sink, sampleRate, onFlushed: null };
      node.port.onmessage = (event) => {
        const data = event.data;
        if (data instanceof ArrayBuffer) onChunk(data, sampleRate);
        else if (data && data.type === 'flushed' && cap.onFlushed) cap.onFlushed();
      };
      for (const track of stream.getAudioTracks()) {
        track.addEventListener('ended', () => onMicrophoneEnded(cap));
      }
      // Usually running already; give a pending resume() a moment before warning about it.
      await Promise.race([ctx.resume().catch(() => {}), new Promise((r) => setTimeout(r, 1000))]);
      ctx.addEventListener('statechange', () => onAudioStateChange(cap));
      if (ctx.state !== 'running') onAudioStateChange(cap);
      return cap;
    } catch (err) {
      if (stream) stream.getTracks().forEach((t) => t.stop());
      ctx.close().catch(() => {});
      throw describeCaptureError(err);
    }
  }

  /** Gets the last, partly filled chunk out of the worklet (so the final words are sent). */
  function flushCapture(cap) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        cap.onFlushed = null;
        resolve();
      };
      const timer = setTimeout(done, FLUSH_TIMEOUT_MS);
      cap.onFlushed = done;
      try {
        cap.source.disconnect();
        cap.node.port.postMessage({ type: 'flush' });
      } catch {
        done();
      }
    });
  }

  function stopCapture(cap) {
    for (const track of cap.stream.getTracks()) track.stop();
    try {
      cap.node.port.postMessage({ type: 'stop' });
      cap.node.port.onmessage = null;
      cap.source.disconnect();
      cap.node.disconnect();
      cap.sink.disconnect();
    } catch {
      // already disconnected
    }
    cap.ctx.close().catch(() => {});
  }

  function onMicrophoneEnded(cap) {
    if (app.capture !== cap) return;
    showError('microphone_ended',
      '마이크 입력이 끊겼습니다 (장치 분리 또는 권한 해제). / The microphone stopped (device unplugged or permission revoked).',
      { sticky: true });
    stop();
  }

  function onAudioStateChange(cap) {
    if (app.capture !== cap && app.capture !== null) return;
    const state = cap.ctx.state;
    if (state === 'running' || state === 'closed') return;
    // Autoplay rules or the OS (a phone call) suspended audio: resume on the next interaction.
    showError('audio_suspended',
      '오디오가 일시 중지되었습니다. 페이지를 한 번 누르면 다시 시작합니다. / Audio is suspended: tap the page once to resume.');
    const resume = () => cap.ctx.resume().catch(() => {});
    document.addEventListener('pointerdown', resume, { once: true });
    document.addEventListener('keydown', resume, { once: true });
  }

  // ---------------------------------------------------------------------------------------
  // Audio → socket
  // ---------------------------------------------------------------------------------------
  const isOpen = (conn) => conn.ws.readyState === WebSocket.OPEN;

  function onAudioChunk(buf, sampleRate) {
    // Wall time of the chunk's first sample, to line reconnected sessions up on one timeline.
    const item = { buf, t: Date.now() - (buf.byteLength / 2 / sampleRate) * 1000 };
    const conn = app.conn;
    if (conn && isOpen(conn) && !conn.stopping) {
      sendPending(conn);
      sendAudio(conn, item);
    } else {
      queuePending(item, sampleRate);
    }
  }

  function queuePending(item, sampleRate) {
    app.pending.push(item);
    app.pendingBytes += item.buf.byteLength;
    const limit = sampleRate * 2 * PENDING_MAX_SECONDS;
    while (app.pendingBytes > limit && app.pending.length > 0) {
      app.pendingBytes -= app.pending.shift().buf.byteLength;
      app.droppedChunks += 1;
    }
  }

  function sendPending(conn) {
    while (app.pending.length > 0) sendAudio(conn, app.pending.shift());
    app.pendingBytes = 0;
  }

  function sendAudio(conn, item) {
    if (conn.ws.bufferedAmount > conn.sampleRate * 2 * SOCKET_BUFFER_MAX_SECONDS) {
      app.droppedChunks += 1; // the network is far behind; do not grow memory without bound
      return;
    }
    if (conn.audioStartWall == null) {
      conn.audioStartWall = item.t;
      if (app.epoch == null) app.epoch = item.t;
    }
    conn.ws.send(item.buf);
  }

  // ---------------------------------------------------------------------------------------
  // WebSocket sessions
  // ---------------------------------------------------------------------------------------
  /** `path` with the page's own `?token=` (when the server asks for one) added. */
  function withToken(path) {
    const token = new URLSearchParams(window.location.search).get('token');
    if (!token) return path;
    const sep = path.includes('?') ? '&' : '?';
    return `${path}${sep}token=${encodeURIComponent(token)}`;
  }

  function wsUrl(sampleRate) {
    const params = new URLSearchParams({
      sample_rate: String(Math.round(sampleRate)),
      encoding: 'pcm_s16le',
      channels: '1',
      language: ui.language.value,
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
      if (conn === app.conn && !conn.stopping) sendPending(conn);
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
    if (msg.model) ui.model.textContent = String(msg.model);
    if (first) {
      conn.sessionId = str(msg.session_id) || conn.localId;
      conn.readyWall = Date.now();
      if (transcript.segments.size > 0 || transcript.finals.length > 0) {
        const at = new Date().toLocaleTimeString();
        addNote(`새 세션 ${shortId(conn.sessionId)} · ${at}`, 'new session');
      }
    }
    if (conn !== app.conn) return;
    app.reconnectAttempt = 0;
    setConn('open');
    ui.session.textContent = shortId(conn.sessionId);
    ui.session.title = `세션 ID / session id: ${conn.sessionId}`;
    const rate = num(conn.options.sample_rate);
    if (rate != null && rate !== Math.round(conn.sampleRate)) {
      showError('sample_rate',
        `서버가 ${rate} Hz로 해석합니다 (브라우저 ${conn.sampleRate} Hz). / ` +
        `The server reads the audio as ${rate} Hz but this browser captures ${conn.sampleRate} Hz.`,
        { sticky: true });
    }
  }

  function onSessionStatus(conn, msg) {
    if (conn !== app.conn) return;
    const lag = num(msg.lag_ms);
    const queue = num(msg.queue_depth);
    const audio = num(msg.audio_seconds);
    const parts = [];
    if (lag != null) parts.push(`지연 / lag ${Math.round(lag)} ms`);
    if (queue != null) parts.push(`대기열 / queue ${queue}`);
    if (audio != null) parts.push(`${audio.toFixed(0)} s`);
    ui.connStats.textContent = parts.join(' · ');
    ui.connStats.classList.toggle('lagging', lag != null && lag > LAG_WARN_MS);
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
    app.draining.delete(conn);
    removeDeadPartials(sessionIdOf(conn)); // they will never get a final now

    if (conn !== app.conn) {
      // A connection the user stopped: it finished (after `closed`) or was cut off.
      if (conn.stopping && conn.ready && !conn.gotClosed) {
        showError(conn.timedOut ? 'stop_timeout' : 'closed_early',
          '마지막 결과를 받기 전에 연결이 끝났습니다 (서버에는 자막 파일이 남습니다). / ' +
          'The connection ended before the last results arrived (the server still wrote the transcript files).');
      }
      if (!app.running && !app.conn && app.draining.size === 0) {
        setConn(conn.gotClosed || conn.stopping ? 'closed' : 'error');
      }
      return;
    }

    app.conn = null;
    if (!app.running) {
      setConn('closed');
      return;
    }
    handleUnexpectedClose(conn, event);
  }

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
      stop().finally(() => setConn('error'));
      return;
    }
    let delay;
    if (event.code === 1013 || conn.serverFull) {
      if (!conn.serverFull) showError('server_full', `서버가 가득 찼습니다 / the server is full (1013)${reason}`);
      delay = jittered(Math.min(SERVER_FULL_MAX_MS, SERVER_FULL_MIN_MS * 2 ** Math.min(app.reconnectAttempt, 2)));
    } else {
      delay = Math.min(RECONNECT_MAX_MS, jittered(RECONNECT_BASE_MS * 2 ** Math.min(app.reconnectAttempt, 5)));
      if (conn.ready) {
        showError('disconnected',
          `연결이 끊겼습니다 (코드 ${event.code}). 다시 연결합니다. / Connection lost (code ${event.code}); reconnecting.`);
      } else if (app.reconnectAttempt === 0) {
        showError('connect_failed',
          `서버에 연결할 수 없습니다 (코드 ${event.code}). 계속 다시 시도합니다. / ` +
          `Cannot reach the server (code ${event.code}); retrying.`);
      }
    }
    app.reconnectAttempt += 1;
    scheduleReconnect(delay);
  }

  function scheduleReconnect(delay) {
    clearTimeout(app.reconnectTimer);
    const secs = (delay / 1000).toFixed(1);
    setConn('reconnecting', `재연결 중 (${secs}초 후)`, `reconnecting in ${secs} s`);
    app.reconnectTimer = setTimeout(() => {
      app.reconnectTimer = null;
      if (!app.running || app.conn || !app.capture) return;
      app.conn = openConnection(app.capture.sampleRate);
      setConn('reconnecting');
    }, delay);
  }

  /** Sends `stop` and lets the session finish (its last finals and keywords still arrive). */
  function finishConnection(conn) {
    conn.stopping = true;
    if (isOpen(conn)) {
      conn.ws.send(JSON.stringify({ type: 'stop' }));
      app.draining.add(conn);
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

  // ---------------------------------------------------------------------------------------
  // Start / stop / language
  // ---------------------------------------------------------------------------------------
  async function start() {
    if (app.running || app.starting) return;
    app.starting = true;
    ui.start.disabled = true;
    setConn('connecting', '마이크 준비 중', 'opening the microphone');
    try {
      const cap = await startCapture(onAudioChunk); // must run first, inside the click
      app.capture = cap;
      app.running = true;
      app.reconnectAttempt = 0;
      // app.pending may already hold the first chunks (posted while startCapture finished);
      // they go out as soon as the socket opens. stop() empties it.
      setButton('running');
      app.conn = openConnection(cap.sampleRate);
      setConn('connecting');
    } catch (err) {
      const e = describeCaptureError(err);
      showError(e.code, e.message, { sticky: true });
      setConn('error');
    } finally {
      app.starting = false;
      ui.start.disabled = false;
    }
  }

  async function stop() {
    if (!app.running) return;
    app.running = false;
    clearTimeout(app.reconnectTimer);
    app.reconnectTimer = null;
    setButton('idle');
    ui.start.disabled = true; // only for the flush (≤ FLUSH_TIMEOUT_MS)
    const cap = app.capture;
    try {
      if (cap) await flushCapture(cap); // its last chunk still goes to app.conn
    } finally {
      if (cap) stopCapture(cap);
      app.capture = null;
      app.pending = [];
      app.pendingBytes = 0;
      const conn = app.conn;
      app.conn = null;
      if (conn) finishConnection(conn);
      else if (app.draining.size === 0) setConn('closed');
      ui.start.disabled = false;
    }
  }

  function onLanguageChange() {
    const conn = app.conn;
    // Reconnects read the select, so only the live session needs telling.
    if (conn && isOpen(conn) && !conn.stopping) {
      conn.ws.send(JSON.stringify({ type: 'start', language: ui.language.value }));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Server monitor (#monitor): /api/status/stream, or /api/status polled as a fallback
  // ---------------------------------------------------------------------------------------
  function dot(level) {
    return h('span', `dot dot-${level}`);
  }

  /** One status line: coloured dot, bilingual state, then details separated by " · ". */
  function statusLine(el, { state, level, ko, en, details = [], title = '' }) {
    el.dataset.state = state;
    el.title = title;
    const parts = [dot(level), bi(ko, en)];
    for (const d of details.filter((x) => x !== '' && x != null)) parts.push(h('span', 'detail', ` · ${d}`));
    el.replaceChildren(...parts);
  }

  function meter(pct, label) {
    const bar = h('span', 'meter');
    bar.setAttribute('role', 'meter');
    bar.setAttribute('aria-label', label);
    bar.setAttribute('aria-valuemin', '0');
    bar.setAttribute('aria-valuemax', '100');
    const clamped = Math.max(0, Math.min(100, pct ?? 0));
    bar.setAttribute('aria-valuenow', String(Math.round(clamped)));
    const fill = h('span', 'meter-fill');
    fill.style.width = `${clamped}%`;
    if (clamped >= 90) fill.classList.add('high');
    bar.append(fill);
    return bar;
  }

  function meterLine(label, pct, value) {
    const line = h('div', 'meter-line');
    line.append(h('span', 'meter-label', label), meter(pct, label), h('span', 'meter-value', value));
    return line;
  }

  function formatMb(mb) {
    if (mb == null) return '—';
    return mb >= 1024 ? `${(mb / 1024).toFixed(1)} GB` : `${Math.round(mb)} MB`;
  }

  function renderGpu(gpu) {
    const el = ui.gpuStatus;
    if (!gpu || gpu.available !== true) {
      statusLine(el, {
        state: 'none', level: 'off', ko: 'GPU 없음', en: 'no GPU (CPU)',
        title: (gpu && str(gpu.reason)) || 'GPU 없음 / no GPU',
      });
      return;
    }
    const devices = Array.isArray(gpu.devices) ? gpu.devices : [];
    const title = gpu.used_by_whisper === false ? 'Whisper는 CPU에서 실행 / Whisper runs on the CPU' : '';
    if (devices.length === 0) {
      statusLine(el, { state: 'available', level: 'ok', ko: 'GPU 있음', en: 'GPU available', title });
      return;
    }
    el.dataset.state = 'available';
    el.title = title;
    el.replaceChildren(...devices.map((d) => {
      const used = num(d.memory_used_mb);
      const total = num(d.memory_total_mb);
      const util = num(d.utilization_pct);
      const memPct = used != null && total ? (used / total) * 100 : 0;
      const row = h('div', 'gpu-device');
      const index = num(d.index);
      row.append(
        h('div', 'gpu-name', `${index != null ? `#${index} ` : ''}${str(d.name) || 'GPU'}`),
        meterLine('사용률 / util', util, util != null ? `${Math.round(util)} %` : '—'),
        meterLine('메모리 / mem', memPct, `${formatMb(used)} / ${formatMb(total)}`),
      );
      return row;
    }));
  }

  function renderLlm(llm) {
    const el = ui.llmStatus;
    if (!llm || llm.enabled !== true) {
      statusLine(el, { state: 'off', level: 'off', ko: '꺼짐', en: 'off', title: 'LLM 키워드 추출 꺼짐 / keyword LLM disabled' });
      return;
    }
    const latency = num(llm.last_latency_ms);
    const circuit = str(llm.circuit);
    const details = [
      str(llm.model),
      latency != null ? `${Math.round(latency)} ms` : '',
      circuit && circuit !== 'closed' ? `circuit ${circuit}` : '',
    ];
    const title = [
      str(llm.base_url),
      `calls ${num(llm.calls) ?? 0}`,
      `failures ${num(llm.failures) ?? 0}`,
      `rejected ${num(llm.rejected) ?? 0}`,
      circuit ? `circuit ${circuit}` : '',
    ].filter(Boolean).join(' · ');
    if (llm.reachable === true) {
      statusLine(el, { state: 'reachable', level: circuit && circuit !== 'closed' ? 'warn' : 'ok', ko: '연결됨', en: 'reachable', details, title });
    } else {
      statusLine(el, { state: 'unreachable', level: 'bad', ko: '연결 안 됨', en: 'unreachable', details, title });
    }
  }

  function renderCache(cache) {
    const el = ui.cacheStatus;
    if (!cache || typeof cache !== 'object') {
      statusLine(el, { state: 'unknown', level: 'off', ko: '정보 없음', en: 'unknown' });
      return;
    }
    const hits = num(cache.hits) ?? 0;
    const misses = num(cache.misses) ?? 0;
    const rate = num(cache.hit_rate) ?? (hits + misses > 0 ? hits / (hits + misses) : 0);
    const size = num(cache.current_size);
    const max = num(cache.max_size);
    const details = [
      `적중률 / hit rate ${Math.round(rate * 100)}%`,
      size != null ? `${size}${max != null ? ` / ${max}` : ''}` : '',
    ];
    const connected = cache.connected !== false;
    statusLine(el, {
      state: connected ? 'connected' : 'disconnected',
      level: connected ? 'ok' : 'bad',
      ko: `${str(cache.type) || 'cache'} ${connected ? '연결됨' : '연결 끊김'}`,
      en: connected ? 'connected' : 'disconnected',
      details,
      title: `hits ${hits} · misses ${misses}`,
    });
  }

  function renderRag(rag) {
    const el = ui.ragStatus;
    if (!rag || rag.enabled !== true) {
      statusLine(el, { state: 'off', level: 'off', ko: '꺼짐', en: 'off' });
      return;
    }
    const connected = rag.connected;
    const extra = Object.entries(rag)
      .filter(([k]) => !['enabled', 'store', 'connected'].includes(k))
      .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`)
      .join(' · ');
    statusLine(el, {
      state: connected === false ? 'disconnected' : 'on',
      level: connected === false ? 'bad' : 'ok',
      ko: '켜짐',
      en: 'on',
      details: [str(rag.store), connected === true ? '연결됨 / connected' : connected === false ? '연결 끊김 / disconnected' : ''],
      title: extra,
    });
  }

  function renderSessions(s) {
    const el = ui.sessionsStatus;
    const open = num(s.sessions);
    const max = num(s.max_sessions);
    el.dataset.state = open != null && max != null && open >= max ? 'full' : 'ok';
    el.replaceChildren(
      h('span', 'figure', `${open ?? '—'} / ${max ?? '—'}`),
      meter(open != null && max ? (open / max) * 100 : 0, 'sessions'),
    );
    el.title = '열린 세션 / 최대 — open sessions / maximum';
  }

  function renderQueue(s) {
    const el = ui.queueStatus;
    const d = s.decoder && typeof s.decoder === 'object' ? s.decoder : {};
    const queue = num(d.queue_depth);
    const busy = num(d.busy);
    const workers = num(d.workers);
    const lag = num(s.max_lag_ms);
    const rtf = num(d.real_time_factor);
    const item = (label, value) => {
      const span = h('span', 'kv');
      span.append(h('span', 'k', label), ' ', h('span', 'v', value));
      return span;
    };
    el.dataset.state = (queue ?? 0) > 0 || (lag ?? 0) > LAG_WARN_MS ? 'busy' : 'ok';
    el.replaceChildren(
      item('대기열 / queue', String(queue ?? '—')),
      item('작업 / busy', `${busy ?? '—'}/${workers ?? '—'}`),
      item('최대 지연 / max lag', lag != null ? `${Math.round(lag)} ms` : '—'),
      item('RTF', rtf != null ? rtf.toFixed(2) : '—'),
    );
    el.title = `decodes ${num(d.decodes) ?? 0}`;
  }

  function formatUptime(seconds) {
    const s = Math.floor(seconds);
    const d = Math.floor(s / 86400);
    const hh = Math.floor(s / 3600) % 24;
    const mm = Math.floor(s / 60) % 60;
    if (d > 0) return `${d}d ${hh}h`;
    if (hh > 0) return `${hh}h ${pad(mm)}m`;
    return `${mm}m ${pad(s % 60)}s`;
  }

  /** Repaints a section only when its data changed (no flicker under open tooltips). */
  function renderSection(name, data, render) {
    const json = JSON.stringify(data ?? null);
    if (monitor.rendered[name] === json) return;
    monitor.rendered[name] = json;
    try {
      render(data);
    } catch (err) {
      console.error(`sori: monitor ${name}`, err);
    }
  }

  function acceptStatus(s) {
    if (!s || typeof s !== 'object') return;
    monitor.lastUpdate = Date.now();
    renderSection('gpu', s.gpu, renderGpu);
    renderSection('llm', s.llm, renderLlm);
    renderSection('cache', s.cache, renderCache);
    renderSection('rag', s.rag, renderRag);
    renderSection('sessions', { sessions: s.sessions, max_sessions: s.max_sessions }, renderSessions);
    renderSection('queue', { decoder: s.decoder, max_lag_ms: s.max_lag_ms }, renderQueue);
    const up = num(s.uptime_s);
    ui.uptime.textContent = up != null ? `가동 / uptime ${formatUptime(up)}` : '';
    updateMonitorAge();
  }

  function acceptStatusText(text) {
    try {
      acceptStatus(JSON.parse(text));
    } catch {
      // a keep-alive comment or a malformed event: ignore
    }
  }

  function updateMonitorAge() {
    if (!monitor.lastUpdate) {
      ui.monitor.classList.add('stale');
      return;
    }
    const age = Date.now() - monitor.lastUpdate;
    const s = Math.floor(age / 1000);
    ui.monitorAge.textContent = s < 2 ? '방금 / just now' : `${s}초 전 / ${s} s ago`;
    ui.monitorAge.title = `마지막 갱신 / last update ${new Date(monitor.lastUpdate).toLocaleTimeString()} (${monitor.via})`;
    ui.monitor.classList.toggle('stale', age > STATUS_STALE_MS);
  }

  function openStatusStream() {
    const source = new EventSource(withToken('/api/status/stream'));
    monitor.source = source;
    monitor.via = 'SSE';
    const onData = (event) => {
      monitor.failures = 0;
      acceptStatusText(event.data);
    };
    source.addEventListener('message', onData); // unnamed events
    source.addEventListener('status', onData); // in case the server names them `status`
    source.addEventListener('error', () => {
      // EventSource reconnects by itself; only give up on it when that keeps failing (a proxy
      // that buffers or blocks event streams) or when it will not retry at all.
      monitor.failures += 1;
      if (source.readyState === EventSource.CLOSED || monitor.failures >= SSE_MAX_FAILURES) {
        source.close();
        monitor.source = null;
        startPolling();
      }
    });
  }

  function startPolling() {
    if (monitor.polling) return;
    monitor.polling = true;
    monitor.via = 'polling /api/status';
    pollStatus();
  }

  async function pollStatus() {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), STATUS_POLL_MS * 2);
    try {
      const response = await fetch(withToken('/api/status'), { cache: 'no-store', signal: controller.signal });
      if (response.ok) acceptStatus(await response.json());
    } catch {
      // server unreachable: the panel turns stale
    } finally {
      clearTimeout(timer);
      setTimeout(pollStatus, STATUS_POLL_MS);
    }
  }

  function startMonitor() {
    if (typeof EventSource === 'function') openStatusStream();
    else startPolling();
    setInterval(updateMonitorAge, 1000);
  }

  // ---------------------------------------------------------------------------------------
  // Wiring
  // ---------------------------------------------------------------------------------------
  function readCategories() {
    for (const el of document.querySelectorAll('#categories [data-category]')) {
      categories.set(el.dataset.category, { ko: el.dataset.ko || el.dataset.category, en: el.dataset.en || '' });
    }
  }

  function init() {
    ui = {
      start: $('start'),
      startLabel: document.querySelector('#start .start-label'),
      language: $('language'),
      conn: $('conn'),
      connLabel: $('conn-label'),
      connStats: $('conn-stats'),
      session: $('session'),
      model: $('model'),
      errors: $('errors'),
      transcript: $('transcript'),
      jump: $('jump-latest'),
      finalCount: $('final-count'),
      topKeywords: $('top-keywords'),
      downloadTxt: $('download-txt'),
      downloadSrt: $('download-srt'),
      monitor: $('monitor'),
      monitorAge: $('monitor-age'),
      uptime: $('uptime'),
      gpuStatus: $('gpu-status'),
      llmStatus: $('llm-status'),
      cacheStatus: $('cache-status'),
      ragStatus: $('rag-status'),
      sessionsStatus: $('sessions-status'),
      queueStatus: $('queue-status'),
    };
    readCategories();
    if (!LANGUAGES.includes(ui.language.value)) ui.language.value = 'ko';

    ui.start.addEventListener('click', () => {
      if (app.running) stop();
      else start();
    });
    ui.language.addEventListener('change', onLanguageChange);
    ui.transcript.addEventListener('scroll', onTranscriptScroll, { passive: true });
    if (typeof ResizeObserver === 'function') {
      // A resized panel (rotation, window resize, error lines above) keeps following the end.
      new ResizeObserver(() => {
        if (transcript.stick) ui.transcript.scrollTop = ui.transcript.scrollHeight;
      }).observe(ui.transcript);
    }
    ui.jump.addEventListener('click', jumpToLatest);
    ui.downloadTxt.addEventListener('click', () =>
      saveFile(`sori-${fileStamp()}.txt`, transcriptText(), 'text/plain;charset=utf-8'));
    ui.downloadSrt.addEventListener('click', () =>
      saveFile(`sori-${fileStamp()}.srt`, transcriptSrt(), 'application/x-subrip;charset=utf-8'));

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
})();
