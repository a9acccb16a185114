"""deploy/: the Kubernetes set, the Dockerfile and the systemd unit agree with the option table and each other."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from aibridge.bridge.providers import PROVIDER_KINDS
from aibridge.config import OPTIONS, load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KNOWN_ENV = {opt.env for opt in OPTIONS}
INDEXED_ENV = re.compile(r"^CODER_AIBRIDGE_(PROVIDER|MCP_SERVER)_\d+_[A-Z_]+$")


def manifests() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[doc["kind"]] = doc
    return found


def container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_every_kubernetes_object_is_there() -> None:
    assert set(manifests()) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret"}


def test_deployment_env_names_are_options_and_values_parse() -> None:
    docs = manifests()
    env = container(docs)["env"]
    names = [e["name"] for e in env]
    unknown = [n for n in names if n not in KNOWN_ENV and not INDEXED_ENV.match(n)]
    assert not unknown, f"not in the option table: {unknown}"
    assert len(names) == len(set(names))
    plain = {e["name"]: e["value"] for e in env if "value" in e}
    secret = {e["name"]: "postgresql://u@db/aibridge" if e["name"] == "CODER_PG_CONNECTION_URL" else "from-secret"
              for e in env if "valueFrom" in e}
    settings = load_settings({}, env={**plain, **secret}, provider_kinds=PROVIDER_KINDS)   # every value is valid
    assert settings.aibridge_enabled and settings.workers == 2
    secret_keys = set(docs["Secret"]["stringData"])
    for e in env:
        if "valueFrom" in e:
            ref = e["valueFrom"]["secretKeyRef"]
            assert ref["name"] == docs["Secret"]["metadata"]["name"] and ref["key"] in secret_keys, e
    assert {"CODER_AIBRIDGE_OPENAI_KEY", "CODER_AIBRIDGE_ANTHROPIC_KEY", "CODER_PG_CONNECTION_URL",
            "CODER_AIBRIDGE_REDIS_URL", "CODER_AIBRIDGE_SECRETS_KEY"} <= set(secret)   # secrets never as literal values


def test_ports_probes_and_shutdown_match_the_configuration() -> None:
    docs = manifests()
    c = container(docs)
    plain = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == port_of(plain["CODER_HTTP_ADDRESS"])
    assert ports["metrics"] == port_of(plain["CODER_PROMETHEUS_ADDRESS"])
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    pod = docs["Deployment"]["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    settings = load_settings({}, env=plain, storage_only=True)
    assert pod["spec"]["terminationGracePeriodSeconds"] > settings.shutdown_grace + 5     # + the preStop pause
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert plain["CODER_AIBRIDGE_DATA_DIR"] in mounts and "/tmp" in mounts    # read-only root: writable dirs
    cpu_limit = int(c["resources"]["limits"]["cpu"])
    assert settings.workers == cpu_limit


def test_service_hpa_and_pdb_point_at_the_deployment() -> None:
    docs = manifests()
    deployment = docs["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in container(docs)["ports"]}
    service = docs["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["ports"]} <= port_names
    target = docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert docs["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] < docs["HorizontalPodAutoscaler"]["spec"]["minReplicas"]


def dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


def test_dockerfile_runs_non_root_with_health_check_and_data_volume() -> None:
    instructions = dockerfile()
    by_name: dict[str, list[str]] = {}
    for name, args in instructions:
        by_name.setdefault(name, []).append(args)
    env = dict(re.findall(r"(CODER_[A-Z_]+)=(\S+)", " ".join(by_name["ENV"])))
    assert set(env) <= KNOWN_ENV
    load_settings({}, env=env)
    user = by_name["USER"][-1].split(":")[0]
    assert user not in ("root", "0")
    assert [n for n, _ in instructions].index("USER") > max(i for i, (n, _) in enumerate(instructions) if n == "RUN")
    assert "/healthz" in by_name["HEALTHCHECK"][0]
    assert env["CODER_AIBRIDGE_DATA_DIR"] in by_name["VOLUME"][0]
    assert str(port_of(env["CODER_HTTP_ADDRESS"])) in by_name["EXPOSE"][0].split()
    assert by_name["CMD"] == ['["server"]'] and "aibridge" in by_name["ENTRYPOINT"][0]


def test_systemd_unit_uses_known_options_and_outlasts_the_grace() -> None:
    lines = [line.strip() for line in (DEPLOY / "systemd" / "aibridge.service").read_text().splitlines()]
    env = dict(line.removeprefix("Environment=").split("=", 1) for line in lines if line.startswith("Environment="))
    assert set(env) <= KNOWN_ENV
    settings = load_settings({}, env=env, storage_only=True)
    values = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith(("#", "Environment=")))
    assert shlex.split(values["ExecStart"])[1:] == ["server"]
    assert values["KillSignal"] == "SIGTERM" and values["KillMode"] == "mixed"
    assert int(values["TimeoutStopSec"]) > settings.shutdown_grace
    assert values["User"] != "root"


# ---------------------------------------------------------------- against the Kubernetes schemas

# The oldest Kubernetes release still supported upstream when this was written, and the newest the
# validator ships (its schemas are in the package: nothing is fetched).
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")


def test_manifests_are_valid_kubernetes_objects() -> None:
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                for version in KUBERNETES_VERSIONS:
                    kubernetes_validate.validate(doc, version, strict=True)      # unknown fields too


def test_the_schema_check_catches_a_misspelled_field_and_a_wrong_type() -> None:
    deployment = manifests()["Deployment"]
    misspelled = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    wrong_type = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    for bad in (misspelled, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, KUBERNETES_VERSIONS[-1], strict=True)
