// sori live page — the transcript's data: segments of every session on one timeline (no DOM).
// The rendering is transcript.js; the downloads and the top keywords read from here too.

/** Everything shown in #transcript, keyed by `session_id + ":" + segment_id`. */
export const store = {
  segments: new Map(),
  lastFinal: new Map(), // session id → highest final segment_id seen
  finals: [], // segment records in arrival order (for downloads)
  epoch: null, // wall time (ms) of the first audio sample sent: transcript time 0
};

/** Called with the wall time of each connection's first audio sample; the first one is time 0. */
export function noteAudioStart(wallMs) {
  if (store.epoch == null) store.epoch = wallMs;
}

export const sessionIdOf = (conn) => conn.sessionId || conn.localId;
export const segmentIdOf = (msg) => (Number.isInteger(msg.segment_id) && msg.segment_id >= 0 ? msg.segment_id : null);
export const absStart = (seg) => seg.offset + seg.start;
export const absEnd = (seg) => seg.offset + Math.max(seg.end, seg.start);

/**
 * Seconds between transcript time 0 and this session's audio time 0. A reconnect starts a new
 * server session whose times restart at 0; the offset keeps the page's timestamps increasing.
 */
function sessionOffset(conn) {
  if (conn.offset == null) {
    const t0 = conn.audioStartWall ?? conn.readyWall ?? Date.now();
    conn.offset = store.epoch == null ? 0 : Math.max(0, (t0 - store.epoch) / 1000);
  }
  return conn.offset;
}

export function segmentFor(conn, id) {
  const sessionId = sessionIdOf(conn);
  const key = `${sessionId}:${id}`;
  let seg = store.segments.get(key);
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
    store.segments.set(key, seg);
  }
  return seg;
}

/** Finals with text, in time order. */
export function sortedFinals() {
  return store.finals.filter((s) => s.text).sort((a, b) => absStart(a) - absStart(b));
}
