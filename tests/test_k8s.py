"""The Kubernetes manifests of every supported combination validate offline."""

import sys
from pathlib import Path

import pytest
import yaml

from scripts.atomctl import render

from .conftest import run

pytestmark = pytest.mark.k8s

COMBINATIONS = {
    "default": {},
    "dotted-slug": {"project_slug": "Atom.V2_x", "package_name": "atom_v2", "port": "8080"},
    "no-prefix": {"api_prefix": "", "workers": "3"},
}


@pytest.fixture(scope="module", params=list(COMBINATIONS))
def manifests(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The deploy/k8s folder of a project rendered with the answers (the hooks do not touch
    it), and the answers."""
    context = COMBINATIONS[request.param]
    project = render(tmp_path_factory.mktemp(request.param), **context)
    return project / "deploy" / "k8s", context


def test_manifests_validate_strictly(manifests: tuple) -> None:
    """kubernetes-validate --strict accepts every manifest (no unknown field, no bad value)."""
    folder, _ = manifests
    files = sorted(str(path) for path in folder.glob("*.yaml"))
    assert len(files) == 5
    validator = Path(sys.executable).parent / "kubernetes-validate"
    result = run([str(validator), "--strict", *files], cwd=folder, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 5


def test_probes_ports_and_grace(manifests: tuple) -> None:
    """Probes use the health routes on the atom's port; the grace period covers the drain."""
    folder, context = manifests
    deployment = yaml.safe_load((folder / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    prefix, port = context.get("api_prefix", "/d2atom"), int(context.get("port", "8000"))
    assert container["ports"][0] == {"name": "http", "containerPort": port}
    assert container["livenessProbe"]["httpGet"]["path"] == f"{prefix}/v1/health/ping"
    assert container["readinessProbe"]["httpGet"]["path"] == f"{prefix}/v1/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == f"{prefix}/v1/health/ready"
    env = {item["name"]: item for item in container["env"]}
    assert env["ATOM_WORKERS"]["value"] == context.get("workers", "1")
    grace = float(env["ATOM_GRACE_PERIOD"]["value"])
    assert pod["terminationGracePeriodSeconds"] > grace + 15
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert "/run/secrets/atom_model_key" in mounts
    assert deployment["metadata"]["name"].replace("-", "").isalnum()


def test_the_autoscaler_owns_the_replicas(manifests: tuple) -> None:
    """The Deployment sets no replicas: the HorizontalPodAutoscaler that targets it does."""
    folder, _ = manifests
    deployment = yaml.safe_load((folder / "deployment.yaml").read_text())
    hpa = yaml.safe_load((folder / "hpa.yaml").read_text())
    assert "replicas" not in deployment["spec"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_security_review_defaults(manifests: tuple) -> None:
    """No service account token, no docs, metrics on a port the Service does not expose,
    size limits on every emptyDir."""
    folder, context = manifests
    deployment = yaml.safe_load((folder / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["DOCS_SWITCH"] == "false"
    ports = {item["name"]: item["containerPort"] for item in container["ports"]}
    assert env["ATOM_METRICS_PORT"] == str(ports["metrics"])
    assert ports["metrics"] != ports["http"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])
    prefix = context.get("api_prefix", "/d2atom")
    assert annotations["prometheus.io/path"] == f"{prefix}/metrics"
    service = yaml.safe_load((folder / "service.yaml").read_text())
    assert [item["targetPort"] for item in service["spec"]["ports"]] == ["http"]
    for volume in pod["volumes"]:
        if "emptyDir" in volume:
            assert volume["emptyDir"]["sizeLimit"], volume["name"]
    logs = next(v for v in pod["volumes"] if v["name"] == "logs")["emptyDir"]["sizeLimit"]
    assert logs == "1Gi"  # above LOG_FILE_MAX_BYTES x (LOG_BACKUP_COUNT + 1) = 500 MiB
    assert int(env["LOG_BACKUP_COUNT"]) == 4
    # nginx's request bodies (in the runtime folder, under /tmp) take half the tmp volume.
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")["emptyDir"]["sizeLimit"]
    assert tmp == "2Gi"
    assert int(env["ATOM_BODY_DISK_BYTES"]) * 2 == 2 << 30
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert "ATOM_RUNTIME_DIR" not in env and "TMPDIR" not in env


def test_network_policy(manifests: tuple) -> None:
    """Ingress on the public port (metrics from monitoring only); egress to DNS, Serving and
    SkyWalking only."""
    folder, _ = manifests
    policy = yaml.safe_load((folder / "networkpolicy.yaml").read_text())
    deployment = yaml.safe_load((folder / "deployment.yaml").read_text())
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == labels
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    public, metrics = spec["ingress"]
    assert "from" not in public and public["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    (source,) = metrics["from"]
    assert source["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    egress_ports = [sorted(port["port"] for port in rule["ports"]) for rule in spec["egress"]]
    assert egress_ports == [[53, 53], [80], [11800, 12800]]
    assert all(rule["to"] and "ipBlock" not in rule["to"][0] for rule in spec["egress"])
