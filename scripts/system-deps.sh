#!/usr/bin/env bash
# Debian packages the tests and examples use: Chromium (browser tests) and Tesseract with
# English and Simplified Chinese data (OCR). Installs what is missing when run as root.
# SYSTEM_DEPS=runtime leaves out the browser (the image needs only OCR).
set -euo pipefail
need=()
if [ "${SYSTEM_DEPS:-all}" != runtime ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
command -v tesseract >/dev/null 2>&1 || need+=(tesseract-ocr)
# Node.js builds the JupyterLab extension during `pip install`
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
for lang in eng chi-sim; do
  dpkg -s "tesseract-ocr-$lang" >/dev/null 2>&1 || need+=("tesseract-ocr-$lang")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]} (install them with: sudo apt-get install -y ${need[*]})" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
