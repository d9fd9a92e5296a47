"""The benchmark scripts behind BENCHMARKS.md; run each from the repository root as a module,
e.g. `python -m benchmarks.bench_distill --help`. Shared helpers live in `benchmarks.common`."""
