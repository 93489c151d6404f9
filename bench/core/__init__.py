"""The core benchmark's parts (bench/bench_core.py runs them); the other benchmarks reuse
the processes, the loader and the load generators."""
