"""The health routes' paths and the internal health check that asks them.

``ping`` (liveness) answers 200 while the process serves; ``ready`` (readiness) answers
200 once every model is loaded. The routes (``api/interface/healthcheck.py``), the
launcher's pings of its workers, the image's HEALTHCHECK (``deploy/healthcheck.py``) and
Serving registration all take the paths from here; the Kubernetes probes in
``deploy/k8s/deployment.yaml`` use the same paths (a test compares them).
"""

import urllib.request

PING_PATH = "/v1/health/ping"
READY_PATH = "/v1/health/ready"
# Not a health route, but the launcher needs it too (the metrics port of nginx) and must
# not import prometheus_client to learn it: it lives with the other route paths.
METRICS_PATH = "/metrics"

# No proxy: an internal check talks to 127.0.0.1, whatever HTTP_PROXY the environment
# holds (a proxy must not decide whether healthy workers get killed).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers 200 within ``timeout`` seconds."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):  # HTTPError is an OSError
        return False
