"""Deepgram's official Python SDK (deepgram-sdk) streaming a WAV to sori's /v1/listen in real
time, as a Deepgram user would, with the base URL pointed at sori. Prints one JSON object: every
message received (by type), the close, and the timing of each final against the audio sent.

usage: deepgram_live.py HOST:PORT FILE.wav KEY  (16 kHz mono s16le WAV)"""
import asyncio, json, sys, time, wave

from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment


async def main(hostport: str, path: str, key: str) -> None:
    env = DeepgramClientEnvironment(base=f"http://{hostport}", production=f"ws://{hostport}",
                                    agent=f"ws://{hostport}", agent_rest=f"http://{hostport}")
    client = AsyncDeepgramClient(api_key=key, environment=env)
    out = {"messages": [], "sent_s": 0.0}
    t0 = None
    async with client.listen.v1.connect(
        model="nova-3", language="en", encoding="linear16", sample_rate=16000, channels=1,
        interim_results=True, punctuate=True, smart_format=True,
        utterance_end_ms=1000, vad_events=True,
    ) as conn:
        async def receive() -> None:
            async for msg in conn:
                if msg is None:
                    out["messages"].append({"type": None})
                    continue
                m = msg.dict()
                m["received_s"] = time.monotonic() - t0 if t0 else 0.0
                out["messages"].append(m)

        reader = asyncio.create_task(receive())
        await conn.send_keep_alive()  # before any audio, as LiveKit's plugin does
        with wave.open(path, "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            t0 = time.monotonic()
            sent = 0.0
            while chunk := w.readframes(1600):  # 100 ms, paced by the wall clock
                await conn.send_media(chunk)
                sent += len(chunk) / 32000
                await asyncio.sleep(max(0.0, t0 + sent - time.monotonic()))
        out["sent_s"] = sent
        await conn.send_finalize()
        await conn.send_close_stream()
        await asyncio.wait_for(reader, 120)
    print(json.dumps(out, default=str))


asyncio.run(main(*sys.argv[1:4]))
