"""LiveKit Agents' Deepgram STT plugin, driven the way an agent drives it (stream(), push_frame,
events) but without a LiveKit server or room, with its base URL pointed at sori's /v1/listen.
Prints one JSON object: the speech events in order, with the text of each transcript.

usage: livekit_stt.py HOST:PORT FILE.wav KEY  (mono s16le WAV, any rate)"""
import asyncio, json, sys, time, wave

from livekit import rtc
from livekit.agents import stt, utils
from livekit.plugins import deepgram


async def main(hostport: str, path: str, key: str) -> None:
    events = []
    async with utils.http_context.open():
        engine = deepgram.STT(base_url=f"http://{hostport}/v1/listen", api_key=key,
                              model="nova-3", language="en")
        stream = engine.stream()

        async def feed() -> None:
            with wave.open(path, "rb") as w:
                rate = w.getframerate()
                pcm = w.readframes(w.getnframes())
            pcm += bytes(rate * 2)  # 1 s of silence after the speech
            step = rate // 10 * 2
            t0 = time.monotonic()
            for i, off in enumerate(range(0, len(pcm), step)):
                chunk = pcm[off:off + step]
                stream.push_frame(rtc.AudioFrame(chunk, rate, 1, len(chunk) // 2))
                await asyncio.sleep(max(0.0, t0 + (i + 1) / 10 - time.monotonic()))
            stream.end_input()  # Finalize, then CloseStream

        async def read() -> None:
            async for ev in stream:
                text = ev.alternatives[0].text if ev.alternatives else None
                events.append({"type": ev.type.name, "text": text})

        feeder = asyncio.create_task(feed())
        reader = asyncio.create_task(read())
        await feeder
        try:
            await asyncio.wait_for(asyncio.shield(reader), 60)
        except asyncio.TimeoutError:
            events.append({"type": "TIMEOUT"})
        await stream.aclose()
        await engine.aclose()
        reader.cancel()
    print(json.dumps({"events": events}))


asyncio.run(main(*sys.argv[1:4]))
