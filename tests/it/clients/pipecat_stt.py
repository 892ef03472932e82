"""Pipecat's Deepgram STT service, or its OpenAI Realtime STT service in its default mode (a
local VAD's turn ends commit the buffer), in a real Pipecat pipeline (runner, worker, frames),
with its base URL pointed at sori's /v1/listen or /v1/realtime: audio frames go in as a transport would push them, then
0.2 s of silence and a VADUserStoppedSpeakingFrame (what Pipecat's VAD sends when the user has
stopped) makes the service send Finalize (Deepgram) or commit the buffer (OpenAI); a processor
after it records the transcription frames (a Deepgram final answering Finalize is marked
`finalized`). Prints one
JSON object: the frames in order, with their text and arrival time.

usage: pipecat_stt.py HOST:PORT FILE.wav KEY deepgram|openai  (mono s16le WAV, any rate)"""
import asyncio, json, sys, time, wave

from pipecat.frames.frames import (EndFrame, ErrorFrame, InputAudioRawFrame,
                                   InterimTranscriptionFrame, TranscriptionFrame,
                                   VADUserStoppedSpeakingFrame)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.services.openai.stt import OpenAIRealtimeSTTService
from pipecat.workers.runner import WorkerRunner


class Recorder(FrameProcessor):
    """Records what the STT service pushes downstream, and passes everything on."""

    def __init__(self, t0: float):
        super().__init__()
        self.t0 = t0
        self.frames = []
        self.changed = asyncio.Event()

    def finals(self) -> int:
        return sum(1 for f in self.frames if f["type"] == "final")

    async def process_frame(self, frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        kind = {TranscriptionFrame: "final", InterimTranscriptionFrame: "interim",
                ErrorFrame: "error"}.get(type(frame))
        if kind:
            text = frame.error if kind == "error" else frame.text
            self.frames.append({"type": kind, "text": text,
                                "finalized": getattr(frame, "finalized", None),
                                "received_s": time.monotonic() - self.t0})
            self.changed.set()
        await self.push_frame(frame, direction)


async def main(hostport: str, path: str, key: str, service: str) -> None:
    with wave.open(path, "rb") as w:
        rate = w.getframerate()
        pcm = w.readframes(w.getnframes())
    pcm += bytes(rate // 5 * 2)  # 0.2 s of silence: Pipecat's VAD's default stop_secs
    t0 = time.monotonic()
    # English is both services' default language.
    if service == "deepgram":
        stt = DeepgramSTTService(api_key=key, base_url=f"ws://{hostport}", sample_rate=rate)
    else:
        stt = OpenAIRealtimeSTTService(api_key=key, base_url=f"ws://{hostport}/v1/realtime")
    recorder = Recorder(t0)
    worker = PipelineWorker(Pipeline([stt, recorder]),
                            params=PipelineParams(audio_in_sample_rate=rate),
                            idle_timeout_secs=None, enable_rtvi=False)

    async def feed() -> None:
        step = rate // 10 * 2  # 100 ms frames, in real time
        start = time.monotonic()
        for i, off in enumerate(range(0, len(pcm), step)):
            await worker.queue_frame(InputAudioRawFrame(audio=pcm[off:off + step],
                                                        sample_rate=rate, num_channels=1))
            await asyncio.sleep(max(0.0, start + (i + 1) / 10 - time.monotonic()))
        finals_before = recorder.finals()
        await worker.queue_frame(VADUserStoppedSpeakingFrame())
        # The turn's end brings a final (the Finalize's, or the committed turn's): wait for it
        # (at most 90 s: a loaded server decodes the whole clip), then for 2 s of quiet.
        deadline = time.monotonic() + 90
        while recorder.finals() == finals_before and time.monotonic() < deadline:
            recorder.changed.clear()
            try:
                await asyncio.wait_for(recorder.changed.wait(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
        while True:
            recorder.changed.clear()
            try:
                await asyncio.wait_for(recorder.changed.wait(), 2)
            except asyncio.TimeoutError:
                break
        await worker.queue_frame(EndFrame())

    feeder = asyncio.create_task(feed())
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
    await feeder
    print(json.dumps({"frames": recorder.frames, "audio_s": len(pcm) / 2 / rate}))


asyncio.run(main(*sys.argv[1:5]))
