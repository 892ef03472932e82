"""The official openai Python SDK's Realtime client in transcription mode (GA `session.update`,
or the beta `transcription_session.update` with `beta`), streaming a WAV to sori's
/v1/realtime in real time with the base URL pointed at sori. Prints one JSON object: every event
received, in order, with its arrival time.

usage: openai_realtime.py HOST:PORT FILE.wav KEY [vad|manual] [ga|beta]  (mono s16le WAV, any rate)"""
import asyncio, base64, json, sys, time, wave

import numpy as np
from openai import AsyncOpenAI


def pcm24k(path: str) -> bytes:
    with wave.open(path, "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, "need mono s16le"
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32)
    n = int(len(x) * 24000 / rate)
    y = np.interp(np.arange(n) * rate / 24000, np.arange(len(x)), x)
    return np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()


async def main(hostport: str, path: str, key: str, turns: str, dialect: str) -> None:
    client = AsyncOpenAI(api_key=key, base_url=f"http://{hostport}/v1",
                         websocket_base_url=f"ws://{hostport}/v1")
    vad = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
           "silence_duration_ms": 1000} if turns == "vad" else None
    if dialect == "beta":
        manager = client.beta.realtime.connect(model="gpt-4o-transcribe",
                                               extra_query={"intent": "transcription"})
    else:
        manager = client.realtime.connect(extra_query={"intent": "transcription"})
    events = []
    t0 = time.monotonic()
    async with manager as conn:
        first = await asyncio.wait_for(conn.recv(), 30)  # session.created, unprompted
        events.append({**first.model_dump(), "received_s": time.monotonic() - t0})
        if dialect == "beta":
            await conn.transcription_session.update(session={
                "input_audio_format": "pcm16",
                "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": vad,
            })
        else:
            await conn.session.update(session={"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": vad,
            }}})
        pcm = pcm24k(path) + bytes(24000 * 2)  # and 1 s of silence

        audio_started_s = None

        async def send_audio() -> None:
            nonlocal audio_started_s
            start = time.monotonic()
            audio_started_s = start - t0  # what `audio_end_ms` counts from
            for off in range(0, len(pcm), 4800):  # 100 ms at 24 kHz
                await conn.input_audio_buffer.append(
                    audio=base64.b64encode(pcm[off:off + 4800]).decode())
                await asyncio.sleep(max(0.0, start + (off + 4800) / 48000 - time.monotonic()))
            if turns == "manual":
                await conn.input_audio_buffer.commit()

        sender = asyncio.create_task(send_audio())
        open_items = set()
        quiet_since = None
        while True:
            try:
                ev = await asyncio.wait_for(conn.recv(), 0.5)
            except asyncio.TimeoutError:
                if sender.done():
                    quiet_since = quiet_since or time.monotonic()
                    if not open_items or time.monotonic() - quiet_since > 30:
                        break
                continue
            quiet_since = None
            data = ev.model_dump()
            data["received_s"] = time.monotonic() - t0
            events.append(data)
            if ev.type in ("input_audio_buffer.speech_started", "input_audio_buffer.committed"):
                open_items.add(ev.item_id)
            elif ev.type == "conversation.item.input_audio_transcription.completed":
                open_items.discard(ev.item_id)
        await sender
    print(json.dumps({"events": events, "audio_s": len(pcm) / 48000,
                      "audio_started_s": audio_started_s}, default=str))


turns = sys.argv[4] if len(sys.argv) > 4 else "vad"
dialect = sys.argv[5] if len(sys.argv) > 5 else "ga"
asyncio.run(main(*sys.argv[1:4], turns, dialect))
