#!/usr/bin/env bash
# Installs the Debian packages sori's build and tests need, only when something is missing.
#   cmake           builds whisper.cpp (whisper-rs)
#   sox, mp3 fmt    converts and generates test audio (wav/mp3/flac/ogg, noise)
#   espeak-ng       synthetic speech for tests without recordings
#   redis-server    the cache's real server in tests (started on a free loopback port)
#   curl            scripts/llm-server.sh probes the LLM server's /health
#   docker-compose  validates compose.yaml in tests/it/deploy.rs (`docker-compose config`)
#   chromium, chromium-driver  the live page's end-to-end test (tests/it/page.rs)
#   fonts-nanum     Korean glyphs in the page test's screenshot (otherwise boxes)
#   openssl         makes the certificate of the TLS listener's test (tests/it/tls.rs)
#   prometheus      promtool checks /metrics with Prometheus's own parser (tests/it/metrics.rs)
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v sox >/dev/null || need+=(sox)
sox -h 2>/dev/null | grep -q 'mp3' || need+=(libsox-fmt-mp3)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v redis-server >/dev/null || need+=(redis-server)
command -v curl >/dev/null || need+=(curl)
command -v docker-compose >/dev/null || need+=(docker-compose)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
command -v openssl >/dev/null || need+=(openssl)
command -v promtool >/dev/null || need+=(prometheus)
[ -d /usr/share/fonts/truetype/nanum ] || need+=(fonts-nanum)
if [ ${#need[@]} -eq 0 ]; then
    echo "all system packages present"
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
# Only promtool is wanted from the prometheus package: on a systemd host, installing it starts a
# Prometheus server and its node exporter; stop them and keep them from starting at boot.
if [[ " ${need[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus prometheus-node-exporter 2>/dev/null || true
fi
