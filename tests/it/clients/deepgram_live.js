// Deepgram's official JavaScript SDK (@deepgram/sdk, in Node) streaming a 16 kHz mono s16le WAV
// to sori's /v1/listen in real time, base URL pointed at sori. Prints one JSON object: the
// messages received and the close code.
// usage: node deepgram_live.js HOST:PORT FILE.wav KEY
const fs = require("fs");
const { DeepgramClient } = require("@deepgram/sdk");

const [hostport, path, key] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const client = new DeepgramClient({ apiKey: key, baseUrl: `ws://${hostport}` });
  const socket = await client.listen.v1.connect({
    model: "nova-3", language: "en", encoding: "linear16", sample_rate: 16000, channels: 1,
    interim_results: true, punctuate: true, endpointing: 500, reconnectAttempts: 0,
  });
  const messages = [];
  const closed = new Promise((resolve) => socket.on("close", (ev) => resolve(ev)));
  socket.on("message", (msg) => messages.push(msg));
  socket.on("error", (e) => messages.push({ type: "client_error", message: String(e.message) }));
  socket.connect();
  await socket.waitForOpen();
  const wav = fs.readFileSync(path);
  const pcm = wav.subarray(44);
  const t0 = Date.now();
  for (let off = 0; off < pcm.length; off += 3200) {
    socket.sendMedia(pcm.subarray(off, off + 3200));
    await sleep(Math.max(0, t0 + (off + 3200) / 32 - Date.now()));
  }
  socket.sendFinalize({ type: "Finalize" });
  socket.sendCloseStream({ type: "CloseStream" });
  const ev = await closed;
  console.log(JSON.stringify({ messages, close: ev.code }));
  process.exit(0);
}
main().catch((e) => { console.error(e); process.exit(1); });
