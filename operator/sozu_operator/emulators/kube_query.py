"""Reading side of the emulator: label and field selectors, the JSONPath subset printer
columns use, and `meta.k8s.io/v1 Table` rendering for `kubectl get`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sozu_operator.emulators.kube_meta import JsonObj, age_of, bad_request, parse_time

# --- label selectors ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present
            case "gt" | "lt":
                try:
                    number = int(str(value))
                except ValueError:
                    return False
                limit = int(self.values[0])
                return number > limit if self.op == "gt" else number < limit
        return False


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


_SET_RE: Final = re.compile(r"^([^\s!=<>()]+)\s+(in|notin)\s*\((.*)\)$")
_EQ_RE: Final = re.compile(r"^([^\s!=<>()]+)\s*(==|=|!=|>|<)\s*([^\s,()]*)$")
_KEY_RE: Final = re.compile(r"^(!)?\s*([^\s!=<>(),]+)$")


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text:
        return []
    requirements = []
    for part in _split_top(text):
        if match := _SET_RE.match(part):
            values = tuple(v.strip() for v in match.group(3).split(",") if v.strip())
            requirements.append(Requirement(match.group(1), match.group(2), values))
        elif match := _EQ_RE.match(part):
            op = {"==": "=", ">": "gt", "<": "lt"}.get(match.group(2), match.group(2))
            if op in ("gt", "lt") and not re.fullmatch(r"-?\d+", match.group(3)):
                raise bad_request(f"unable to parse requirement: for 'gt', 'lt' operators, "
                                  f"the value must be an integer: {part!r}")
            requirements.append(Requirement(match.group(1), op, (match.group(3),)))
        elif match := _KEY_RE.match(part):
            requirements.append(Requirement(match.group(2), "!" if match.group(1) else "exists"))
        else:
            raise bad_request(f"unable to parse requirement: {part!r}")
    return requirements


def labels_match(requirements: Sequence[Requirement], obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


# --- field selectors ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    value: str
    negated: bool


def _split_escaped(text: str, separator: str) -> list[str]:
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_field_selector(text: str | None) -> list[FieldRequirement]:
    if not text:
        return []
    requirements = []
    for part in _split_escaped(text, ","):
        part = part.strip()
        if not part:
            continue
        match = re.match(r"^(.+?)(!=|==|=)(.*)$", part)
        if match is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        requirements.append(FieldRequirement(
            match.group(1).strip(), _unescape(match.group(3).strip()), match.group(2) == "!="
        ))
    return requirements


FieldGetter = Callable[[Mapping[str, Any], str], str | None]


def _dig(obj: Mapping[str, Any], dotted: str) -> Any:
    node: Any = obj
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# Per-kind selectable fields beyond metadata.name / metadata.namespace (apiserver's field sets).
BUILTIN_FIELDS: Final[Mapping[tuple[str, str], tuple[str, ...]]] = {
    ("", "secrets"): ("type",),
    ("", "events"): (
        "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
        "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
        "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type",
    ),
    ("events.k8s.io", "events"): (
        "regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid",
        "regarding.apiVersion", "regarding.resourceVersion", "regarding.fieldPath", "reason",
        "reportingController", "type",
    ),
    ("", "pods"): (
        "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
        "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName",
    ),
    ("", "namespaces"): ("status.phase",),
    ("", "nodes"): ("spec.unschedulable",),
    ("", "replicationcontrollers"): ("status.replicas",),
    ("apps", "replicasets"): ("status.replicas",),
    ("batch", "jobs"): ("status.successful",),
    ("certificates.k8s.io", "certificatesigningrequests"): ("spec.signerName",),
}


def field_value(obj: Mapping[str, Any], name: str, allowed: Mapping[str, str]) -> str:
    """`allowed` maps selectable field names to the JSON path they read."""
    if name == "source" and "source" in allowed:  # core Event: source is source.component
        return _text(_dig(obj, "source.component"))
    return _text(_dig(obj, allowed[name].lstrip(".")))


def fields_match(
    requirements: Sequence[FieldRequirement], obj: Mapping[str, Any], allowed: Mapping[str, str]
) -> bool:
    for requirement in requirements:
        value = field_value(obj, requirement.field, allowed)
        if (value == requirement.value) == requirement.negated:
            return False
    return True


def check_fields(requirements: Sequence[FieldRequirement], allowed: Mapping[str, str]) -> None:
    for requirement in requirements:
        if requirement.field not in allowed:
            raise bad_request(f"field label not supported: {requirement.field}")


# --- JSONPath (the subset printer columns use) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Step:
    kind: str  # "field", "index", "all", "filter"
    arg: Any = None


_FILTER_RE: Final = re.compile(
    r"""^@((?:\.[A-Za-z0-9_\-]+|\[['"][^'"]+['"]\])+)\s*(?:(==|!=|<=|>=|<|>)\s*(.+))?$"""
)


def _parse_literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


def compile_jsonpath(path: str) -> list[_Step]:
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if text.startswith("$"):
        text = text[1:]
    steps: list[_Step] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == ".":
            match = re.match(r"\.([A-Za-z0-9_\-]+)", text[pos:])
            if match is None:
                raise ValueError(f"invalid JSONPath {path!r} at {pos}")
            steps.append(_Step("field", match.group(1)))
            pos += match.end()
        elif char == "[":
            end = _closing_bracket(text, pos)
            inner = text[pos + 1:end].strip()
            pos = end + 1
            if inner == "*":
                steps.append(_Step("all"))
            elif re.fullmatch(r"-?\d+", inner):
                steps.append(_Step("index", int(inner)))
            elif inner[:1] in "'\"" and inner[-1:] == inner[:1]:
                steps.append(_Step("field", inner[1:-1]))
            elif inner.startswith("?(") and inner.endswith(")"):
                match = _FILTER_RE.match(inner[2:-1].strip())
                if match is None:
                    raise ValueError(f"unsupported JSONPath filter in {path!r}")
                sub = compile_jsonpath(match.group(1))
                literal = _parse_literal(match.group(3)) if match.group(2) else None
                steps.append(_Step("filter", (sub, match.group(2), literal)))
            else:
                raise ValueError(f"unsupported JSONPath segment [{inner}] in {path!r}")
        else:
            raise ValueError(f"invalid JSONPath {path!r} at {pos}")
    return steps


def _closing_bracket(text: str, start: int) -> int:
    depth, quote = 0, ""
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced brackets in JSONPath {text!r}")


_MISSING: Final = object()


def _compare(left: Any, op: str, right: Any) -> bool:
    try:
        match op:
            case "==":
                return bool(left == right)
            case "!=":
                return bool(left != right)
            case "<":
                return bool(left < right)
            case "<=":
                return bool(left <= right)
            case ">":
                return bool(left > right)
            case ">=":
                return bool(left >= right)
    except TypeError:
        return False
    return False


def eval_jsonpath(steps: Sequence[_Step], value: Any) -> list[Any]:
    current = [value]
    for step in steps:
        following: list[Any] = []
        for node in current:
            if step.kind == "field":
                if isinstance(node, Mapping) and step.arg in node:
                    following.append(node[step.arg])
            elif step.kind == "index":
                if isinstance(node, list) and -len(node) <= step.arg < len(node):
                    following.append(node[step.arg])
            elif step.kind == "all":
                if isinstance(node, list):
                    following.extend(node)
                elif isinstance(node, Mapping):
                    following.extend(node.values())
            elif step.kind == "filter" and isinstance(node, list):
                sub, op, literal = step.arg
                for item in node:
                    found = eval_jsonpath(sub, item)
                    if op is None:
                        if found:
                            following.append(item)
                    elif found and _compare(found[0], op, literal):
                        following.append(item)
        current = following
    return current


# --- Table ----------------------------------------------------------------------------------------

CellFn = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    cell: CellFn
    format: str = ""
    description: str = ""
    priority: int = 0

    def definition(self) -> JsonObj:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


NAME_COLUMN: Final = Column(
    "Name", "string", lambda o: (o.get("metadata") or {}).get("name"), format="name",
    description="Name must be unique within a namespace. Is required when creating resources, "
                "although some resources may allow a client to request the generation of an "
                "appropriate name automatically. Name is primarily intended for creation "
                "idempotence and configuration definition. Cannot be updated. More info: "
                "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
)
AGE_COLUMN: Final = Column(
    "Age", "string", lambda o: age_of((o.get("metadata") or {}).get("creationTimestamp")),
    description="CreationTimestamp is a timestamp representing the server time when this object "
                "was created.",
)


def _json_cell(column_type: str, value: Any) -> Any:
    """apiextensions' cellForJSONValue: typed cells, dates shown as ages."""
    match column_type:
        case "integer":
            if isinstance(value, bool):
                return None
            if isinstance(value, int):
                return value
            if isinstance(value, float):
                return int(value)
        case "number":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
        case "boolean":
            if isinstance(value, bool):
                return value
        case "date":
            if isinstance(value, str):
                parsed = parse_time(value)
                return age_of(value) if parsed is not None else "<invalid>"
    return None


