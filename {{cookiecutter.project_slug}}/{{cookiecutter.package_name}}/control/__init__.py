"""The control plane: what keeps an atom running beside its routes.

Serving registration (``serving.py``), periodic jobs (``scheduler.py``), Prometheus
metrics (``metrics.py``), the logging handlers (``logs.py``), the health paths and the
internal health check (``health.py``), retry delays (``backoff.py``) and the runtime
directory shared by the processes of one atom (``runtime_dir.py``). Nothing here reads
the settings: the app and the launcher pass what each piece needs.
"""
