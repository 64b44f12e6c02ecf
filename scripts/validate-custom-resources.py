#!/usr/bin/env python3
"""Validates custom resources against their operators' CRD schemas, offline.

    validate-custom-resources.py CRDS_DIR [MANIFEST ...]   (stdin when none)

CRDS_DIR holds one openAPIV3Schema per group, kind and version
(<group>/<kind lowercased>_<version>.json; ../shared/crds/README.md). Every
object of the manifests whose apiVersion is a custom group is checked against
the schema of its kind, as an API server with strict field validation would:
unknown fields are errors except under x-kubernetes-preserve-unknown-fields,
x-kubernetes-int-or-string takes either, nullable takes null, and metadata is
checked as an ObjectMeta. A custom resource with no schema is an error.
CEL rules (x-kubernetes-validations) are not evaluated: they are counted and
reported. Prints one line per object; exits 1 on any error.
"""
import json
import pathlib
import sys

import jsonschema
import yaml

OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def structural_to_json_schema(schema, counts):
    """The JSON Schema that accepts what the API server accepts for `schema`."""
    if not isinstance(schema, dict):
        return schema
    schema = dict(schema)
    if "x-kubernetes-validations" in schema:
        counts["cel"] += len(schema.pop("x-kubernetes-validations"))
    for key in ("properties", "patternProperties"):
        if key in schema:
            schema[key] = {name: structural_to_json_schema(sub, counts) for name, sub in schema[key].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            schema[key] = structural_to_json_schema(schema[key], counts)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            schema[key] = [structural_to_json_schema(sub, counts) for sub in schema[key]]
    if schema.pop("x-kubernetes-int-or-string", False):
        schema.pop("type", None)
        schema.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    preserve = schema.pop("x-kubernetes-preserve-unknown-fields", False)
    if (schema.get("type") == "object" and not preserve and "additionalProperties" not in schema):
        # Strict: a field the schema does not name is an error (the API
        # server would prune it silently, and the setting would be lost).
        schema["additionalProperties"] = False if "properties" in schema else schema.get("additionalProperties", True)
    if schema.pop("nullable", False) and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    crds = pathlib.Path(argv[1])
    sources = [open(path) for path in argv[2:]] or [sys.stdin]
    failures = 0
    checked = 0
    for source in sources:
        for document in yaml.safe_load_all(source):
            if not document:
                continue
            api_version, kind = document.get("apiVersion", ""), document.get("kind", "")
            group, _, version = api_version.rpartition("/")
            name = document.get("metadata", {}).get("name", "?")
            label = f"{kind}/{name} ({api_version})"
            path = crds / group / f"{kind.lower()}_{version}.json"
            if not path.is_file():
                print(f"ERROR {label}: no schema {path}")
                failures += 1
                continue
            counts = {"cel": 0}
            schema = structural_to_json_schema(json.loads(path.read_text()), counts)
            schema.setdefault("properties", {})["metadata"] = OBJECT_META
            schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
            validator = jsonschema.Draft7Validator(schema)
            errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
            checked += 1
            if errors:
                failures += 1
                for error in errors:
                    where = ".".join(str(part) for part in error.absolute_path) or "(root)"
                    print(f"ERROR {label} at {where}: {error.message}")
            else:
                cel = f"; {counts['cel']} CEL rules of the schema not evaluated" if counts["cel"] else ""
                print(f"ok {label} against {path.relative_to(crds)}{cel}")
    print(f"{checked} custom resources checked, {failures} with errors")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
