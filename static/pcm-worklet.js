'use strict';
// sori — microphone samples to 16-bit PCM, on the audio rendering thread.
//
// The browser hands `process()` 128 Float32 frames at a time. We clamp them to [-1, 1], convert
// them to signed 16-bit little-endian integers and post one chunk of `chunkSamples` frames
// (~100 ms by default) to the main thread as a transferable ArrayBuffer, so nothing is copied
// and the main thread only handles ~10 messages a second.
//
// Control messages from the main thread (node.port.postMessage):
//   {type: 'flush'} — post whatever is buffered now, then answer {type: 'flushed'}
//   {type: 'stop'}  — post what is buffered and stop processing

const CHUNK_SECONDS = 0.1;
const BYTES_PER_SAMPLE = 2;

class PcmS16Processor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const requested = options && options.processorOptions && options.processorOptions.chunkSamples;
    // `sampleRate` is a global of AudioWorkletGlobalScope: the context's rate.
    this.chunkSamples = Number.isInteger(requested) && requested > 0
      ? requested
      : Math.max(128, Math.round(sampleRate * CHUNK_SECONDS));
    this.running = true;
    this.newChunk();
    this.port.onmessage = (event) => this.onControl(event.data);
  }

  newChunk() {
    this.chunk = new ArrayBuffer(this.chunkSamples * BYTES_PER_SAMPLE);
    this.view = new DataView(this.chunk);
    this.filled = 0;
  }

  /** Posts the buffered samples (if any) and starts a new chunk. */
  postChunk() {
    if (this.filled === 0) return;
    const out = this.filled === this.chunkSamples
      ? this.chunk
      : this.chunk.slice(0, this.filled * BYTES_PER_SAMPLE);
    this.port.postMessage(out, [out]);
    this.newChunk();
  }

  onControl(message) {
    if (!message || typeof message.type !== 'string') return;
    if (message.type === 'flush') {
      this.postChunk();
      this.port.postMessage({ type: 'flushed' });
    } else if (message.type === 'stop') {
      this.postChunk();
      this.running = false;
    }
  }

  process(inputs) {
    if (!this.running) return false;
    const input = inputs[0];
    // No channels: the source is disconnected or not yet started; nothing to convert.
    if (!input || input.length === 0 || !input[0]) return true;
    const channels = input.length;
    const frames = input[0].length;
    for (let i = 0; i < frames; i++) {
      // The node is created with channelCount 1 (the browser downmixes), but average any
      // extra channels anyway so stereo input can never be sent as garbage.
      let s = input[0][i];
      if (channels > 1) {
        for (let c = 1; c < channels; c++) s += input[c][i];
        s /= channels;
      }
      if (!(s === s)) s = 0; // NaN
      else if (s > 1) s = 1;
      else if (s < -1) s = -1;
      const int16 = s < 0 ? Math.round(s * 0x8000) : Math.round(s * 0x7fff);
      this.view.setInt16(this.filled * BYTES_PER_SAMPLE, int16, true); // little-endian
      this.filled += 1;
      if (this.filled === this.chunkSamples) this.postChunk();
    }
    return true;
  }
}

registerProcessor('pcm-s16le', PcmS16Processor);
