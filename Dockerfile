# sori images. Two targets:
#   docker build --target cpu  -t sori:cpu  .     # any x86-64 / arm64 host
#   docker build --target cuda -t sori:cuda .     # NVIDIA GPU hosts (whisper.cpp with CUDA)
# Both fetch and convert the Whisper models at build time (the build host needs PyPI and npm),
# so the runtime images need no network and no Python.

ARG RUST_VERSION=1.95.0
# CUDA 12.8 is the first release that compiles for Blackwell (sm_120: RTX 50 series, e.g.
# the RTX 5090); its images need a host driver >= 570 (docs/deployment.md, "GPUs").
ARG CUDA_VERSION=12.8.1

# ---------------------------------------------------------------- CPU build
FROM rust:${RUST_VERSION}-bookworm AS build-cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake python3-pip npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Portable binary: no -march=native from the build host.
ENV GGML_NATIVE=OFF
RUN cargo build --release --locked \
 && ./target/release/sori model fetch

# ---------------------------------------------------------------- CUDA build
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu22.04 AS build-cuda
ARG RUST_VERSION
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl build-essential cmake \
      python3-pip npm \
 && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain ${RUST_VERSION}
ENV PATH=/root/.cargo/bin:${PATH}
WORKDIR /src
COPY . .
# GGML_* and CMAKE_* variables reach whisper.cpp's cmake through whisper-rs-sys.
# Turing (75), Ampere (80, 86), Ada (89), Hopper (90: H100/H200) and Blackwell (120: RTX 50).
# Each architecture adds ~30 min of nvcc on 2 cores: build for yours only with
#   docker build --target cuda --build-arg CUDA_ARCHS=90 -t sori:cuda .
ARG CUDA_ARCHS="75;80;86;89;90;120"
ENV GGML_NATIVE=OFF \
    CMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS}
RUN cargo build --release --locked --features cuda \
 && ./target/release/sori model fetch --no-verify

# ---------------------------------------------------------------- runtime: CPU
FROM debian:bookworm-slim AS cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /app sori
WORKDIR /app
COPY --from=build-cpu /src/target/release/sori /usr/local/bin/sori
COPY --from=build-cpu /src/models/ggml-base.bin /src/models/ggml-base-q8_0.bin /app/models/
USER sori
# The container's own interfaces: reachable as far as `docker run -p` publishes it, so with no
# SORI_API_TOKENS sori refuses to start until SORI_ALLOW_OPEN=true says that is meant.
ENV SORI_BIND=0.0.0.0:5000 \
    SORI_ALLOW_OPEN=false \
    SORI_OUTPUTS_DIR=/app/outputs
EXPOSE 5000
ENTRYPOINT ["sori"]
CMD ["serve"]

# ---------------------------------------------------------------- runtime: CUDA
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu22.04 AS cuda
RUN useradd --system --create-home --home-dir /app sori
WORKDIR /app
COPY --from=build-cuda /src/target/release/sori /usr/local/bin/sori
COPY --from=build-cuda /src/models/ggml-base.bin /src/models/ggml-base-q8_0.bin /app/models/
USER sori
# As in the cpu image: tokens, or SORI_ALLOW_OPEN=true.
ENV SORI_BIND=0.0.0.0:5000 \
    SORI_ALLOW_OPEN=false \
    SORI_OUTPUTS_DIR=/app/outputs \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
EXPOSE 5000
ENTRYPOINT ["sori"]
CMD ["serve"]
