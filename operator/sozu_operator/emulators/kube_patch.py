"""The patch formats the API server accepts: JSON merge patch (RFC 7386), JSON patch
(RFC 6902) and strategic merge patch (built-in kinds only).

Strategic merge patch is approximated: list fields merge by key from a small table of the
built-in fields kubectl actually touches (containers/env/volumes by name, ports by
port/containerPort, ownerReferences by uid, conditions by type, finalizers as a set); any other
list is replaced, as with a merge patch. The directives `$patch` (replace/delete/merge),
`$retainKeys`, `$deleteFromPrimitiveList/<f>` and `$setElementOrder/<f>` are honoured.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from sozu_operator.emulators.kube_meta import ApiError, bad_request

# --- JSON merge patch -----------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, null deletes, anything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- JSON patch -----------------------------------------------------------------------------------


def _invalid_patch(message: str) -> ApiError:
    # The API server answers failed JSON patches (incl. a failed `test`) with a generic 422.
    return ApiError(
        422,
        "Invalid",
        f"the server rejected our request due to an error in our request: {message}",
        details={"causes": [{"reason": "FieldValueInvalid", "message": message}]},
    )


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise bad_request(f"invalid JSON pointer: {path!r}")
    if path == "":
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str, op: str) -> Any:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise _invalid_patch(f"{op} operation does not apply: doc is missing path: {path}")
    return node


def _get(doc: Any, parts: list[str], path: str, op: str) -> Any:
    if not parts:
        return doc
    parent = _parent(doc, parts, path, op)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise _invalid_patch(f"{op} operation does not apply: doc is missing path: {path}")


def _add(doc: Any, parts: list[str], value: Any, path: str, op: str) -> Any:
    if not parts:
        return value
    parent = _parent(doc, parts, path, op)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _invalid_patch(f"{op} operation does not apply: index out of range: {path}")
    else:
        raise _invalid_patch(f"{op} operation does not apply: doc is missing path: {path}")
    return doc


def _remove(doc: Any, parts: list[str], path: str, op: str) -> Any:
    if not parts:
        raise _invalid_patch(f"{op} operation does not apply: cannot remove the root")
    parent = _parent(doc, parts, path, op)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise _invalid_patch(f"{op} operation does not apply: doc is missing path: {path}")


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902, applied to a copy; a failed `test` or a missing path is a 422."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict):
            raise bad_request(f"invalid json patch operation: {operation!r}")
        op = operation.get("op")
        path = operation.get("path")
        parts = _pointer(path)
        if op in ("add", "replace", "test") and "value" not in operation:
            raise bad_request(f"{op} operation has no value: {path}")
        value = copy.deepcopy(operation.get("value"))
        if op == "add":
            doc = _add(doc, parts, value, str(path), "add")
        elif op == "remove":
            _remove(doc, parts, str(path), "remove")
        elif op == "replace":
            _get(doc, parts, str(path), "replace")
            if parts:
                _remove(doc, parts, str(path), "replace")
            doc = _add(doc, parts, value, str(path), "replace")
        elif op in ("move", "copy"):
            source = operation.get("from")
            source_parts = _pointer(source)
            moved = copy.deepcopy(_get(doc, source_parts, str(source), str(op)))
            if op == "move":
                _remove(doc, source_parts, str(source), "move")
            doc = _add(doc, parts, moved, str(path), str(op))
        elif op == "test":
            try:
                current = _get(doc, parts, str(path), "test")
            except ApiError:
                raise _invalid_patch(f"testing value {path} failed: test failed") from None
            if not _json_equal(current, value):
                raise _invalid_patch(f"testing value {path} failed: test failed")
        else:
            raise bad_request(f"unexpected json patch operation: {op!r}")
    return doc


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


# --- strategic merge patch ------------------------------------------------------------------------

# field name -> merge key ("" = a set of primitives, merged by value).
_MERGE_KEYS: Final[Mapping[str, str]] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "conditions": "type",
    "finalizers": "",
    "ports": "*port",  # containerPort for containers, port for services: decided per item
}


def _merge_key(field: str, items: list[Any]) -> str | None:
    key = _MERGE_KEYS.get(field)
    if key == "*port":
        sample = next((i for i in items if isinstance(i, dict)), {})
        return "containerPort" if "containerPort" in sample else "port"
    return key


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    return _smp_map(target if isinstance(target, dict) else {}, patch)


def _smp_map(original: dict[str, Any], patch: dict[str, Any]) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    body = {k: v for k, v in patch.items() if k != "$patch"}
    if directive == "replace":
        return {k: v for k, v in copy.deepcopy(body).items() if not k.startswith("$")}
    result = dict(original)
    retain = body.pop("$retainKeys", None)
    orders = {k[len("$setElementOrder/"):]: v for k, v in body.items()
              if k.startswith("$setElementOrder/")}
    deletions = {k[len("$deleteFromPrimitiveList/"):]: v for k, v in body.items()
                 if k.startswith("$deleteFromPrimitiveList/")}
    for key, value in body.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            merged = _smp_map(current if isinstance(current, dict) else {}, value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _smp_list(key, result.get(key), value)
        else:
            result[key] = value
    for key, values in deletions.items():
        if isinstance(result.get(key), list) and isinstance(values, list):
            result[key] = [item for item in result[key] if item not in values]
    for key, order in orders.items():
        if isinstance(result.get(key), list) and isinstance(order, list):
            result[key] = _reorder(key, result[key], order)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(field: str, original: Any, patch: list[Any]) -> list[Any]:
    current = list(original) if isinstance(original, list) else []
    key = _merge_key(field, patch + current)
    if key is None:
        return [_strip_directives(copy.deepcopy(item)) for item in patch]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch
                if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    if key == "":
        return current + [copy.deepcopy(i) for i in patch if i not in current]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            current.append(copy.deepcopy(item))
            continue
        index = next((n for n, old in enumerate(current)
                      if isinstance(old, dict) and old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                current.pop(index)
            continue
        if index is None:
            current.append(_strip_directives(copy.deepcopy(item)))
        else:
            merged = _smp_map(current[index], item)
            current[index] = merged
    return current


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _reorder(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = _merge_key(field, items)

    def identity(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [identity(entry) for entry in order]
    placed = [next(i for i in items if identity(i) == w) for w in wanted
              if any(identity(i) == w for i in items)]
    rest = [i for i in items if identity(i) not in wanted]
    return placed + rest
