#!/usr/bin/env bash
# Rebuilds crate/ from the pristine cubecl-cuda in the cargo registry plus nvrtc-only.patch.
#
#   ./reapply.sh [VERSION]       crate/ := upstream VERSION + the patch (default: crate/'s version)
#   ./reapply.sh diff [VERSION]  nvrtc-only.patch := diff of crate/ against upstream VERSION
#
# After a burn/cubecl bump the old [patch.crates-io] entry goes unused and cargo fetches the
# new cubecl-cuda into ~/.cargo/registry/src (`cargo fetch`); then run `./reapply.sh NEW`.
# Where the patch does not apply, fix crate/ by hand and run `./reapply.sh diff NEW`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mode=apply
if [[ "${1:-}" == diff ]]; then
    mode=diff
    shift
fi
version="${1:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/crate/Cargo.toml" | head -n1)}"

upstream=""
for dir in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cubecl-cuda-"$version"; do
    [[ -f "$dir/Cargo.toml" ]] && upstream="$dir"
done
if [[ -z "$upstream" ]]; then
    echo "cubecl-cuda $version is not in the cargo registry: comment out the [patch.crates-io]" >&2
    echo "entry in the workspace Cargo.toml and run 'cargo fetch', or pass another version." >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# What is kept of the published crate: all of it but cargo's own files.
cp -r "$upstream" "$tmp/a"
rm -f "$tmp/a/.cargo-ok" "$tmp/a/Cargo.lock" "$tmp/a/Cargo.toml.orig"

if [[ "$mode" == diff ]]; then
    cp -r "$here/crate" "$tmp/b"
    # diff exits 1 when the trees differ; timestamps are dropped so the patch is stable.
    (cd "$tmp" && diff -ruN a b || [[ $? == 1 ]]) |
        sed -E 's/^((---|\+\+\+) [^\t]*)\t.*$/\1/' >"$here/nvrtc-only.patch"
    echo "wrote $here/nvrtc-only.patch ($(wc -l <"$here/nvrtc-only.patch") lines) against $upstream"
else
    cp -r "$tmp/a" "$tmp/b"
    (cd "$tmp/b" && patch -p1 --no-backup-if-mismatch <"$here/nvrtc-only.patch")
    rm -rf "$here/crate"
    cp -r "$tmp/b" "$here/crate"
    echo "rebuilt $here/crate from $upstream + nvrtc-only.patch"
fi
