"""faster-whisper side of `sori bench --peers` (docs/benchmarks.md).

Loads one CTranslate2 Whisper model, transcribes each file offline with faster-whisper's own
defaults except where sori's defaults must be matched (language, beam size, and no conditioning
on previous text unless --condition-on-previous-text, faster-whisper's own default), and prints one JSON line per file, then one line about the process:

    {"file": ..., "wall_s": ..., "cpu_s": ..., "text": ..., "segments": N}
    {"load_s": ..., "peak_rss_mb": ...}

CPU time is this process's (all threads); the caller measures the whole process as well.
"""

import argparse
import json
import resource
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="CTranslate2 Whisper model directory")
    parser.add_argument("--compute-type", default="int8", help="int8, float32, ...")
    parser.add_argument("--threads", type=int, default=2, help="CTranslate2 intra-op threads")
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--language", default="en")
    parser.add_argument("--vad-filter", action="store_true", help="faster-whisper's Silero VAD")
    parser.add_argument(
        "--condition-on-previous-text",
        action="store_true",
        help="prompt each 30 s window with the text before it (faster-whisper's default)",
    )
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    started = time.perf_counter()
    from faster_whisper import WhisperModel

    model = WhisperModel(
        args.model, device="cpu", compute_type=args.compute_type, cpu_threads=args.threads
    )
    load_s = time.perf_counter() - started

    for path in args.files:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        segments, _info = model.transcribe(
            path,
            language=None if args.language == "auto" else args.language,
            beam_size=args.beam_size,
            condition_on_previous_text=args.condition_on_previous_text,
            vad_filter=args.vad_filter,
        )
        # transcribe() is lazy: the work happens while the segments are read.
        texts = [s.text.strip() for s in segments]
        print(
            json.dumps(
                {
                    "file": path,
                    "wall_s": time.perf_counter() - wall0,
                    "cpu_s": time.process_time() - cpu0,
                    "text": " ".join(t for t in texts if t),
                    "segments": len(texts),
                },
                ensure_ascii=False,
            ),
            flush=True,
        )

    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"load_s": load_s, "peak_rss_mb": peak_kb / 1024}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
