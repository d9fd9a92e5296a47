#!/usr/bin/env bash
# Issue 31's GPU checks and figures in one command, on the device machine (no package
# registry there), from the repository root, with benchmarks/gpu/wheels carried along:
#
#   bash benchmarks/gpu/run.sh              # gpu.json (after every stage), gpu.md, logs in $OUT
#   bash benchmarks/gpu/run.sh --quick      # the small version (runs on a CPU too)
#
# The wheels (make_wheelhouse.sh) go into a folder of their own beside the machine's torch:
# `pip install .` would need an index for its isolated build. Arguments go to bench_gpu.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$root/bench_out/gpu-report}
site=${CTRDISTILL_SITE:-/tmp/ctrdistill-site}
mkdir -p "$out"
python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$root"/benchmarks/gpu/wheels/*.whl
export PYTHONPATH="$root/src:$root:$site" PYTHONUNBUFFERED=1
cd "$root"
status=0
python3 -m benchmarks.bench_gpu --workdir /tmp/ctrdistill-gpu --report "$out" "$@" 2>&1 \
    | tee "$out/gpu.log" || status=$?
# The device-placement tests, now with CUDA (the page-locked batch test runs only there).
python3 -m pytest -q -p no:cacheprovider tests/test_gpu_path.py tests/test_meta_device.py \
    2>&1 | tee "$out/pytest.log" || status=$?
exit "$status"
