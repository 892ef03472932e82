// sori live page — microphone capture: getUserMedia → AudioWorklet (static/pcm-worklet.js) →
// ~100 ms chunks of 16-bit mono PCM at the AudioContext's rate, handed to `onChunk` (the page
// sends them to the socket, see connection.js).

import { userError } from './util.js';
import { showError } from './errors.js';

const CHUNK_SECONDS = 0.1; // the worklet posts ~100 ms of PCM per message
const MIN_SAMPLE_RATE = 8000; // what the server accepts (docs/protocol.md)
const MAX_SAMPLE_RATE = 48000;
const FLUSH_TIMEOUT_MS = 300;

/** The capture failure `err` as a user-facing error ({code, message}). */
export function describeCaptureError(err) {
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
 *
 * `onChunk(arrayBuffer, sampleRate)` gets the PCM. `page.current()` is the page's capture now
 * (null while this one is starting); `page.stop()` stops the page when the microphone goes away.
 */
export async function startCapture(onChunk, page) {
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
      track.addEventListener('ended', () => onMicrophoneEnded(cap, page));
    }
    // Usually running already; give a pending resume() a moment before warning about it.
    await Promise.race([ctx.resume().catch(() => {}), new Promise((r) => setTimeout(r, 1000))]);
    ctx.addEventListener('statechange', () => onAudioStateChange(cap, page));
    if (ctx.state !== 'running') onAudioStateChange(cap, page);
    return cap;
  } catch (err) {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    ctx.close().catch(() => {});
    throw describeCaptureError(err);
  }
}

/** Gets the last, partly filled chunk out of the worklet (so the final words are sent). */
export function flushCapture(cap) {
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

export function stopCapture(cap) {
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

function onMicrophoneEnded(cap, page) {
  if (page.current() !== cap) return;
  showError('microphone_ended',
    '마이크 입력이 끊겼습니다 (장치 분리 또는 권한 해제). / The microphone stopped (device unplugged or permission revoked).',
    { sticky: true });
  page.stop();
}

function onAudioStateChange(cap, page) {
  const current = page.current();
  if (current !== cap && current !== null) return;
  const state = cap.ctx.state;
  if (state === 'running' || state === 'closed') return;
  // Autoplay rules or the OS (a phone call) suspended audio: resume on the next interaction.
  showError('audio_suspended',
    '오디오가 일시 중지되었습니다. 페이지를 한 번 누르면 다시 시작합니다. / Audio is suspended: tap the page once to resume.');
  const resume = () => cap.ctx.resume().catch(() => {});
  document.addEventListener('pointerdown', resume, { once: true });
  document.addEventListener('keydown', resume, { once: true });
}