def printer_column(spec: Mapping[str, Any]) -> Column:
    """A CRD additionalPrinterColumn."""
    steps = compile_jsonpath(str(spec.get("jsonPath", "")))
    column_type = str(spec.get("type", "string"))

    def cell(obj: Mapping[str, Any]) -> Any:
        found = eval_jsonpath(steps, obj)
        if not found or found[0] is None:
            return None
        value = found[0]
        if column_type == "string":
            if isinstance(value, str):
                return value
            return json.dumps(value, separators=(",", ":")) if isinstance(
                value, list | dict) else _text(value)
        return _json_cell(column_type, value)

    return Column(
        str(spec.get("name", "")), column_type, cell,
        format=str(spec.get("format", "")), description=str(spec.get("description", "")),
        priority=int(spec.get("priority", 0) or 0),
    )


def _count(path: str) -> CellFn:
    return lambda o: len(_dig(o, path) or {})


def _service_ports(obj: Mapping[str, Any]) -> str:
    ports = _dig(obj, "spec.ports") or []
    texts = []
    for port in ports:
        node_port = f":{port['nodePort']}" if port.get("nodePort") else ""
        texts.append(f"{port.get('port')}{node_port}/{port.get('protocol', 'TCP')}")
    return ",".join(texts) or "<none>"


