"""deploy/ validates against its schemas, offline, and its files agree with each other and the code.

- Kubernetes objects: kubernetes-validate's own copy of the Kubernetes 1.33 OpenAPI schemas, strict
  (unknown fields rejected).
- The RayCluster: deploy/kuberay/schema/raycluster.ray.io_v1.subset.json, a subset of KubeRay's
  ray.io/v1 CRD schema checked in with the manifests; its pod templates: Kubernetes' PodTemplateSpec.
- compose.yaml: deploy/schema/compose-spec.subset.json, a subset of the Compose Specification's JSON
  schema checked in with it (no installed package ships the official schema).
"""

from __future__ import annotations

import copy
import re

import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploy_files import (
    COMPOSE,
    COMPOSE_SCHEMA,
    DEPLOY,
    KUBERAY,
    KUBERNETES_VERSION,
    RAYCLUSTER_SCHEMA,
    ROOT,
    compose,
    containers,
    dockerfile_args,
    dockerfile_env,
    dockerfile_instructions,
    load_json,
    manifests,
    objects,
    pod_specs,
)

MANIFESTS = manifests()
BUILTIN = [m for m in MANIFESTS if m.doc["kind"] != "RayCluster"]


def k8s_validate(doc):
    return kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def raycluster():
    (cluster,) = objects("RayCluster")
    return cluster


def schema_errors(validator_class, schema, doc) -> list[str]:
    """`path: message` for each way `doc` breaks the JSON schema in the file `schema`."""
    validator = validator_class(load_json(schema))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def raycluster_errors(doc) -> list[str]:
    return schema_errors(jsonschema.Draft202012Validator, RAYCLUSTER_SCHEMA, doc)


def compose_errors(doc) -> list[str]:
    return schema_errors(jsonschema.Draft7Validator, COMPOSE_SCHEMA, doc)


def mutated(doc, mutate):
    """A deep copy of `doc` changed by `mutate(copy)`."""
    broken = copy.deepcopy(doc)
    mutate(broken)
    return broken


# --- Kubernetes ----------------------------------------------------------------------------------------


def test_kubernetes_validate_has_the_schemas_offline():
    assert KUBERNETES_VERSION in kubernetes_validate.utils.all_versions()


@pytest.mark.parametrize("manifest", BUILTIN, ids=lambda m: m.id)
def test_kubernetes_objects_validate(manifest):
    assert k8s_validate(manifest.doc) == KUBERNETES_VERSION.rsplit(".", 1)[0]


def test_strict_kubernetes_validation_rejects_a_misspelt_field():
    (deployment,) = objects("Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        k8s_validate(broken)


def test_raycluster_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(load_json(RAYCLUSTER_SCHEMA))


def test_raycluster_validates_against_the_crd_schema():
    assert raycluster_errors(raycluster()) == []


@pytest.mark.parametrize(
    "group", ["head", *(g["groupName"] for g in raycluster()["spec"]["workerGroupSpecs"])]
)
def test_raycluster_pod_templates_are_kubernetes_pod_templates(group):
    spec = raycluster()["spec"]
    template = (
        spec["headGroupSpec"]["template"]
        if group == "head"
        else next(g for g in spec["workerGroupSpecs"] if g["groupName"] == group)["template"]
    )
    pod_template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": group},
        "template": template,
    }
    k8s_validate(pod_template)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["spec"].__setitem__("enableInTreeAutoscalling", True),
        lambda c: c["spec"]["workerGroupSpecs"][0].__setitem__("minReplica", 1),
        lambda c: c["spec"]["workerGroupSpecs"][0].pop("maxReplicas"),
        lambda c: c["spec"]["headGroupSpec"]["rayStartParams"].__setitem__("num-cpus", 0),
        lambda c: c["spec"]["autoscalerOptions"].__setitem__("upscalingMode", "Fast"),
        lambda c: c["spec"]["workerGroupSpecs"][0].__setitem__("maxReplicas", 2**31),
        lambda c: c.__setitem__("apiVersion", "ray.io/v1alpha1"),
    ],
    ids=["unknown-spec-field", "misspelt-group-field", "missing-maxReplicas", "int-rayStartParam",
         "bad-upscalingMode", "int32-overflow", "old-apiVersion"],
)  # fmt: skip
def test_raycluster_schema_rejects_what_the_crd_rejects(mutate):
    assert raycluster_errors(mutated(raycluster(), mutate))


