"""The control plane: what keeps an atom running beside its routes.

Serving registration (``serving.py``), periodic jobs (``scheduler.py``), Prometheus
metrics (``metrics.py``), the logging handlers (``logs.py``) and what a log line may show
(``log_safety.py``), the health paths and the internal health check (``health.py``),
retry delays (``backoff.py``), daemon threads (``daemon.py``) and the runtime directory
shared by the processes of one atom (``runtime_dir.py``). Nothing here reads the
settings: the app and the launcher pass what each piece needs.
"""
