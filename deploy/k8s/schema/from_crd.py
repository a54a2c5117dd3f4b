"""Writes raycluster-v1.json, the JSON Schema our RayCluster is checked against offline, from
KubeRay's own CRD (ray-operator/config/crd/bases/ray.io_rayclusters.yaml):

    python deploy/k8s/schema/from_crd.py ray.io_rayclusters.yaml COMMIT > deploy/k8s/schema/raycluster-v1.json

It is the CRD's v1 openAPIV3Schema with three changes: descriptions and `status` dropped (size);
the head's and each worker group's pod `template` left as an object here, because the test checks
each template against Kubernetes' own PodTemplateSpec schema (kubernetes-validate), which is
stricter; and `additionalProperties: false` wherever the CRD lists properties, so an unknown field
is an error (the API server with strict field validation refuses it; without, it drops it)."""

import json
import sys

import yaml


def tighten(node):
    if isinstance(node, list):
        return [tighten(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: tighten(v) for k, v in node.items() if k != "description"}
    if "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def main(crd_path: str, commit: str) -> None:
    crd = yaml.safe_load(open(crd_path, encoding="utf-8"))
    v1 = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = v1["schema"]["openAPIV3Schema"]
    schema["properties"].pop("status", None)
    spec = schema["properties"]["spec"]["properties"]
    spec["headGroupSpec"]["properties"]["template"] = {"type": "object"}
    spec["workerGroupSpecs"]["items"]["properties"]["template"] = {"type": "object"}
    out = {"$comment": f"From ray-project/kuberay {commit} ray-operator/config/crd/bases/"
                       "ray.io_rayclusters.yaml by deploy/k8s/schema/from_crd.py (see its docstring).",
           **tighten(schema)}
    # metadata is checked by Kubernetes' ObjectMeta rules elsewhere; the CRD leaves it open
    out["properties"]["metadata"] = {"type": "object"}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
