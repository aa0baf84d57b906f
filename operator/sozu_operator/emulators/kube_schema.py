"""What the API server does with a custom resource's body before it stores it, in its order:
prune unknown fields, drop non-nullable nulls, apply defaults, validate (OpenAPI v3 via
`jsonschema`, list types, CEL rules). Also the checks the server applies to a posted CRD.

Structural pruning keeps `apiVersion`, `kind` and `metadata` at the root and under
`x-kubernetes-embedded-resource`, keeps everything under `x-kubernetes-preserve-unknown-fields`
(still pruning inside declared properties there), and reports every dropped path so that
`fieldValidation=Strict` can refuse it and `Warn` can warn about it.
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import jsonschema
import jsonschema.exceptions

from sozu_operator.emulators import kube_cel
from sozu_operator.emulators.kube_meta import (
    OBJECT_META_FIELDS,
    FieldError,
    JsonObj,
    dns_label_problems,
    dns_subdomain_problems,
    duplicate,
    forbidden_field,
    invalid,
    not_supported,
    required,
    too_long,
    too_many,
)

logger = logging.getLogger(__name__)

Schema = Mapping[str, Any]
_RESOURCE_ROOT_FIELDS: Final = ("apiVersion", "kind", "metadata")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _props(schema: Schema | None) -> Mapping[str, Any]:
    props = (schema or {}).get("properties")
    return props if isinstance(props, Mapping) else {}


def _additional(schema: Schema | None) -> Schema | None:
    extra = (schema or {}).get("additionalProperties")
    return extra if isinstance(extra, Mapping) else None


# --- pruning and defaulting -----------------------------------------------------------------------


def prune(value: Any, schema: Schema | None, *, root: bool = True) -> list[str]:
    """Drop fields the schema does not know, in place; returns the dropped paths."""
    dropped: list[str] = []
    _prune(value, schema, "", dropped, resource_root=root)
    return dropped


def _prune(value: Any, schema: Schema | None, path: str, dropped: list[str],
           *, resource_root: bool = False) -> None:
    if isinstance(value, dict):
        if resource_root:
            meta = value.get("metadata")
            if isinstance(meta, dict):
                for key in [k for k in meta if k not in OBJECT_META_FIELDS]:
                    dropped.append(_join(_join(path, "metadata"), key))
                    del meta[key]
        if schema is None:
            return
        props = _props(schema)
        extra = _additional(schema)
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        for key in list(value):
            if (resource_root or embedded) and key in _RESOURCE_ROOT_FIELDS:
                if key == "metadata" and embedded and not resource_root:
                    _prune(value, None, path, dropped, resource_root=True)
                continue
            child_path = _join(path, key)
            if key in props:
                _prune(value[key], props[key], child_path, dropped)
            elif extra is not None:
                _prune(value[key], extra, child_path, dropped)
            elif preserve or schema.get("x-kubernetes-int-or-string"):
                continue
            else:
                dropped.append(child_path)
                del value[key]
    elif isinstance(value, list) and schema is not None:
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index, item in enumerate(value):
                _prune(item, items, f"{path}[{index}]", dropped)


def apply_defaults(value: Any, schema: Schema | None) -> None:
    """Drop nulls of non-nullable fields (unless defaulted) and fill in defaults, in place."""
    if schema is None:
        return
    if isinstance(value, dict):
        props = _props(schema)
        for key, prop in props.items():
            if not isinstance(prop, Mapping):
                continue
            if key in value and value[key] is None and not prop.get("nullable"):
                del value[key]
            if key not in value and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
        extra = _additional(schema)
        for key, child in list(value.items()):
            sub = props.get(key) if key in props else extra
            if isinstance(sub, Mapping):
                if child is None and not sub.get("nullable") and key not in props:
                    del value[key]
                    continue
                apply_defaults(child, sub)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for item in value:
                apply_defaults(item, items)


# --- validation -----------------------------------------------------------------------------------


def _to_json_schema(schema: Any) -> Any:
    """OpenAPI v3 (Kubernetes flavour) -> JSON Schema draft 4: `nullable` becomes a "null"
    type and int-or-string an anyOf; extensions are dropped."""
    if isinstance(schema, list):
        return [_to_json_schema(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in ("default", "example", "externalDocs"):
            continue
        if key in ("properties", "patternProperties", "definitions") and isinstance(value, Mapping):
            out[key] = {k: _to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") or key in ("allOf", "anyOf", "oneOf"):
            out[key] = _to_json_schema(value)
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string") and "type" not in out and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        for combinator in ("anyOf", "oneOf"):
            if isinstance(out.get(combinator), list):
                out[combinator] = [*out[combinator], {"type": "null"}]
    return out


_FORMATS: Final = jsonschema.FormatChecker(formats=())


def _check_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return re.fullmatch(
        r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?", value
    ) is not None


def _check_date(value: object) -> bool:
    return not isinstance(value, str) or re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is not None


def _check_byte(value: object) -> bool:
    if isinstance(value, str):
        base64.b64decode(value, validate=True)
    return True


def _parses(parser: Callable[[str], object]) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        if isinstance(value, str):
            parser(value)  # raises ValueError when malformed
        return True

    return check


def _check_hostname(value: object) -> bool:
    return not isinstance(value, str) or not dns_subdomain_problems(value)


# The formats the API server's validator checks (unknown formats pass, as there).
for _name, _check in {
    "date-time": _check_datetime,
    "date": _check_date,
    "byte": _check_byte,
    "uuid": _parses(uuid.UUID),
    "ipv4": _parses(ipaddress.IPv4Address),
    "ipv6": _parses(ipaddress.IPv6Address),
    "cidr": _parses(lambda text: ipaddress.ip_network(text, strict=False)),
    "hostname": _check_hostname,
}.items():
    _FORMATS.checks(_name, raises=(ValueError, TypeError, binascii.Error))(_check)


def _path_of(parts: Iterable[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _field_error(error: jsonschema.exceptions.ValidationError) -> FieldError:
    """Word a jsonschema error the way kube-openapi's validator words it."""
    path = _path_of(error.absolute_path)
    value: Any = error.instance
    limit: Any = error.validator_value
    schema: Any = error.schema
    where = path or "body"
    match error.validator:
        case "type":
            expected = limit if isinstance(limit, str) else next(
                (t for t in limit if t != "null"), "object"
            )
            actual = _json_type(value)
            return invalid(path, actual, f"{where} in body must be of type {expected}: "
                                         f'"{actual}"')
        case "required":
            missing = re.match(r"'(.*)' is a required property", error.message)
            name = missing.group(1) if missing else str(limit)
            return required(_join(path, name))
        case "enum":
            return not_supported(path, value, [v for v in limit if v is not None])
        case "pattern":
            return invalid(path, value, f"{where} in body should match '{limit}'")
        case "maxLength":
            return too_long(path, int(limit))
        case "minLength":
            return invalid(path, value, f"{where} in body should be at least {limit} chars long")
        case "maximum":
            exclusive = bool((schema or {}).get("exclusiveMaximum"))
            word = "less than" if exclusive else "less than or equal to"
            return invalid(path, value, f"{where} in body should be {word} {limit}")
        case "minimum":
            exclusive = bool((schema or {}).get("exclusiveMinimum"))
            word = "greater than" if exclusive else "greater than or equal to"
            return invalid(path, value, f"{where} in body should be {word} {limit}")
        case "maxItems" | "maxProperties":
            return too_many(path, len(value), int(limit))
        case "minItems":
            return invalid(path, len(value), f"{where} in body should have at least {limit} items")
        case "minProperties":
            return invalid(path, len(value),
                           f"{where} in body should have at least {limit} properties")
        case "uniqueItems":
            return duplicate(path, value)
        case "format":
            return invalid(path, value, f'{where} in body must be of type {limit}: "{value}"')
        case "multipleOf":
            return invalid(path, value, f"{where} in body should be a multiple of {limit}")
        case _:
            return invalid(path, value, error.message)


