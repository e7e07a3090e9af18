#!/usr/bin/env bash
# System tools the tests use, installed with apt-get when missing (Debian/Ubuntu, as root):
# chromium + chromium-driver (report rendering test), dicom3tools (dciodvfy: DICOM SEG/SR validation),
# poppler-utils (pdftoppm: report.pdf rendered to PNG).
# Called by `make test` (as root) and so by .ci/run; as another user it only says what is missing.
set -euo pipefail

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v dciodvfy >/dev/null || need+=(dicom3tools)
command -v pdftoppm >/dev/null || need+=(poppler-utils)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "system_deps.sh: not root; missing ${need[*]} (their tests skip; CI=true fails them):" \
         "sudo apt-get install ${need[*]}" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "system_deps.sh: installed ${need[*]}"