def test_raycluster_has_a_head_a_cpu_group_and_an_autoscaled_gpu_group():
    spec = raycluster()["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", "trials run on workers, not the head"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for group in groups.values():
        assert (
            0 <= group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
        )
        assert group["maxReplicas"] > group["minReplicas"], "autoscaling needs room between the bounds"
    for name, group in groups.items():
        (container,) = group["template"]["spec"]["containers"]
        limits = container["resources"]["limits"]
        if name == "gpu":
            assert int(limits["nvidia.com/gpu"]) >= 1
            assert "cuda" in container["image"]
        else:
            assert "nvidia.com/gpu" not in limits
        assert container["resources"]["requests"]["cpu"] == limits["cpu"], (
            "Ray's num-cpus comes from the limit"
        )


def test_raycluster_and_image_agree_on_ray():
    assert raycluster()["spec"]["rayVersion"] == dockerfile_args()["RAY_VERSION"]


def test_ray_token_secret_is_the_one_the_api_reads():
    auth = raycluster()["spec"]["authOptions"]
    assert auth["mode"] == "token"
    (api,) = objects("Deployment")
    env = {e["name"]: e for e in api["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": auth["secretName"],
        "key": "auth_token",
    }


def test_references_resolve():
    """Every Secret, ConfigMap and claim a pod uses is defined here (Secrets: in secrets.example.yaml,
    with the key), and every claim a Ray worker mounts is ReadWriteMany."""
    configmaps = {c["metadata"]["name"]: c for c in objects("ConfigMap")}
    secrets = {s["metadata"]["name"]: s for s in objects("Secret")}
    claims = {c["metadata"]["name"]: c for c in objects("PersistentVolumeClaim")}
    for owner, container in containers():
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configmaps, owner
        for var in container.get("env", []):
            ref = (var.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]]["stringData"], f"{owner}: {var['name']}"
    for owner, spec in pod_specs():
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = claims[volume["persistentVolumeClaim"]["claimName"]]
                if "RayCluster" in owner:
                    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], owner


def test_workers_mount_the_paths_the_api_hands_to_trials():
    """The scheduler passes SSMBENCH_CHECKPOINT_DIR and SSMBENCH_DATA_DIR to every trial: each worker
    group mounts the shared volumes at exactly those paths."""
    (config,) = objects("ConfigMap")
    wanted = {config["data"]["SSMBENCH_CHECKPOINT_DIR"], config["data"]["SSMBENCH_DATA_DIR"]}
    for group in raycluster()["spec"]["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        assert wanted <= {m["mountPath"] for m in container["volumeMounts"]}, group["groupName"]
    head_service = f"{raycluster()['metadata']['name']}-head-svc:6379"
    assert config["data"]["RAY_ADDRESS"] == head_service


def test_kustomization_lists_every_manifest_but_the_secret_template():
    kustomization = yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    files = {p.name for p in KUBERAY.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == files - {"secrets.example.yaml"}
    images = {c["image"].split(":")[0] for _, c in containers() if "postgres" not in c["image"]}
    assert images == {i["name"] for i in kustomization["images"]}


def test_pods_run_as_a_non_root_user():
    for owner, spec in pod_specs():
        if "postgres" in owner:
            continue  # the postgres image switches to its own user
        context = spec.get("securityContext", {})
        assert context.get("runAsNonRoot") is True and context.get("runAsUser", 0) != 0, owner


# --- compose -------------------------------------------------------------------------------------------


def test_compose_schema_is_a_valid_json_schema():
    jsonschema.Draft7Validator.check_schema(load_json(COMPOSE_SCHEMA))


def test_compose_validates_against_the_compose_spec_schema():
    assert compose_errors(compose()) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["services"]["api"]["depends_on"]["postgres"].__setitem__("condition", "service_healty"),
        lambda c: c["services"]["postgres"]["healthcheck"].__setitem__("interva", "5s"),
        lambda c: c["services"]["api"].__setitem__("depend_on", ["postgres"]),
        lambda c: c.__setitem__("service", {}),
    ],
    ids=["bad-condition", "misspelt-healthcheck-key", "misspelt-service-key", "misspelt-top-level-key"],
)
def test_compose_schema_rejects_mistakes(mutate):
    assert compose_errors(mutated(compose(), mutate))


