#!/usr/bin/env bash
# Builds the test image `tgrid-test/busybox:1`: Debian's static busybox FROM scratch, so no registry is needed.
set -euo pipefail
busybox=""
for candidate in /bin/busybox /usr/bin/busybox; do
  if [ -x "$candidate" ]; then busybox="$candidate"; break; fi
done
[ -n "$busybox" ] || { echo "no static busybox (install Debian's busybox-static)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp "$busybox" "$dir/busybox"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox"]\n' > "$dir/Dockerfile"
docker build -q -t tgrid-test/busybox:1 "$dir" >/dev/null
