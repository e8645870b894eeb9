#!/usr/bin/env bash
# GPU check of cream-plugin on a machine with CUDA torch, transformers and accelerate but without
# trl, lm-eval, datasets or network (see scripts/fetch_gpu_wheels.sh for the parts to carry).
#   bash scripts/gpu_check.sh stage      unpack the carried .gpu/p* parts into .gpu-site/
#   bash scripts/gpu_check.sh stage run  the same, then run scripts/gpu_check.py
#   bash scripts/gpu_check.sh run        run only (everything staged before)
# Writes its log and timings to $OUT (or gpu-check-out/) and prints per-stage times.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=$PWD/.gpu-site
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$SITE/wheels" "$OUT"
python -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"

stage() {
  shopt -s nullglob
  for part in .gpu/p*/; do cp -n "$part"* "$SITE/wheels/" && echo "staged $part"; done
  # Join split wheels (name.whl.000, .001, ...) once every piece is there.
  for first in "$SITE"/wheels/*.whl.000; do
    whl=${first%.000}
    pieces=("$whl".[0-9][0-9][0-9])
    cat "${pieces[@]}" > "$whl.tmp" && mv "$whl.tmp" "$whl"
    python -c "import zipfile, sys; zipfile.ZipFile(sys.argv[1]).testzip()" "$whl" 2>/dev/null \
      && rm -f "${pieces[@]}" && echo "joined $(basename "$whl")" || rm -f "$whl"
  done
  if [ -f "$SITE/wheels/cream-data.tar.gz" ] && [ ! -d "$SITE/data" ]; then
    tar -xzf "$SITE/wheels/cream-data.tar.gz" -C "$SITE" && echo "unpacked the data"
  fi
}

install() {
  shopt -s nullglob
  local wheels=("$SITE"/wheels/*.whl)
  [ ${#wheels[@]} -gt 0 ] || { echo "no wheels staged in $SITE/wheels"; exit 2; }
  # Only what this Python lacks: torch, transformers and accelerate stay the machine's own.
  local todo=()
  for whl in "${wheels[@]}"; do
    name=$(basename "$whl" | cut -d- -f1)
    python - "$name" <<'PY' || todo+=("$whl")
import importlib.metadata as m, sys
try:
    m.version(sys.argv[1].replace("_", "-"))
except m.PackageNotFoundError:
    sys.exit(1)
PY
  done
  if [ ${#todo[@]} -gt 0 ]; then
    pip install --quiet --no-deps --no-index --target "$SITE/lib" "${todo[@]}"
    echo "installed ${#todo[@]} wheels into $SITE/lib"
  fi
}

for verb in "$@"; do
  case $verb in
    stage) stage ;;
    run)
      install
      export PYTHONPATH=$SITE/lib PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
      export TOKENIZERS_PARALLELISM=false CREAM_CACHE_DIR=$SITE/cache CREAM_DATA_DIR=$SITE/data
      python scripts/gpu_check.py --out "$OUT" 2>&1 | tee "$OUT/gpu_check.log"
      ;;
    *) echo "unknown step $verb (stage, run)"; exit 2 ;;
  esac
done
