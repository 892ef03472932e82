// The official openai JavaScript SDK's Realtime client (openai/realtime/ws, in Node) in
// transcription mode, streaming a 24 kHz mono s16le WAV to sori's /v1/realtime in real time.
// The SDK opens only wss://, so sori runs behind TLS and its certificate is trusted the way a
// Node user trusts a private CA: NODE_EXTRA_CA_CERTS. Prints one JSON object: every event
// received, in order, with its arrival time, and when the first audio was sent.
// usage: node openai_realtime.js HOST:PORT FILE.wav KEY
const fs = require("fs");
const { OpenAI } = require("openai");
const { OpenAIRealtimeWS } = require("openai/realtime/ws");

const [hostport, path, key] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const now = () => (Date.now() - t0) / 1000;

// The samples of a 24 kHz mono s16le WAV: its `data` chunk.
function wavData(file) {
  const wav = fs.readFileSync(file);
  if (wav.toString("ascii", 0, 4) !== "RIFF" || wav.readUInt32LE(24) !== 24000) {
    throw new Error(`${file}: need a 24 kHz WAV`);
  }
  for (let at = 12; at + 8 <= wav.length; ) {
    const size = wav.readUInt32LE(at + 4);
    if (wav.toString("ascii", at, at + 4) === "data") return wav.subarray(at + 8, at + 8 + size);
    at += 8 + size + (size % 2);
  }
  throw new Error(`${file} has no data chunk`);
}

async function main() {
  const client = new OpenAI({ apiKey: key, baseURL: `https://${hostport}/v1` });
  const rt = new OpenAIRealtimeWS({ intent: "transcription" }, client);
  const events = [];
  const openItems = new Set();
  let lastEvent = Date.now();
  rt.on("event", (event) => {
    events.push({ ...event, received_s: now() });
    lastEvent = Date.now();
    if (["input_audio_buffer.speech_started", "input_audio_buffer.committed"].includes(event.type)) {
      openItems.add(event.item_id);
    } else if (event.type === "conversation.item.input_audio_transcription.completed") {
      openItems.delete(event.item_id);
    }
  });
  rt.on("error", (e) => events.push({ type: "client_error", message: String(e.message) }));
  await new Promise((resolve, reject) => {
    rt.socket.once("open", resolve);
    rt.socket.once("error", reject);
  });
  rt.send({
    type: "session.update",
    session: {
      type: "transcription",
      audio: {
        input: {
          format: { type: "audio/pcm", rate: 24000 },
          transcription: { model: "gpt-4o-transcribe", language: "en" },
          turn_detection: { type: "server_vad", threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 1000 },
        },
      },
    },
  });
  const pcm = Buffer.concat([wavData(path), Buffer.alloc(48000)]); // and 1 s of silence
  const audioStartedS = now();
  const start = Date.now();
  for (let off = 0; off < pcm.length; off += 4800) {
    rt.send({ type: "input_audio_buffer.append", audio: pcm.subarray(off, off + 4800).toString("base64") });
    await sleep(Math.max(0, start + (off + 4800) / 48 - Date.now()));
  }
  // Until every turn that started has its transcript (at most 30 s of quiet).
  while (openItems.size > 0 && Date.now() - lastEvent < 30000) await sleep(200);
  await sleep(500);
  rt.close();
  console.log(JSON.stringify({ events, audio_s: pcm.length / 48000, audio_started_s: audioStartedS }));
  process.exit(0);
}
main().catch((e) => { console.error(e); process.exit(1); });
