#!/usr/bin/env bash
# Installs the Debian packages the build and tests need. Idempotent; quiet when all are present.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config
      nlohmann-json3-dev libopenblas-openmp-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
      libpcre2-dev libutf8proc-dev libcpp-httplib-dev
      clang libclang-rt-14-dev libomp-dev)  # the sanitizer + fuzz build (scripts/test.sh, scripts/fuzz.sh)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup: installing ${missing[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