def _slice_ports(obj: Mapping[str, Any]) -> str:
    ports = [str(p.get("port")) for p in obj.get("ports") or [] if p.get("port") is not None]
    return ",".join(ports) or "<unset>"


def _slice_endpoints(obj: Mapping[str, Any]) -> str:
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    if not addresses:
        return "<unset>"
    shown = ",".join(addresses[:3])
    return shown + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")


def _event_object(obj: Mapping[str, Any]) -> str:
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _last_seen(obj: Mapping[str, Any]) -> str:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        if isinstance(obj.get(key), str):
            return age_of(obj[key])
    return age_of((obj.get("metadata") or {}).get("creationTimestamp"))


def _created_at(obj: Mapping[str, Any]) -> Any:
    return (obj.get("metadata") or {}).get("creationTimestamp")


BUILTIN_COLUMNS: Final[Mapping[tuple[str, str], tuple[Column, ...]]] = {
    ("", "namespaces"): (
        NAME_COLUMN, Column("Status", "string", lambda o: _dig(o, "status.phase")), AGE_COLUMN),
    ("", "secrets"): (
        NAME_COLUMN, Column("Type", "string", lambda o: o.get("type")),
        Column("Data", "string", _count("data")), AGE_COLUMN),
    ("", "configmaps"): (NAME_COLUMN, Column("Data", "string", _count("data")), AGE_COLUMN),
    ("", "services"): (
        NAME_COLUMN, Column("Type", "string", lambda o: _dig(o, "spec.type")),
        Column("Cluster-IP", "string", lambda o: _dig(o, "spec.clusterIP") or "<none>"),
        Column("External-IP", "string", lambda o: ",".join(
            _dig(o, "spec.externalIPs") or []) or "<none>"),
        Column("Port(s)", "string", _service_ports), AGE_COLUMN,
        Column("Selector", "string", lambda o: ",".join(
            f"{k}={v}" for k, v in (_dig(o, "spec.selector") or {}).items()) or "<none>",
            priority=1)),
    ("discovery.k8s.io", "endpointslices"): (
        NAME_COLUMN, Column("AddressType", "string", lambda o: o.get("addressType")),
        Column("Ports", "string", _slice_ports), Column("Endpoints", "string", _slice_endpoints),
        AGE_COLUMN),
    ("", "pods"): (
        NAME_COLUMN,
        Column("Ready", "string", lambda o: "{}/{}".format(
            sum(1 for s in _dig(o, "status.containerStatuses") or [] if s.get("ready")),
            len(_dig(o, "spec.containers") or []))),
        Column("Status", "string", lambda o: _dig(o, "status.phase")),
        Column("Restarts", "integer", lambda o: sum(
            int(s.get("restartCount", 0)) for s in _dig(o, "status.containerStatuses") or [])),
        AGE_COLUMN),
    ("", "events"): (
        Column("Last Seen", "string", _last_seen),
        Column("Type", "string", lambda o: o.get("type")),
        Column("Reason", "string", lambda o: o.get("reason")),
        Column("Object", "string", _event_object),
        Column("Message", "string", lambda o: o.get("message")),
        Column("Name", "string", NAME_COLUMN.cell, format="name", priority=1)),
    ("apiextensions.k8s.io", "customresourcedefinitions"): (
        NAME_COLUMN, Column("Created At", "date", _created_at)),
    ("coordination.k8s.io", "leases"): (
        NAME_COLUMN, Column("Holder", "string", lambda o: _dig(o, "spec.holderIdentity")),
        AGE_COLUMN),
}


def partial_metadata(obj: Mapping[str, Any]) -> JsonObj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def render_table(
    objects: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    *,
    resource_version: str,
    include_object: str,
    continue_token: str | None = None,
) -> JsonObj:
    rows = []
    for obj in objects:
        row: JsonObj = {"cells": [column.cell(obj) for column in columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = partial_metadata(obj)
        rows.append(row)
    metadata: JsonObj = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [column.definition() for column in columns],
        "rows": rows,
    }

