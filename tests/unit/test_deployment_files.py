"""The Dockerfile and the Kubernetes manifests agree with the code: ports, probes, variables.

Docker and a cluster are not available to the tests, so these read the files; the values
they compare against come from the code (Settings defaults, env_name), not from copies.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleetq_server.api.probes import LIVEZ_PATH, READYZ_PATH
from fleetq_server.config import Settings, env_name, load_settings
from fleetq_server.server import LIVENESS_SERVICE

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "deploy" / "kubernetes"
DEFAULTS = Settings()
SETTING_VARIABLES = {env_name(field.name) for field in fields(Settings)}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), " ".join(arguments.split())))
    return instructions


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage: what the image runs."""
    instructions = dockerfile()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def manifest(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    return document


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return manifest("deployment.yaml")


@pytest.fixture(scope="module")
def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


# -- Dockerfile ----------------------------------------------------------------------------------


def test_the_image_is_built_in_stages_on_a_slim_python_base() -> None:
    instructions = dockerfile()
    base_args = dict(
        arguments.split("=", 1) for keyword, arguments in instructions if keyword == "ARG"
    )
    bases = [arguments.split()[0] for keyword, arguments in instructions if keyword == "FROM"]
    assert len(bases) >= 2
    for base in bases:
        image = base_args.get(base.strip("${}"), base)
        assert image.startswith("python:") and "-slim" in image, image


def test_the_image_exposes_the_default_http_and_grpc_ports() -> None:
    exposed = {
        int(port)
        for keyword, arguments in runtime_stage()
        if keyword == "EXPOSE"
        for port in arguments.split()
    }
    assert exposed == {DEFAULTS.http_port, DEFAULTS.grpc_port}


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    users = [arguments for keyword, arguments in runtime_stage() if keyword == "USER"]
    assert users, "the runtime stage sets no USER: it would run as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, users[-1]
    assert not group or (group.isdigit() and int(group) != 0), users[-1]
    pod_security = manifest("deployment.yaml")["spec"]["template"]["spec"]["securityContext"]
    assert pod_security["runAsUser"] == int(user)
    assert pod_security["runAsNonRoot"] is True


def test_the_image_healthcheck_asks_the_grpc_health_service() -> None:
    checks = [arguments for keyword, arguments in runtime_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1, "the runtime stage needs one HEALTHCHECK"
    _, _, command = checks[0].partition("CMD ")
    assert json.loads(command) == ["python", "-m", "fleetq_server.healthcheck"]
    assert importlib.util.find_spec("fleetq_server.healthcheck") is not None


def test_the_image_sets_only_known_valid_settings() -> None:
    assignments = dict(
        re.findall(r"(FLEETQ_\w+)=(\S+)", " ".join(a for k, a in runtime_stage() if k == "ENV"))
    )
    assert assignments, "expected FLEETQ_* defaults in the image"
    assert set(assignments) <= SETTING_VARIABLES
    load_settings(environ=assignments)  # raises ConfigError on an invalid value


def test_the_build_context_admits_exactly_what_the_build_copies() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "start from nothing and admit what the image needs"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {
        source.rstrip("/")
        for keyword, arguments in dockerfile()
        if keyword == "COPY" and not arguments.startswith("--from")
        for source in arguments.split()[:-1]
    }
    assert copied == admitted
    assert all((REPO / path).exists() for path in copied)


# -- Kubernetes ----------------------------------------------------------------------------------


def test_the_deployment_runs_three_replicas(deployment: dict[str, Any]) -> None:
    assert deployment["kind"] == "Deployment"
    assert deployment["spec"]["replicas"] == 3
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_container_ports_are_the_default_ports(container: dict[str, Any]) -> None:
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": DEFAULTS.http_port, "grpc": DEFAULTS.grpc_port}


@pytest.mark.parametrize("probe", PROBES)
def test_probes_use_the_native_grpc_health_check(container: dict[str, Any], probe: str) -> None:
    assert container[probe]["grpc"]["port"] == DEFAULTS.grpc_port
    assert set(container[probe]) & {"httpGet", "exec", "tcpSocket"} == set()


def test_only_readiness_follows_the_database_liveness_asks_for_the_process(
    container: dict[str, Any],
) -> None:
    assert container["livenessProbe"]["grpc"]["service"] == LIVENESS_SERVICE
    assert "service" not in container["readinessProbe"]["grpc"]
    assert "service" not in container["startupProbe"]["grpc"]


def test_every_variable_is_a_setting_and_literal_values_are_valid(
    container: dict[str, Any],
) -> None:
    env = {item["name"]: item for item in container["env"]}
    assert set(env) <= SETTING_VARIABLES, set(env) - SETTING_VARIABLES
    literals = {name: item["value"] for name, item in env.items() if "value" in item}
    load_settings(environ=literals)  # raises ConfigError on an invalid value


def test_the_database_url_comes_from_a_secret(container: dict[str, Any]) -> None:
    (database,) = [item for item in container["env"] if item["name"] == env_name("database_url")]
    secret = database["valueFrom"]["secretKeyRef"]
    assert secret["name"] and secret["key"]
    assert secret.get("optional", False) is False, "a pod without a database must not start"


def test_termination_grace_exceeds_the_shutdown_grace(
    deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    configured = {item["name"]: item.get("value") for item in container["env"]}
    grace = float(configured.get(env_name("shutdown_grace")) or DEFAULTS.shutdown_grace)
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace


def test_prometheus_scrapes_metrics_on_the_http_port(deployment: dict[str, Any]) -> None:
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(DEFAULTS.http_port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_service_exposes_both_ports_of_the_pods(
    deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    service = manifest("service.yaml")
    assert service["kind"] == "Service"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    container_ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    exposed = {port["name"]: port for port in service["spec"]["ports"]}
    assert set(exposed) == set(container_ports)
    for name, port in exposed.items():
        assert port["targetPort"] in (name, container_ports[name])
        assert port["port"] == container_ports[name]


def test_the_disruption_budget_keeps_all_but_one_pod(deployment: dict[str, Any]) -> None:
    budget = manifest("pod-disruption-budget.yaml")
    assert budget["kind"] == "PodDisruptionBudget"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] == 1


def test_the_kustomization_lists_every_manifest() -> None:
    listed = set(manifest("kustomization.yaml")["resources"])
    present = {path.name for path in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


# -- Kubernetes, HTTP probe variant (deploy/kubernetes/http-probes) ------------------------------

HTTP_VARIANT = MANIFESTS / "http-probes"


def http_variant_container(container: dict[str, Any]) -> dict[str, Any]:
    """The container after the variant's strategic-merge patch (maps merge, null deletes)."""
    patch = yaml.safe_load((HTTP_VARIANT / "probes.yaml").read_text())
    assert patch["kind"] == "Deployment" and patch["metadata"]["name"] == "fleetq"
    (patched,) = patch["spec"]["template"]["spec"]["containers"]
    assert patched["name"] == container["name"]
    merged = dict(container)
    for probe in PROBES:
        combined = {**container[probe], **patched[probe]}
        merged[probe] = {key: value for key, value in combined.items() if value is not None}
    return merged


def test_the_http_variant_patches_the_base_deployment() -> None:
    kustomization = yaml.safe_load((HTTP_VARIANT / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [".."]
    assert kustomization["patches"] == [{"path": "probes.yaml"}]


def test_the_http_variant_probes_liveness_with_livez_and_readiness_with_readyz(
    container: dict[str, Any],
) -> None:
    patched = http_variant_container(container)
    paths = {probe: patched[probe]["httpGet"]["path"] for probe in PROBES}
    assert paths == {
        "startupProbe": READYZ_PATH,
        "readinessProbe": READYZ_PATH,
        "livenessProbe": LIVEZ_PATH,
    }
    port_names = {port["name"] for port in container["ports"]}
    for probe in PROBES:
        assert patched[probe]["httpGet"]["port"] in port_names
        assert set(patched[probe]) & {"grpc", "exec", "tcpSocket"} == set()
        # Timing stays the base's: only the mechanism changes.
        assert patched[probe]["periodSeconds"] == container[probe]["periodSeconds"]
