// sori live page — the #monitor panel: the server's status (GPU, LLM, cache, RAG, sessions,
// decoder) from the /api/status/stream event stream, or /api/status polled as a fallback.

import { $, LAG_WARN_MS, authHeaders, bi, h, num, pad, str, withToken } from './util.js';

const STATUS_POLL_MS = 2000;
const STATUS_STALE_MS = 5000;
const SSE_MAX_FAILURES = 3;

const monitor = {
  source: null,
  failures: 0,
  polling: false,
  lastUpdate: 0,
  via: '',
  rendered: {}, // section → JSON of what is shown (skip identical repaints)
};

/** The panel's elements, filled by startMonitor(). */
const els = {};

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
  const el = els.gpuStatus;
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
  const el = els.llmStatus;
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
  const el = els.cacheStatus;
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
  const el = els.ragStatus;
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
  const el = els.sessionsStatus;
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
  const el = els.queueStatus;
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
  els.uptime.textContent = up != null ? `가동 / uptime ${formatUptime(up)}` : '';
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
    els.monitor.classList.add('stale');
    return;
  }
  const age = Date.now() - monitor.lastUpdate;
  const s = Math.floor(age / 1000);
  els.monitorAge.textContent = s < 2 ? '방금 / just now' : `${s}초 전 / ${s} s ago`;
  els.monitorAge.title = `마지막 갱신 / last update ${new Date(monitor.lastUpdate).toLocaleTimeString()} (${monitor.via})`;
  els.monitor.classList.toggle('stale', age > STATUS_STALE_MS);
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
    const response = await fetch('/api/status', {
      cache: 'no-store',
      headers: authHeaders(),
      signal: controller.signal,
    });
    if (response.ok) acceptStatus(await response.json());
  } catch {
    // server unreachable: the panel turns stale
  } finally {
    clearTimeout(timer);
    setTimeout(pollStatus, STATUS_POLL_MS);
  }
}

export function startMonitor() {
  Object.assign(els, {
    monitor: $('monitor'),
    monitorAge: $('monitor-age'),
    uptime: $('uptime'),
    gpuStatus: $('gpu-status'),
    llmStatus: $('llm-status'),
    cacheStatus: $('cache-status'),
    ragStatus: $('rag-status'),
    sessionsStatus: $('sessions-status'),
    queueStatus: $('queue-status'),
  });
  if (typeof EventSource === 'function') openStatusStream();
  else startPolling();
  setInterval(updateMonitorAge, 1000);
}
