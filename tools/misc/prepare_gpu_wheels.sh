#!/usr/bin/env bash
# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
#
# Wheels for an offline CUDA machine that has torch, transformers, peft, numpy, scipy, pytest and
# pytest-xdist but not this project's other dependencies (the lent H200: Python 3.12, torch 2.11 +
# CUDA 13). Run from the repository root on a machine that reaches PyPI; copy `.whl/` along and
# install there with `pip install --no-index --no-deps .whl/*.whl` (tools/misc/gpu_session.sh
# does). Adds, beyond the pinned pure-Python stack:
#   * bitsandbytes (QLoRA), slimmed to its CPU and CUDA 13.x libraries (43 MB -> 7 MB);
#   * deepspeed 0.16.2 (0.19 fails inside MMEngine 0.10.7's DeepSpeedStrategy), built here as a
#     pure-Python wheel (DS_BUILD_OPS=0; PyPI has only its sdist), and its missing dependencies.
set -euo pipefail
PY=${PYTHON:-python3}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.whl/' >> .git/info/exclude; }
mkdir -p .whl
plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
$PY -m pip download -q --no-deps "${plat[@]}" -d .whl \
  mmengine==0.10.7 mmcv-lite==2.1.0 mmdet==3.3.0 addict==2.4.0 yapf==0.43.0 platformdirs==4.14.9 \
  termcolor==3.3.0 terminaltables==3.1.10 shapely==2.2.0 pycocotools==2.0.11 gguf==0.19.0 \
  transformers==5.23.0 tokenizers==0.23.3 peft==0.21.2 imgviz==2.1.0 cmap==0.8.0 \
  hjson pydantic pydantic-core annotated-types typing-inspection typing_extensions
# bitsandbytes without the libraries of other CUDA / ROCm / XPU versions (RECORD rewritten)
tmp=$(mktemp -d)
$PY -m pip download -q --no-deps "${plat[@]}" -d "$tmp" bitsandbytes==0.50.2
(cd "$tmp" && mkdir x && cd x && unzip -q ../bitsandbytes-*.whl \
  && find bitsandbytes -name 'libbitsandbytes_*.so' ! -name '*_cpu.so' ! -name '*_cuda13*.so' -delete \
  && $PY - <<'PYEOF'
import base64, csv, hashlib, io, os
rec = next(d for d in os.listdir('.') if d.endswith('.dist-info')) + '/RECORD'
rows = []
for root, _, files in os.walk('.'):
    for f in files:
        p = os.path.relpath(os.path.join(root, f), '.')
        if p != rec:
            data = open(p, 'rb').read()
            h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
            rows.append((p, f'sha256={h}', str(len(data))))
rows.append((rec, '', ''))
buf = io.StringIO()
csv.writer(buf, lineterminator='\n').writerows(rows)
open(rec, 'w').write(buf.getvalue())
PYEOF
)
rm -f .whl/bitsandbytes-*.whl
(cd "$tmp/x" && zip -q -r "$OLDPWD/.whl/$(basename "$tmp"/bitsandbytes-*.whl)" .)
# deepspeed: a pure-Python wheel built from its sdist (needs torch importable here)
DS_BUILD_OPS=0 $PY -m pip wheel -q --no-deps --no-build-isolation -w .whl deepspeed==0.16.2
rm -rf "$tmp"
du -sh .whl