def test_compose_services():
    services = compose()["services"]
    assert {"postgres", "ray-head", "ray-worker", "migrate", "api"} <= set(services)
    assert services["ray-worker"]["deploy"]["replicas"] == 2
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert services["migrate"]["command"] == ["ssmbench", "db", "upgrade"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on an unknown service {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health check"
    for name in ("postgres", "ray-head", "ray-worker", "api"):
        assert "healthcheck" in services[name], name


def test_compose_volumes_and_paths():
    document = compose()
    declared = set(document["volumes"])
    for name, service in document["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts an undeclared volume {source}"
    settings = document["services"]["api"]["environment"]
    for path_var in ("SSMBENCH_CHECKPOINT_DIR", "SSMBENCH_DATA_DIR"):
        for name in ("ray-worker", "api"):
            targets = {v.split(":")[1] for v in document["services"][name]["volumes"]}
            assert settings[path_var] in targets, f"{name} mounts {path_var}={settings[path_var]}"


def test_compose_variables_are_in_the_env_example():
    """Every ${VAR} the compose file needs is in .env.example, and no secret has a default."""
    text = COMPOSE.read_text()
    example = {
        line.split("=", 1)[0]
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    for name, operator in re.findall(r"\$\{([A-Z0-9_]+)(:?[-?]?)", text):
        assert name in example, f"${{{name}}} is not in deploy/.env.example"
        if "PASSWORD" in name or "TOKEN" in name:
            assert operator == ":?", f"{name} must be required (no default)"
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()


# --- the image -----------------------------------------------------------------------------------------


def test_dockerfile_base_torch_and_user():
    args = dockerfile_args()
    assert args["BASE_IMAGE"].startswith("python:3.11") and args["BASE_IMAGE"].endswith("-slim")
    makefile = (ROOT / "Makefile").read_text()
    assert f"TORCH_VERSION := {args['TORCH_VERSION']}" in makefile, "torch is pinned as in the Makefile"
    instructions = dockerfile_instructions()
    (user,) = [rest for keyword, rest in instructions if keyword == "USER"]
    assert user.split(":")[0] not in ("root", "0") and user.split(":")[0].isdigit(), "a numeric non-root user"
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert froms == ["${BASE_IMAGE}"]
    copied = [rest.split()[0] for keyword, rest in instructions if keyword == "COPY"]
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_dockerfile_bakes_in_no_secret():
    secretish = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|CREDENTIAL", re.IGNORECASE)
    for keyword, rest in dockerfile_instructions():
        if keyword in ("ENV", "ARG"):
            assert not secretish.search(rest), f"{keyword} {rest}"
    assert not any(name.startswith("SSMBENCH_DATABASE") for name in dockerfile_env())


def test_build_context_is_filtered():
    """BuildKit reads deploy/Dockerfile.dockerignore for `-f deploy/Dockerfile`: everything is excluded,
    then only what the image copies is let in."""
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "**", "everything is excluded first"
    allowed = {line[1:].rstrip("/") for line in patterns if line.startswith("!")}
    copied = set()
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY":
            copied.update(source.rstrip("/") for source in rest.split()[:-1])
    assert copied <= allowed, f"COPY of something the ignore file excludes: {copied - allowed}"
    assert not {".venv", ".git", "data", "tests"} & allowed


# --- settings ------------------------------------------------------------------------------------------


def _settings_names() -> set[str]:
    try:
        from api.deps import ServiceSettings as settings_class
    except ImportError:  # the API is not there: the orchestrator's settings are the floor
        from orchestrator.settings import Settings as settings_class
    names = {f"SSMBENCH_{name.upper()}" for name in settings_class.model_fields}
    return names | {"SSMBENCH_FAKE_TRAINER", "SSMBENCH_KERNELS"}


def test_every_ssmbench_variable_is_a_setting():
    """A misspelt SSMBENCH_* variable would be ignored silently (pydantic-settings ignores extras)."""
    used: dict[str, str] = {}
    for name in dockerfile_env():
        used[name] = "Dockerfile ENV"
    for service, body in compose()["services"].items():
        for name in body.get("environment") or {}:
            used[name] = f"compose {service}"
    for config in objects("ConfigMap"):
        for name in config["data"]:
            used[name] = f"ConfigMap {config['metadata']['name']}"
    for owner, container in containers():
        for var in container.get("env", []):
            used[var["name"]] = owner
    known = _settings_names()
    unknown = {
        name: where for name, where in used.items() if name.startswith("SSMBENCH_") and name not in known
    }
    assert not unknown, f"not settings of ssmbench: {unknown}"
    assert "SSMBENCH_DATABASE_URL" in used and "SSMBENCH_CHECKPOINT_DIR" in used


def test_guide_names_the_schema_subsets():
    guide = (DEPLOY / "README.md").read_text()
    for schema in (RAYCLUSTER_SCHEMA, COMPOSE_SCHEMA):
        assert schema.relative_to(ROOT).as_posix() in guide
    assert "subset" in load_json(RAYCLUSTER_SCHEMA)["description"]
    assert "subset" in load_json(COMPOSE_SCHEMA)["description"]
