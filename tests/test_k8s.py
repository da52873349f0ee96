"""Deployment files: Serve configs valid, the RayService rendered from configs/gpu.yaml without drift,
and every manifest valid against its schema (KubeRay's CRD; Kubernetes' own), all offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from serve_app.config import AppConfig, ExtractorTunables, IngressTunables, JobTunables, ModelTunables

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
KUBERNETES_VERSION = "1.32"


def _render_module():
    spec = importlib.util.spec_from_file_location("render_rayservice", ROOT / "scripts" / "render_rayservice.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> list[tuple[str, dict]]:
    files = [K8S / name for name in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]]
    files += [K8S / "trial" / name for name in ("postgres.yaml", "redis.yaml")]
    return [(f"{path.relative_to(K8S)}:{doc['kind']}", doc) for path in files for doc in _documents(path)]


@pytest.mark.parametrize("config", ["local.yaml", "gpu.yaml"])
def test_serve_configs_are_valid_for_serve_and_for_the_app(config: str) -> None:
    from ray.serve.schema import ServeDeploySchema

    data = yaml.safe_load((ROOT / "configs" / config).read_text())
    ServeDeploySchema.model_validate(data)
    [app] = data["applications"]
    assert app["import_path"] == "deployments.app:build_app"
    args = AppConfig.model_validate(app["args"])
    assert {d["name"] for d in app["deployments"]} == {"Ingress", "EntityExtractor", "ModelServer", "JobWorker"}
    # The live tunables pass the model reconfigure() validates them with: a typo fails here, not at deploy.
    tunables = {
        "Ingress": IngressTunables,
        "EntityExtractor": ExtractorTunables,
        "ModelServer": ModelTunables,
        "JobWorker": JobTunables,
    }
    for deployment in app["deployments"]:
        tunables[deployment["name"]].model_validate(deployment["user_config"])
    extractor = next(d["user_config"] for d in app["deployments"] if d["name"] == "EntityExtractor")
    ingress = next(d["user_config"] for d in app["deployments"] if d["name"] == "Ingress")
    assert extractor["model_fallback_timeout_s"] < ingress["extract_timeout_s"]  # the fallback gives up first
    # A replica that scales down or stops finishes what it holds: a query may wait extract_timeout_s on
    # the model path, so every deployment on that path waits longer before Serve kills it.
    on_the_model_path = [args.ingress.resources, args.extractor.resources]
    on_the_model_path += [args.model.resources] if args.model else []
    assert all(r.graceful_shutdown_timeout_s > ingress["extract_timeout_s"] for r in on_the_model_path)


def test_the_gpu_configs_vllm_options_reach_the_engine(tmp_path: Path) -> None:
    from deployments.model_server import make_engine

    [app] = yaml.safe_load((ROOT / "configs" / "gpu.yaml").read_text())["applications"]
    config = AppConfig.model_validate(app["args"]).model
    assert config is not None
    engine = make_engine(config, config.paths(tmp_path))  # constructing it starts nothing
    options = app["args"]["model"]["vllm"]
    arguments = engine._engine_kwargs  # what AsyncEngineArgs receives
    assert arguments["enforce_eager"] is options["enforce_eager"] is False
    assert arguments["max_lora_rank"] == options["max_lora_rank"]
    assert arguments["max_model_len"] == options["max_model_len"]
    assert arguments["gpu_memory_utilization"] == options["memory_utilization"]
    assert arguments["dtype"] == "bfloat16"


def test_rendered_rayservice_has_no_drift_and_carries_the_gpu_config() -> None:
    render = _render_module()
    assert (K8S / "rayservice.yaml").read_text() == render.render(), "run python scripts/render_rayservice.py"
    [service] = _documents(K8S / "rayservice.yaml")
    served = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert served == yaml.safe_load((ROOT / "configs" / "gpu.yaml").read_text())


@pytest.mark.slow
def test_rayservice_matches_the_kuberay_crd() -> None:
    crd = yaml.safe_load((K8S / "schemas" / "ray.io_rayservices.yaml").read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    [service] = _documents(K8S / "rayservice.yaml")
    jsonschema.validate(service, version["schema"]["openAPIV3Schema"])
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    groups = {group["groupName"]: group for group in cluster["workerGroupSpecs"]}
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu_limits["nvidia.com/gpu"] == "1"
    assert groups["cpu"]["maxReplicas"] > groups["cpu"]["minReplicas"]


@pytest.mark.slow
def test_the_crd_schema_catches_a_broken_rayservice() -> None:
    crd = yaml.safe_load((K8S / "schemas" / "ray.io_rayservices.yaml").read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    [service] = _documents(K8S / "rayservice.yaml")
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = "eight"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(service, version["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize(("name", "manifest"), [m for m in _manifests() if m[1]["kind"] != "RayService"])
def test_kubernetes_objects_match_kubernetes_schemas(name: str, manifest: dict) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_only_the_serve_port_is_open_from_outside() -> None:
    [policy] = _documents(K8S / "networkpolicy.yaml")
    open_to_all = [rule for rule in policy["spec"]["ingress"] if "from" not in rule]
    assert open_to_all == [{"ports": [{"port": 8000, "protocol": "TCP"}]}]
    [service] = _documents(K8S / "serve-service.yaml")
    assert [p["port"] for p in service["spec"]["ports"]] == [8000]
    # The KubeRay operator, from its own namespace, reaches the head's dashboard (a RayService needs it).
    operator = [rule for rule in policy["spec"]["ingress"] if rule.get("ports") == [{"port": 8265, "protocol": "TCP"}]]
    [peer] = operator[0]["from"]
    assert peer == {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}},
    }


def test_probes_match_warm_up_and_the_bootstrap_job_runs_the_command_on_the_gpu_config() -> None:
    [service] = _documents(K8S / "rayservice.yaml")
    [head] = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"]
    assert head["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8000}
    assert head["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8000}
    startup = head["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # vLLM start + CUDA graphs
    [job] = _documents(K8S / "bootstrap-job.yaml")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["serve-app", "bootstrap"]
    assert "--config=/app/configs/gpu.yaml" in container["command"]
    assert (ROOT / "configs" / "gpu.yaml").exists() and "bootstrap-job.yaml" in (K8S / "kustomization.yaml").read_text()


def test_the_dockerfile_copies_what_exists_and_installs_an_extra_that_exists() -> None:
    """No image is built here (no Docker daemon, no registry): what it copies and installs is checked."""
    import tomllib

    lines = (K8S / "Dockerfile").read_text().splitlines()
    copied = [part for line in lines if line.startswith("COPY") for part in line.split()[1:-1] if "=" not in part]
    assert copied and all((ROOT / part).exists() for part in copied), copied
    [install] = [line for line in lines if line.startswith("RUN pip install")]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert '".[vllm]"' in install and "vllm" in extras