@dataclass(frozen=True, slots=True)
class _Rule:
    compiled: kube_cel.CompiledRule
    message: str
    field_path: str
    reason: str


@dataclass
class Outcome:
    """What processing a body produced: the errors to answer 422 with, the unknown fields
    (for Strict/Warn field validation) and warnings to send back."""

    errors: list[FieldError] = field(default_factory=list)
    unknown_fields: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class StructuralSchema:
    """One CRD version's openAPIV3Schema, prepared once when the CRD is registered."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        root = dict(_to_json_schema(schema))
        # metadata is ObjectMeta; validating it is the server's job, not the CRD author's.
        props = dict(root.get("properties") or {})
        props["metadata"] = {"type": "object"}
        root["properties"] = props
        self._validator = jsonschema.Draft4Validator(root, format_checker=_FORMATS)
        self._rules: dict[int, list[_Rule]] = {}
        self.skipped_rules: list[str] = []
        self._compile_rules(schema)

    def _compile_rules(self, schema: Any) -> None:
        if isinstance(schema, list):
            for item in schema:
                self._compile_rules(item)
            return
        if not isinstance(schema, Mapping):
            return
        rules: list[_Rule] = []
        for entry in schema.get("x-kubernetes-validations") or []:
            source = str(entry.get("rule", ""))
            try:
                compiled = kube_cel.compile_rule(source)
            except kube_cel.CelUnsupported as error:
                # Documented limitation: rules beyond the tiny evaluator are not enforced.
                self.skipped_rules.append(f"{source} ({error})")
                logger.warning("kube emulator: CEL rule not enforced: %s (%s)", source, error)
                continue
            rules.append(
                _Rule(
                    compiled,
                    str(entry.get("message") or f"failed rule: {source}"),
                    str(entry.get("fieldPath") or ""),
                    str(entry.get("reason") or "FieldValueInvalid"),
                )
            )
        if rules:
            self._rules[id(schema)] = rules
        for key, value in schema.items():
            if key in ("properties", "patternProperties") and isinstance(value, Mapping):
                for sub in value.values():
                    self._compile_rules(sub)
            elif key in ("items", "additionalProperties", "allOf", "anyOf", "oneOf", "not"):
                self._compile_rules(value)

    def process(
        self, obj: JsonObj, old: JsonObj | None, *, kind: str
    ) -> Outcome:
        """Prune, default and validate `obj` in place."""
        outcome = Outcome()
        outcome.unknown_fields = prune(obj, self.schema)
        apply_defaults(obj, self.schema)
        for key in ("apiVersion", "kind"):
            if not isinstance(obj.get(key), str):
                outcome.errors.append(required(key))
        errors = sorted(
            self._validator.iter_errors(obj),
            key=lambda e: [str(p) for p in e.absolute_path],
        )
        seen: set[str] = set()
        for error in errors:
            if error.absolute_path and error.absolute_path[0] == "metadata":
                continue
            field_error = _field_error(error)
            if field_error.text() not in seen:
                seen.add(field_error.text())
                outcome.errors.append(field_error)
        # Like the real server, list-type and CEL checks run on schema-valid subtrees only.
        bad_paths = {fe.field for fe in outcome.errors}
        old_root: Any = old if old is not None else kube_cel.NO_OLD
        self._walk_extras(obj, old_root, self.schema, "", outcome.errors, bad_paths)
        return outcome

    def _walk_extras(
        self,
        value: Any,
        old: Any,
        schema: Schema | None,
        path: str,
        errors: list[FieldError],
        bad_paths: set[str],
    ) -> None:
        if schema is None:
            return
        if isinstance(value, dict):
            props = _props(schema)
            extra = _additional(schema)
            for key, child in value.items():
                if path == "" and key == "metadata":
                    continue
                sub = props.get(key) if key in props else extra
                if isinstance(sub, Mapping):
                    old_child = old.get(key, kube_cel.NO_OLD) if isinstance(old, dict) \
                        else kube_cel.NO_OLD
                    self._walk_extras(child, old_child, sub, _join(path, key), errors, bad_paths)
        elif isinstance(value, list):
            errors.extend(_list_type_errors(value, schema, path))
            items = schema.get("items")
            if isinstance(items, Mapping):
                old_items = _correlate(old, schema)
                for index, item in enumerate(value):
                    old_item = old_items.get(_map_key(item, schema), kube_cel.NO_OLD) \
                        if old_items else kube_cel.NO_OLD
                    self._walk_extras(item, old_item, items, f"{path}[{index}]", errors,
                                      bad_paths)
        rules = self._rules.get(id(schema), [])
        if rules and _error_at_or_below(path, bad_paths):
            return  # the value is already refused; a rule over it would only add noise
        for rule in rules:
            if rule.compiled.uses_old_self and old is kube_cel.NO_OLD:
                continue  # transition rules only run on updates of existing values
            error_path = path
            if rule.field_path:
                error_path = (path + rule.field_path) if rule.field_path.startswith(("[", ".")) \
                    else _join(path, rule.field_path)
            try:
                holds = rule.compiled.evaluate(value, old)
                detail = rule.message
            except kube_cel.CelError as error:
                holds = False
                detail = f"{error} evaluating rule: {rule.compiled.source}"
            if not holds:
                errors.append(_rule_error(error_path, schema, detail, rule.reason))


def _error_at_or_below(path: str, bad_paths: set[str]) -> bool:
    if not path:
        return bool(bad_paths)
    return any(b == path or b.startswith((path + ".", path + "[")) for b in bad_paths)


def _rule_error(path: str, schema: Schema, detail: str, reason: str) -> FieldError:
    shown = str(schema.get("type") or "object")
    if reason == "FieldValueForbidden":
        return forbidden_field(path, detail)
    if reason == "FieldValueRequired":
        return required(path, detail)
    if reason == "FieldValueDuplicate":
        return FieldError(path, "Duplicate", f"Duplicate value: {detail}")
    return invalid(path, shown, detail)


def _map_key(item: Any, schema: Schema) -> tuple[Any, ...] | None:
    keys = schema.get("x-kubernetes-list-map-keys")
    if not isinstance(keys, list) or not isinstance(item, dict):
        return None
    return tuple(repr(item.get(k)) for k in keys)


def _correlate(old: Any, schema: Schema) -> dict[tuple[Any, ...] | None, Any]:
    """Old items of a map-list by key: the only list items CEL transition rules see."""
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(old, list):
        return {}
    return {_map_key(item, schema): item for item in old if _map_key(item, schema) is not None}


def _list_type_errors(value: list[Any], schema: Schema, path: str) -> Iterator[FieldError]:
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        seen: list[Any] = []
        for index, item in enumerate(value):
            if item in seen:
                yield duplicate(f"{path}[{index}]", item)
            else:
                seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: set[tuple[Any, ...]] = set()
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            key = _map_key(item, schema)
            if key is None:
                continue
            if key in seen_keys:
                yield duplicate(f"{path}[{index}]", {k: item.get(k) for k in keys})
            seen_keys.add(key)


# --- CustomResourceDefinition checks --------------------------------------------------------------

_PRINTER_TYPES: Final = ("integer", "number", "string", "boolean", "date")


def _structural_errors(schema: Any, path: str, *, root: bool) -> Iterator[FieldError]:
    """The parts of "structural schema" that matter for pruning: every specified field has a
    type (unless int-or-string or preserve-unknown-fields says otherwise)."""
    if not isinstance(schema, Mapping):
        yield invalid(path, schema, "must be an object")
        return
    has_type = isinstance(schema.get("type"), str) and schema.get("type")
    if not has_type and not root and not schema.get("x-kubernetes-int-or-string") and not \
            schema.get("x-kubernetes-preserve-unknown-fields"):
        yield required(f"{path}.type", "must not be empty for specified object fields")
    if root and schema.get("type") != "object":
        yield invalid(f"{path}.type", schema.get("type"), "must be object at the root")
    if "properties" in schema and "additionalProperties" in schema and \
            schema.get("additionalProperties") not in (False, None):
        yield forbidden_field(f"{path}.additionalProperties",
                              "additionalProperties and properties are mutual exclusive")
    for key, sub in (schema.get("properties") or {}).items():
        yield from _structural_errors(sub, f"{path}.properties[{key}]", root=False)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), Mapping):
            yield from _structural_errors(schema[key], f"{path}.{key}", root=False)
    for rule_index, entry in enumerate(schema.get("x-kubernetes-validations") or []):
        if not isinstance(entry, Mapping) or not entry.get("rule"):
            yield required(f"{path}.x-kubernetes-validations[{rule_index}].rule")


def validate_crd(crd: JsonObj) -> list[FieldError]:
    """What apiextensions validation refuses (a useful subset)."""
    errors: list[FieldError] = []
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    group = spec.get("group")
    names = spec.get("names") if isinstance(spec.get("names"), dict) else {}
    assert isinstance(names, dict)
    plural = names.get("plural")
    if not isinstance(group, str) or not group:
        errors.append(required("spec.group"))
    elif "." not in group:
        errors.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    else:
        errors.extend(invalid("spec.group", group, p) for p in dns_subdomain_problems(group))
    if not isinstance(plural, str) or not plural:
        errors.append(required("spec.names.plural"))
    else:
        errors.extend(invalid("spec.names.plural", plural, p) for p in dns_label_problems(plural))
    if not isinstance(names.get("kind"), str) or not names.get("kind"):
        errors.append(required("spec.names.kind"))
    singular = names.get("singular")
    if singular:
        errors.extend(
            invalid("spec.names.singular", singular, p) for p in dns_label_problems(str(singular))
        )
    name = (crd.get("metadata") or {}).get("name")
    if isinstance(group, str) and isinstance(plural, str) and name != f"{plural}.{group}":
        errors.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errors.append(not_supported("spec.scope", spec.get("scope"), ["Cluster", "Namespaced"]))
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        errors.append(required("spec.versions", "must have exactly one version marked as "
                                               "storage version"))
        return errors
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if len(storage) != 1:
        errors.append(invalid("spec.versions", [v.get("name") for v in versions
                                                if isinstance(v, dict)],
                              "must have exactly one version marked as storage version"))
    seen: set[str] = set()
    for index, version in enumerate(versions):
        path = f"spec.versions[{index}]"
        if not isinstance(version, dict):
            errors.append(invalid(path, version, "must be an object"))
            continue
        vname = version.get("name")
        if not isinstance(vname, str) or not vname:
            errors.append(required(f"{path}.name"))
        elif vname in seen:
            errors.append(duplicate(f"{path}.name", vname))
        else:
            seen.add(vname)
            errors.extend(invalid(f"{path}.name", vname, p) for p in dns_label_problems(vname))
        if "served" not in version:
            errors.append(required(f"{path}.served"))
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            errors.append(required(f"{path}.schema.openAPIV3Schema", "schemas are required"))
        else:
            errors.extend(
                _structural_errors(schema, f"{path}.schema.openAPIV3Schema", root=True)
            )
        for cindex, column in enumerate(version.get("additionalPrinterColumns") or []):
            cpath = f"{path}.additionalPrinterColumns[{cindex}]"
            if not isinstance(column, dict):
                errors.append(invalid(cpath, column, "must be an object"))
                continue
            for key in ("name", "type", "jsonPath"):
                if not column.get(key):
                    errors.append(required(f"{cpath}.{key}"))
            if column.get("type") and column.get("type") not in _PRINTER_TYPES:
                errors.append(not_supported(f"{cpath}.type", column.get("type"), _PRINTER_TYPES))
    return errors


def crd_status(crd: JsonObj, now: str) -> JsonObj:
    """The status the apiextensions controllers converge to, set at once."""
    spec = crd.get("spec") or {}
    names = dict(spec.get("names") or {})
    kind = str(names.get("kind", ""))
    names.setdefault("singular", kind.lower())
    names.setdefault("listKind", f"{kind}List")
    storage = [v.get("name") for v in spec.get("versions") or [] if v.get("storage")]
    return {
        "acceptedNames": names,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": now,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": now,
            },
        ],
        "storedVersions": storage,
    }

