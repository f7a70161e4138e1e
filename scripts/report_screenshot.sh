#!/bin/sh
# Renders a study's report.html in headless Chromium (Debian: apt-get install chromium) and
# writes a full-page screenshot: the documented check that the report renders in a real browser.
# Usage: scripts/report_screenshot.sh STUDY_DIR OUT.png [WIDTH] [HEIGHT]
set -eu
study=${1:?usage: $0 STUDY_DIR OUT.png [WIDTH] [HEIGHT]}
out=${2:?usage: $0 STUDY_DIR OUT.png [WIDTH] [HEIGHT]}
width=${3:-1200}
height=${4:-9000}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "no chromium on PATH (Debian: apt-get install chromium)" >&2; exit 2; }
[ -f "$study/report.html" ] || { echo "$study/report.html not found" >&2; exit 2; }
page=$(cd "$study" && pwd)/report.html
# --no-sandbox: containers often run as root; --disable-gpu: no display.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size="$width,$height" --screenshot="$out" "file://$page" >/dev/null 2>&1
[ -s "$out" ] || { echo "chromium wrote no screenshot" >&2; exit 1; }
echo "wrote $out"
