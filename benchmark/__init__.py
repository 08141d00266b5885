"""The benchmark harness: every method on every case, scored, timed, cached (``python -m benchmark``).

Python API: ``benchmark.runner.Benchmark(preset, results_dir=None, device="cpu", seed=None)`` with
``.plan(methods, cases, config=None, threshold_rule="validation")`` and ``.run_all(specs)``, or
``benchmark.runner.run(method, case, preset="quick", ...)``; metrics in ``benchmark.metrics``;
presets in ``benchmark.presets``; the results layout in ``benchmark.cache``.
"""
