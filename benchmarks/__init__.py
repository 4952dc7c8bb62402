"""Benchmarks of eventfold against raw asyncpg baselines: ``python -m benchmarks``.

The workloads are those of ``shared/workloads.md``; ``benchmarks.catalog`` lists them,
``benchmarks.runner.run`` runs them, ``benchmarks.report`` renders their figures. See
docs/BENCHMARKS.md for the command, the figures and what they mean.
"""
