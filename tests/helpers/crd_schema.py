"""A CustomResourceDefinition's openAPIV3Schema as a JSON Schema file, for check-jsonschema.

The CRD's schema is already JSON Schema but for Kubernetes' extensions, which are read as the API
server reads them:
- an object that lists its `properties` takes no others (`additionalProperties: false`), as
  `kubectl apply --validate=strict` refuses unknown fields (the server would drop them silently);
- `x-kubernetes-list-type: set` is `uniqueItems`; `format: int32` / `int64` bound the integer;
- `x-kubernetes-int-or-string` is already written out as `anyOf: [integer, string]` by
  controller-gen; `x-kubernetes-preserve-unknown-fields` lets an object keep any field, and
  `nullable` admits null (neither occurs in the LeaderWorkerSet CRD, both are handled);
- `apiVersion` and `kind` must name the CRD's own group/version and kind.
Not expressed: the uniqueness of `x-kubernetes-list-type: map` items by their keys, and CEL rules
(`x-kubernetes-validations`), which only the API server evaluates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _convert(sub) for name, sub in value.items()}
        elif key.startswith("x-kubernetes-") or key == "nullable":
            continue
        else:
            out[key] = _convert(value)
    if node.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("additionalProperties", None)
    elif "properties" in node and "additionalProperties" not in node:
        out["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if node.get("type") == "integer" and node.get("format") in INT_BOUNDS:
        low, high = INT_BOUNDS[node["format"]]
        out.setdefault("minimum", low)
        out.setdefault("maximum", high)
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def json_schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    """The JSON Schema of one served version of the CRD."""
    spec = crd["spec"]
    found = next(v for v in spec["versions"] if v["name"] == version)
    schema = _convert(found["schema"]["openAPIV3Schema"])
    schema["properties"]["apiVersion"]["enum"] = [f"{spec['group']}/{version}"]
    schema["properties"]["kind"]["enum"] = [spec["names"]["kind"]]
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "spec"})
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def write(crd_file: Path, version: str, out: Path) -> Path:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(crd_file.read_text(), Loader=loader)  # a safe loader (C if built)
    out.write_text(json.dumps(json_schema(crd, version)))
    return out
