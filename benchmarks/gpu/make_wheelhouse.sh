#!/usr/bin/env bash
# Downloads into benchmarks/gpu/wheels/ (git-ignored) the wheels ctrdistill needs that the GPU
# machine lacks (/work/.library/device/KINDS.md lists what it has: torch 2.11, numpy, pyarrow,
# pyyaml, scikit-learn, tqdm, rich, matplotlib, ...), built for its Python 3.12 on x86-64.
# Run it where PyPI is reachable; the versions are the ones ctrdistill is tested with here.
# About 55 MiB (polars' runtime alone is 51): with the sources, under the 64 MiB that travels.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf wheels
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d wheels \
    polars==2.1.0 polars-runtime-32==2.1.0 pydantic==2.13.4 pydantic-core==2.46.4 \
    annotated-types==0.7.0 typing-inspection==0.4.2 typing-extensions==4.16.0
du -sh wheels
