"""Load benchmark for OCI registries: workloads, runner, report (JSON, table, chart).

Run it as ``shardreg bench ...`` or ``python -m bench ...``; see ``docs/performance.md``.
"""
