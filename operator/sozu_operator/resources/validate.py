"""Raw resource objects (dicts from the API server or from YAML) → typed specs, or field errors.

Three layers, each reporting `FieldError`s with a YAML-style path:

1. the spec schema from `schema.py` (jsonschema, Draft 2020-12), made strict about unknown fields
   because a typo in a GitOps file must not pass silently (the API server prunes them instead);
2. the CEL rules of the same schema, through their Python twins below, and the list-type
   (`set`/`map`) uniqueness the API server enforces;
3. semantic checks a schema cannot express: addresses parse, regexes compile, PEM looks like
   PEM, DNS labels fit, duplicates after normalisation.

`parse_resource` never raises on bad input: whatever it is given (wrong types, cycles aside,
non-string keys, floats, bytes, deep nesting), the result is `Parsed` or `Invalid`.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import Enum
from functools import cache, lru_cache
from typing import Any, Final, TypeVar

import jsonschema
from jsonschema import validators

from sozu_operator.proxy.model import (
    Header,
    HeaderPosition,
    ListenerType,
    LoadBalancing,
    LoadMetric,
    PathRuleKind,
    ProxyProtocol,
    RedirectPolicy,
    RedirectScheme,
    RulePosition,
    SocketAddress,
    TlsVersion,
    pairs,
)
from sozu_operator.resources import schema as sch
from sozu_operator.resources.models import (
    BackendSpec,
    CertificateSpec,
    ClusterSpec,
    FieldError,
    FrontendSpec,
    Invalid,
    Parsed,
    PathSpec,
    ResourceMeta,
    ResourceRef,
    SecretRef,
    ServiceRef,
    TlsMaterial,
)

PathPart = str | int
Path = tuple[PathPart, ...]
E = TypeVar("E", bound=Enum)
Json = Any  # a value made of dict[str, Json], list[Json], str, int, float, bool, None

MAX_DEPTH: Final = 64
MAX_MESSAGE: Final = 300
UNKNOWN_KIND: Final = "(unknown kind)"
NO_NAME: Final = "(no name)"
BAD_NAMESPACE: Final = "(invalid namespace)"
INTERNAL_ERROR: Final = "internal error while validating (please report)"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Key material must never reach a message (and from there logs, status conditions, Events).
# A value is withheld when it merely mentions a private key (it is user data, perhaps a key
# pasted into the wrong field); a finished message is cut at a private key's PEM armour, so the
# validator's own hints ("-----BEGIN … PRIVATE KEY-----") stay readable.
_KEY_HINT = "PRIVATE KEY"
_KEY_ARMOUR = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
WITHHELD: Final = "<withheld: looks like a private key>"
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----[A-Za-z0-9+/=\s]+-----END \1-----")
_LOOKAROUND = re.compile(r"\(\?(=|!|<=|<!|P=)|(?<!\\)\\[1-9]")


def format_path(parts: Sequence[PathPart]) -> str:
    """("spec", "backends", 1, "address") → "spec.backends[1].address"."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{WITHHELD if _KEY_HINT in part else repr(part)}]"
    return text


def show(value: object, limit: int = 60) -> str:
    """A value as it appears in a message: repr, cut short (garbage can be huge), and never
    a private key."""
    text = repr(value)
    if _KEY_HINT in text:
        return WITHHELD
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Errors:
    """Errors of one resource, in the order found, one message per (path, message)."""

    def __init__(self) -> None:
        self.items: dict[tuple[Path, str], None] = {}

    def add(self, path: Sequence[PathPart], message: str) -> None:
        # A safety net for messages quoting values without `show` (e.g. jsonschema's own).
        armour = _KEY_ARMOUR.search(message)
        if armour is not None:
            message = message[: armour.start()] + WITHHELD
        # Messages quote user values; keep them readable whatever the input size.
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        self.items[(tuple(path), message)] = None

    def paths(self) -> set[Path]:
        return {path for path, _ in self.items}

    def __bool__(self) -> bool:
        return bool(self.items)


# --- 0. turning anything into plain JSON -------------------------------------------------------


def _plain(value: object, path: Path, errors: _Errors, depth: int = 0) -> Json:
    """A JSON-plain copy of `value`; what cannot be JSON is reported and dropped (None)."""
    if depth > MAX_DEPTH:
        errors.add(path, f"nested more than {MAX_DEPTH} levels deep")
        return None
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)  # an IntEnum or other int subclass becomes a plain int
    if isinstance(value, float):
        if not math.isfinite(value):
            errors.add(path, f"{show(value)} is not a finite number")
            return None
        return value
    if isinstance(value, Mapping):
        result: dict[str, Json] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                errors.add(path, f"keys must be strings, got {show(key)}")
                continue
            result[key] = _plain(item, (*path, key), errors, depth + 1)
        return result
    if isinstance(value, list | tuple):
        return [_plain(item, (*path, index), errors, depth + 1) for index, item in enumerate(value)]
    errors.add(path, f"unsupported value of type {type(value).__name__}")
    return None


def _is_plain(value: Json, depth: int = 0) -> bool:
    """Whether `_plain` would return an equal copy of `value`, reporting nothing: it holds only
    exact JSON types (as parsed from JSON or YAML), string keys and finite floats, and is not
    too deep. Such a value is used as it is: the parser only reads it and keeps none of its
    containers, and checking is cheaper than copying."""
    if depth > MAX_DEPTH:
        return False
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not _is_plain(item, depth + 1):
                return False
        return True
    if kind is list:
        return all(_is_plain(item, depth + 1) for item in value)
    return kind is float and math.isfinite(value)


# --- 1. the schema -----------------------------------------------------------------------------


def _strict(node: Json) -> Json:
    """A copy of a schema that refuses unknown fields wherever it lists known ones."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    copied = {key: _strict(value) for key, value in node.items()}
    if "properties" in copied and "additionalProperties" not in copied:
        copied["additionalProperties"] = False
    return copied


@cache
def _python_pattern(pattern: str) -> re.Pattern[str]:
    # RE2's `$` (the API server's) matches only at the very end; Python's also before a final
    # newline, which would let "example.com\n" through.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern_keyword(
    validator: Any, pattern: str, instance: Json, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if isinstance(instance, str) and not _python_pattern(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator, validators={"pattern": _pattern_keyword}
)


@cache
def _spec_validator(kind: str) -> Any:
    return _Validator(_strict(sch.spec_schema(kind)))


# jsonschema re-walks the schema for every instance (about half of a valid resource's parse
# time). Almost every resource is valid, so a check compiled once into closures decides first,
# and only a spec it rejects goes through jsonschema, which then yields the error list as
# before. The check may say "invalid" of a valid spec (a slow path, not a wrong one), never
# the converse: it refuses to compile a node using any keyword jsonschema asserts that it does
# not implement for that node's type, and its type checks are exact (a str subclass, whose `==`
# or `len` may do anything, is left to jsonschema).

_Check = Callable[[Json], bool]


class _Unsupported(Exception):
    """The schema uses a keyword or a form the compiled check does not implement."""


# jsonschema's Draft 2020-12 types on values of exact JSON types: an integral float is an
# integer; a bool is neither an integer nor a number.
_TYPE_CHECKS: Final[Mapping[str, _Check]] = {
    "string": lambda value: type(value) is str,
    "integer": lambda value: type(value) is int
    or (type(value) is float and value.is_integer()),
    "number": lambda value: type(value) is int or type(value) is float,
    "boolean": lambda value: type(value) is bool,
    "object": lambda value: type(value) is dict,
    "array": lambda value: type(value) is list,
    "null": lambda value: value is None,
}
# The asserting keywords implemented per node type. Once a value has the node's type, the
# keywords of other types are no-ops in jsonschema, but they are refused all the same to keep
# this short. `format` asserts nothing: our validator has no format checker.
_KEYWORDS: Final[Mapping[str | None, frozenset[str]]] = {
    "string": frozenset({"type", "format", "enum", "minLength", "maxLength", "pattern"}),
    "integer": frozenset({"type", "format", "minimum", "maximum"}),
    "number": frozenset({"type", "format", "minimum", "maximum"}),
    "boolean": frozenset({"type"}),
    "null": frozenset({"type"}),
    "array": frozenset({"type", "minItems", "maxItems", "items"}),
    "object": frozenset(
        {"type", "properties", "additionalProperties", "required", "maxProperties"}
    ),
    None: frozenset({"anyOf"}),
}


def _accept(value: Json) -> bool:
    return True


def _compile(node: Json) -> _Check:
    """A predicate true only of values in which `_Validator(node)` finds no error."""
    if not isinstance(node, dict):
        raise _Unsupported(f"schema {node!r}")
    kind = node.get("type")
    if not (kind is None or (isinstance(kind, str) and kind in _TYPE_CHECKS)):
        raise _Unsupported(f"type {kind!r}")
    unsupported = node.keys() & _Validator.VALIDATORS.keys() - _KEYWORDS[kind]
    if unsupported:
        raise _Unsupported(", ".join(sorted(unsupported)))
    match kind:
        case "string":
            return _string_check(node)
        case "integer" | "number":
            return _number_check(node, _TYPE_CHECKS[kind])
        case "array":
            return _array_check(node)
        case "object":
            return _object_check(node)
        case None if "anyOf" in node:
            options = tuple(_compile(option) for option in node["anyOf"])
            return lambda value: any(option(value) for option in options)
        case None:
            return _accept
        case _:
            return _TYPE_CHECKS[kind]


def _string_check(node: Mapping[str, Json]) -> _Check:
    shortest, longest = node.get("minLength", 0), node.get("maxLength", math.inf)
    search = _python_pattern(node["pattern"]).search if "pattern" in node else None
    members: frozenset[str] | None = None
    if "enum" in node:
        # jsonschema's `equal` compares a string to anything with `==`: only an equal str passes.
        if not all(type(choice) is str for choice in node["enum"]):
            raise _Unsupported("enum of non-strings")
        members = frozenset(node["enum"])

    def check_string(value: Json) -> bool:
        return (
            type(value) is str
            and shortest <= len(value) <= longest
            and (search is None or search(value) is not None)  # as `_pattern_keyword` does
            and (members is None or value in members)
        )

    return check_string


def _number_check(node: Mapping[str, Json], is_type: _Check) -> _Check:
    low, high = node.get("minimum", -math.inf), node.get("maximum", math.inf)
    # `low <= value` is jsonschema's `not value < low` for all but NaN, which no integer is
    # and which a "number" rejects here (a slow path, not a wrong one).
    return lambda value: is_type(value) and low <= value <= high


def _array_check(node: Mapping[str, Json]) -> _Check:
    shortest, longest = node.get("minItems", 0), node.get("maxItems", math.inf)
    item_check = _compile(node["items"]) if "items" in node else _accept
    return lambda value: (
        type(value) is list and shortest <= len(value) <= longest and all(map(item_check, value))
    )


def _object_check(node: Mapping[str, Json]) -> _Check:
    most = node.get("maxProperties", math.inf)
    required = tuple(node.get("required", ()))
    known = {name: _compile(child) for name, child in node.get("properties", {}).items()}
    extra = node.get("additionalProperties", True)
    other = _accept if extra is True else None if extra is False else _compile(extra)

    def check_object(value: Json) -> bool:
        if type(value) is not dict or len(value) > most:
            return False
        for name in required:
            if name not in value:
                return False
        for name, item in value.items():
            field_check = known.get(name, other)
            if field_check is None or not field_check(item):
                return False
        return True

    return check_object


@cache
def _spec_check(kind: str) -> _Check | None:
    """The compiled check of a kind's strict spec schema; None if the schema is beyond it."""
    try:
        return _compile(_strict(sch.spec_schema(kind)))
    except _Unsupported:
        return None


def _surely_valid(kind: str, spec: Json) -> bool:
    check = _spec_check(kind)
    return check is not None and check(spec)


_TYPE_NAMES: Final = {
    "string": "a string",
    "integer": "an integer",
    "boolean": "a boolean",
    "object": "an object",
    "array": "a list",
    "number": "a number",
}


def _json_type(value: Json) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case _:
            return "an object"


def _schema_errors(kind: str, spec: Json, errors: _Errors, pattern_errors: _Errors) -> None:
    """Schema violations into `errors`, except failed patterns, which go to `pattern_errors`
    (a semantic check at the same path usually says better what is wrong)."""
    if _surely_valid(kind, spec):
        return
    for error in _spec_validator(kind).iter_errors(spec):
        path: Path = ("spec", *error.absolute_path)
        value, keyword, expected = error.instance, error.validator, error.validator_value
        match keyword:
            case "required":
                for name in expected:
                    if isinstance(value, dict) and name not in value:
                        errors.add((*path, name), "is required")
            case "additionalProperties":
                known = error.schema.get("properties", {})
                for name in value:
                    if name not in known:
                        errors.add((*path, name), "unknown field")
            case "type":
                wanted = _TYPE_NAMES.get(str(expected), str(expected))
                errors.add(path, f"must be {wanted}, got {_json_type(value)}")
            case "enum":
                errors.add(path, f"{show(value)} is not one of {', '.join(map(str, expected))}")
            case "pattern":
                hint = sch.PATTERN_HINTS.get(expected, f"matching {expected}")
                pattern_errors.add(path, f"{show(value)} is not {hint}")
            case "minLength":
                errors.add(
                    path,
                    "must not be empty"
                    if expected == 1
                    else f"must be at least {expected} characters long",
                )
            case "maxLength":
                errors.add(path, f"must be at most {expected} characters long "
                                 f"(got {len(value)})")
            case "minimum":
                errors.add(path, f"must be at least {expected}, got {show(value)}")
            case "maximum":
                errors.add(path, f"must be at most {expected}, got {show(value)}")
            case "minItems":
                errors.add(path, f"needs at least {expected} item{'s' * (expected != 1)}")
            case "maxItems":
                errors.add(path, f"has more than {expected} items")
            case "maxProperties":
                errors.add(path, f"has more than {expected} entries")
            case "anyOf":
                errors.add(path, f"must be an integer or a string, got {_json_type(value)}")
            case _:
                errors.add(path, str(error.message)[:200])


# --- 2. CEL twins and list types ---------------------------------------------------------------


def _no_service_with_backends(spec: dict[str, Json]) -> bool:
    backends = spec.get("backends")
    return "service" not in spec or not isinstance(backends, list) or not backends


def _port_in_range(service: dict[str, Json]) -> bool:
    port = service.get("port")
    return not isinstance(port, int) or isinstance(port, bool) or 1 <= port <= 65535


def _is_tcp(spec: dict[str, Json]) -> bool:
    return spec.get("protocol") == "TCP"


def _tcp_forbids(field: str) -> Callable[[dict[str, Json]], bool]:
    # `_is_tcp` inlined: a frontend goes through one such rule per HTTP-only field.
    return lambda spec: spec.get("protocol") != "TCP" or field not in spec


def _path_slash(path: dict[str, Json]) -> bool:
    value = path.get("value")
    return (
        path.get("kind") == "REGEX"
        or not isinstance(value, str)
        or value == ""
        or value.startswith("/")
    )


# Keyed by the CEL text, so that a rule added to the schema without a twin is found by a test
# (and reported as an internal error rather than silently skipped).
CEL_TWINS: Final[Mapping[str, Callable[[dict[str, Json]], bool]]] = {
    sch.RULE_SERVICE_OR_BACKENDS.rule: _no_service_with_backends,
    sch.RULE_SERVICE_PORT_RANGE.rule: _port_in_range,
    sch.RULE_HTTP_NEEDS_HOSTNAME.rule: lambda spec: _is_tcp(spec) or "hostname" in spec,
    **{rule.rule: _tcp_forbids(field) for field, rule in sch.TCP_FORBIDDEN_RULES.items()},
    sch.RULE_PATH_SLASH.rule: _path_slash,
    sch.RULE_RESERVED_TAGS.rule: lambda tags: not any(
        key.startswith(sch.RESERVED_TAG_PREFIX) for key in tags
    ),
    sch.RULE_CERTIFICATE_SOURCE.rule: lambda spec: ("certificate" in spec)
    != ("secretRef" in spec),
    sch.RULE_KEY_WITH_INLINE.rule: lambda spec: ("certificate" in spec) == ("key" in spec),
    sch.RULE_CHAIN_WITH_INLINE.rule: lambda spec: "secretRef" not in spec or "chain" not in spec,
}


def _rule_nodes(node: Json) -> dict[str, Json] | None:
    """The parts of a schema node that `_rule_and_list_errors` acts on (rules, set/map lists),
    or None when its subtree has none: the walk then skips most of a spec's fields."""
    if not isinstance(node, dict):
        return None
    kept: dict[str, Json] = {}
    if "x-kubernetes-validations" in node:
        kept["x-kubernetes-validations"] = node["x-kubernetes-validations"]
    properties: dict[str, Json] = {}
    for name, child in node.get("properties", {}).items():
        kept_child = _rule_nodes(child)
        if kept_child is not None:
            properties[name] = kept_child
    if properties:
        kept["properties"] = properties
    extra = _rule_nodes(node.get("additionalProperties"))
    if extra is not None:
        kept["additionalProperties"] = extra
    if isinstance(node.get("items"), dict):
        items = _rule_nodes(node["items"])
        if node.get("x-kubernetes-list-type") in ("set", "map"):
            kept["items"] = items or {}
            for key in ("x-kubernetes-list-type", "x-kubernetes-list-map-keys"):
                if key in node:
                    kept[key] = node[key]
        elif items is not None:
            kept["items"] = items
    return kept or None


@cache
def _spec_rule_nodes(kind: str) -> dict[str, Json]:
    return _rule_nodes(sch.kind_info(kind).spec) or {}


def _rule_and_list_errors(node: Json, value: Json, path: Path, errors: _Errors) -> None:
    """Walk schema and value together: CEL twins on objects, uniqueness on set/map lists."""
    if not isinstance(node, dict):
        return
    if isinstance(value, dict):
        for rule in node.get("x-kubernetes-validations", ()):
            if not CEL_TWINS[rule["rule"]](value):
                field_path = tuple(p for p in rule.get("fieldPath", "").split(".") if p)
                errors.add((*path, *field_path), rule["message"])
        for name, child in node.get("properties", {}).items():
            if name in value:
                _rule_and_list_errors(child, value[name], (*path, name), errors)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                _rule_and_list_errors(extra, item, (*path, name), errors)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        items = node["items"]
        list_type = node.get("x-kubernetes-list-type")
        seen: dict[str, int] = {}
        for index, item in enumerate(value):
            _rule_and_list_errors(items, item, (*path, index), errors)
            if list_type == "set":
                identity, where = repr(item), (*path, index)
            elif list_type == "map" and isinstance(item, dict):
                keys = node["x-kubernetes-list-map-keys"]
                identity, where = repr([item.get(k) for k in keys]), (*path, index, keys[0])
            else:
                continue
            if identity in seen:
                errors.add(where, f"duplicates {format_path((*path, seen[identity]))}")
            else:
                seen[identity] = index


# --- 3. semantic checks and typed specs --------------------------------------------------------


def _get_str(mapping: Mapping[str, Json], key: str) -> str | None:
    value = mapping.get(key)
    return value if isinstance(value, str) else None


def _get_bool(mapping: Mapping[str, Json], key: str) -> bool | None:
    value = mapping.get(key)
    return value if isinstance(value, bool) else None


def _get_int(mapping: Mapping[str, Json], key: str) -> int | None:
    value = mapping.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _get_dict(mapping: Mapping[str, Json], key: str) -> dict[str, Json]:
    value = mapping.get(key)
    return value if isinstance(value, dict) else {}


def _get_list(mapping: Mapping[str, Json], key: str) -> list[Json]:
    value = mapping.get(key)
    return value if isinstance(value, list) else []


def _enum_member(enum_type: type[E], name: str | None) -> E | None:
    members: Mapping[str, E] = enum_type.__members__
    return members.get(name) if name is not None else None


def _parse_address(text: str) -> SocketAddress | str:
    """`SocketAddress.parse`, or its error message."""
    try:
        return SocketAddress.parse(text)
    except ValueError as error:
        return str(error)


# Every frontend on a listener repeats the listener's address, and parsing one costs more than
# the rest of a frontend. (SocketAddress is immutable: results may be shared.)
_cached_address: Final = lru_cache(maxsize=4096)(_parse_address)


def _address(value: Json, path: Path, errors: _Errors) -> SocketAddress | None:
    if not isinstance(value, str) or len(value) > sch.MAX_ADDRESS:
        return None  # the schema reports the type or the length
    # A str subclass may hash or compare unlike its text: parsed afresh, never cached.
    address = _cached_address(value) if type(value) is str else _parse_address(value)
    if isinstance(address, str):
        errors.add(path, address)
        return None
    if address.port == 0:
        errors.add(path, f"{show(value)}: port 0 is not a usable port")
        return None
    return address


def _dns_name(value: Json, path: Path, errors: _Errors) -> None:
    if not isinstance(value, str):
        return
    for label in value.split("."):
        if len(label) > 63:
            errors.add(path, f"label {show(label, 30)} is longer than 63 characters")
            return


def _pem(value: Json, label_suffix: str, what: str, path: Path, errors: _Errors) -> None:
    if not isinstance(value, str):
        return
    labels = [match.group(1) for match in _PEM_BLOCK.finditer(value)]
    if not any(label.endswith(label_suffix) for label in labels):
        errors.add(path, f"does not look like PEM: no '-----BEGIN {what}-----' block found")


def _same_address(first: Path, text: Json, first_text: Json) -> str | None:
    # Identical texts are already reported by the list-type check; only spellings that differ
    # but normalise to one address ("[::1]:80" and "[0::1]:80") need a message of their own.
    if text == first_text:
        return None
    return f"is the same address as {format_path(first)}, written differently"


def _unique_addresses(values: list[Json], path: Path, errors: _Errors) -> list[SocketAddress]:
    found: dict[SocketAddress, int] = {}
    for index, value in enumerate(values):
        address = _address(value, (*path, index), errors)
        if address is None:
            continue
        if address in found:
            first = found[address]
            message = _same_address((*path, first), value, values[first])
            if message is not None:
                errors.add((*path, index), message)
        else:
            found[address] = index
    return list(found)


def _cluster_spec(spec: dict[str, Json], ref: ResourceRef, errors: _Errors) -> ClusterSpec:
    path: Path = ("spec",)
    backends: list[BackendSpec] = []
    by_address: dict[SocketAddress, int] = {}
    by_id: dict[str, int] = {}
    for index, item in enumerate(_get_list(spec, "backends")):
        if not isinstance(item, dict):
            continue
        where = (*path, "backends", index)
        address = _address(item.get("address"), (*where, "address"), errors)
        if address is None:
            continue
        if address in by_address:
            first = by_address[address]
            message = _same_address(
                (*path, "backends", first, "address"),
                item.get("address"),
                _get_str(_get_list(spec, "backends")[first], "address"),
            )
            if message is not None:
                errors.add((*where, "address"), message)
            continue
        by_address[address] = index
        backend = BackendSpec(
            address=address,
            id=_get_str(item, "id"),
            weight=_get_int(item, "weight"),
            backup=_get_bool(item, "backup"),
            sticky_id=_get_str(item, "stickyId"),
        )
        # Explicit ids may collide with each other or with another backend's derived id.
        if backend.backend_id in by_id:
            other = format_path((*path, "backends", by_id[backend.backend_id]))
            errors.add(
                (*where, "id"), f"backend id {show(backend.backend_id)} is also used by {other}"
            )
        by_id[backend.backend_id] = index
        backends.append(backend)

    service = None
    raw_service = spec.get("service")
    if isinstance(raw_service, dict):
        port = raw_service.get("port")
        if isinstance(port, str) and not (
            _python_pattern(sch.PORT_NAME).search(port) and len(port) <= 15
        ):
            errors.add(
                (*path, "service", "port"),
                f"{show(port)} is not a port name (at most 15 lowercase letters, digits and '-')",
            )
        service = ServiceRef(
            name=_get_str(raw_service, "name") or "",
            port=port if isinstance(port, str) else (_get_int(raw_service, "port") or 0),
            namespace=_get_str(raw_service, "namespace") or ref.namespace,
        )

    return ClusterSpec(
        cluster_id=_get_str(spec, "clusterId") or f"{ref.namespace}/{ref.name}",
        class_name=_get_str(spec, "className"),
        load_balancing=_enum_member(LoadBalancing, _get_str(spec, "loadBalancing"))
        or LoadBalancing[sch.DEFAULT_LOAD_BALANCING],
        load_metric=_enum_member(LoadMetric, _get_str(spec, "loadMetric")),
        sticky_session=bool(_get_bool(spec, "stickySession")),
        https_redirect=bool(_get_bool(spec, "httpsRedirect")),
        proxy_protocol=_enum_member(ProxyProtocol, _get_str(spec, "proxyProtocol")),
        answer_503=_get_str(spec, "answer503"),
        backends=tuple(backends),
        service=service,
        http2=_get_bool(spec, "http2"),
        answers=pairs(
            (key, value)
            for key, value in _get_dict(spec, "answers").items()
            if isinstance(value, str)
        ),
        https_redirect_port=_get_int(spec, "httpsRedirectPort"),
        authorized_hashes=tuple(
            item for item in _get_list(spec, "authorizedHashes") if isinstance(item, str)
        ),
        www_authenticate=_get_str(spec, "wwwAuthenticate"),
        max_connections_per_ip=_get_int(spec, "maxConnectionsPerIp"),
        retry_after=_get_int(spec, "retryAfter"),
    )


def _check_regex(value: str, path: Path, errors: _Errors) -> None:
    # Sōzu compiles path regexes with Rust's `regex` crate: no look-around, no backreferences.
    # Python's engine is the closest we have for the rest of the syntax.
    if _LOOKAROUND.search(value):
        errors.add(path, "Sōzu's regex engine supports no look-around or backreferences")
        return
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError, ValueError) as error:
        errors.add(path, f"is not a valid regex: {error}")


def _frontend_spec(
    spec: dict[str, Json], errors: _Errors
) -> FrontendSpec | None:
    path: Path = ("spec",)
    address = _address(spec.get("address"), (*path, "address"), errors)
    protocol = _enum_member(ListenerType, _get_str(spec, "protocol") or sch.DEFAULT_PROTOCOL)
    hostname = _get_str(spec, "hostname")
    _dns_name(hostname, (*path, "hostname"), errors)
    path_spec: PathSpec | None = None
    if protocol is not ListenerType.TCP:
        raw_path = _get_dict(spec, "path")
        kind = _enum_member(PathRuleKind, _get_str(raw_path, "kind") or sch.DEFAULT_PATH_KIND)
        value = _get_str(raw_path, "value") or ""
        if kind is PathRuleKind.REGEX:
            _check_regex(value, (*path, "path", "value"), errors)
        path_spec = PathSpec(kind or PathRuleKind.PREFIX, value)
    headers = []
    for item in _get_list(spec, "headers"):
        if isinstance(item, dict):
            position = _enum_member(
                HeaderPosition, _get_str(item, "position") or sch.DEFAULT_HEADER_POSITION
            )
            headers.append(
                Header(
                    position or HeaderPosition.REQUEST,
                    _get_str(item, "key") or "",
                    _get_str(item, "value") or "",
                )
            )
    if address is None or protocol is None:
        return None
    return FrontendSpec(
        cluster=_get_str(spec, "cluster") or "",
        address=address,
        protocol=protocol,
        class_name=_get_str(spec, "className"),
        hostname=hostname,
        path=path_spec,
        method=_get_str(spec, "method"),
        position=_enum_member(RulePosition, _get_str(spec, "position") or sch.DEFAULT_POSITION)
        or RulePosition.TREE,
        tags=pairs(
            (key, value) for key, value in _get_dict(spec, "tags").items() if isinstance(value, str)
        ),
        redirect=_enum_member(RedirectPolicy, _get_str(spec, "redirect")),
        required_auth=_get_bool(spec, "requiredAuth"),
        redirect_scheme=_enum_member(RedirectScheme, _get_str(spec, "redirectScheme")),
        redirect_template=_get_str(spec, "redirectTemplate"),
        rewrite_host=_get_str(spec, "rewriteHost"),
        rewrite_path=_get_str(spec, "rewritePath"),
        rewrite_port=_get_int(spec, "rewritePort"),
        headers=tuple(headers),
    )


def _certificate_spec(
    spec: dict[str, Json], ref: ResourceRef, errors: _Errors
) -> CertificateSpec:
    path: Path = ("spec",)
    addresses = _unique_addresses(_get_list(spec, "addresses"), (*path, "addresses"), errors)
    for index, name in enumerate(_get_list(spec, "names")):
        _dns_name(name, (*path, "names", index), errors)
    certificate, key = _get_str(spec, "certificate"), _get_str(spec, "key")
    _pem(certificate, "CERTIFICATE", "CERTIFICATE", (*path, "certificate"), errors)
    _pem(key, "PRIVATE KEY", "… PRIVATE KEY", (*path, "key"), errors)
    chain = []
    for index, item in enumerate(_get_list(spec, "chain")):
        _pem(item, "CERTIFICATE", "CERTIFICATE", (*path, "chain", index), errors)
        if isinstance(item, str):
            chain.append(item)
    inline = None
    if certificate is not None and key is not None:
        inline = TlsMaterial(certificate=certificate, key=key, chain=tuple(chain))
    secret = _get_dict(spec, "secretRef")
    secret_name = _get_str(secret, "name")
    return CertificateSpec(
        addresses=tuple(addresses),
        class_name=_get_str(spec, "className"),
        inline=inline,
        secret_ref=SecretRef(secret_name, ref.namespace) if secret_name is not None else None,
        names=tuple(name for name in _get_list(spec, "names") if isinstance(name, str)),
        versions=tuple(
            TlsVersion[name]
            for name in _get_list(spec, "versions")
            if isinstance(name, str) and name in sch.TLS_VERSIONS
        ),
    )


# --- identity and metadata ---------------------------------------------------------------------


def _cut(text: str, limit: int = 253) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _usable(value: object) -> str | None:
    """`value` cut to size for a ref, or None when it cannot name anything (not a string,
    empty, or key material: a ref is printed in every message about its resource)."""
    if not isinstance(value, str) or not value or _KEY_HINT in value:
        return None
    return _cut(value)


def resource_ref(obj: object) -> ResourceRef:
    """A best-effort ref for any object, so that even garbage gets a name in error messages."""
    if not isinstance(obj, Mapping):
        return ResourceRef(UNKNOWN_KIND, sch.DEFAULT_NAMESPACE, NO_NAME)
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    return ResourceRef(
        kind=_usable(obj.get("kind")) or UNKNOWN_KIND,
        namespace=_usable(metadata.get("namespace", sch.DEFAULT_NAMESPACE)) or BAD_NAMESPACE,
        name=_usable(metadata.get("name")) or NO_NAME,
    )


def _parse_time(value: str) -> datetime.datetime | None:
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _metadata(obj: dict[str, Json], errors: _Errors) -> ResourceMeta:
    api_version = obj.get("apiVersion")
    if api_version != sch.API_VERSION:
        if isinstance(api_version, str) and api_version.startswith(f"{sch.GROUP}/"):
            message = f"version {show(api_version)} is not served; use {sch.API_VERSION}"
        else:
            message = f"must be {sch.API_VERSION}, got {show(api_version)}"
        errors.add(("apiVersion",), message)
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        errors.add(("metadata",), "is required" if metadata is None else "must be an object")
        return ResourceMeta()
    name = metadata.get("name")
    if not isinstance(name, str):
        errors.add(("metadata", "name"), "is required" if name is None else "must be a string")
    elif len(name) > 253 or not _python_pattern(sch.DNS_SUBDOMAIN).search(name):
        hint = sch.PATTERN_HINTS[sch.DNS_SUBDOMAIN]
        errors.add(("metadata", "name"), f"{show(name)} is not {hint} of at most 253 characters")
    namespace = metadata.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str)
        or len(namespace) > 63
        or not _python_pattern(sch.DNS_LABEL).search(namespace)
    ):
        hint = sch.PATTERN_HINTS[sch.DNS_LABEL]
        errors.add(
            ("metadata", "namespace"), f"{show(namespace)} is not {hint} of at most 63 characters"
        )
    generation = metadata.get("generation")
    if generation is not None and (
        not isinstance(generation, int) or isinstance(generation, bool) or generation < 0
    ):
        message = f"must be a non-negative integer, got {show(generation)}"
        errors.add(("metadata", "generation"), message)
        generation = None
    created_text = metadata.get("creationTimestamp")
    created = None
    if created_text is not None:
        created = _parse_time(created_text) if isinstance(created_text, str) else None
        if created is None:
            message = f"{show(created_text)} is not an RFC 3339 time"
            errors.add(("metadata", "creationTimestamp"), message)
    uid = metadata.get("uid")
    return ResourceMeta(
        generation=generation, uid=uid if isinstance(uid, str) else None, created=created
    )


# --- entry points ------------------------------------------------------------------------------


def version_errors(parsed: Parsed, sozu_version: int) -> tuple[FieldError, ...]:
    """Fields of a valid resource that the target Sōzu version does not know."""
    spec = parsed.spec
    if sozu_version >= 2 or isinstance(spec, CertificateSpec):
        return ()
    found = []
    for field in spec.v2_only_fields():
        if field == "loadBalancing" and isinstance(spec, ClusterSpec):
            message = (
                f"{spec.load_balancing.name} load balancing needs Sōzu 2.x; "
                f"the target proxy runs Sōzu {sozu_version}.x"
            )
        else:
            message = f"only Sōzu 2.x knows this field; the target proxy runs Sōzu {sozu_version}.x"
        found.append(FieldError(parsed.ref, f"spec.{field}", message))
    return tuple(found)


def parse_resource(obj: object, *, sozu_version: int | None = None) -> Parsed | Invalid:
    """Validate one resource object; with `sozu_version`, also refuse fields that version lacks.

    Never raises on bad input: every problem comes back as a `FieldError` of an `Invalid`."""
    ref = resource_ref(obj)
    try:
        result = _parse(obj, ref)
    except Exception as error:  # isolation: one resource never breaks a batch
        message = f"{INTERNAL_ERROR}: {type(error).__name__}: {error}"
        return Invalid(ref, (FieldError(ref, "", message),))
    if sozu_version is not None and isinstance(result, Parsed):
        problems = version_errors(result, sozu_version)
        if problems:
            return Invalid(ref, problems)
    return result


def _parse(obj: object, ref: ResourceRef) -> Parsed | Invalid:
    errors = _Errors()
    if not isinstance(obj, Mapping):
        return Invalid(ref, (FieldError(ref, "", f"must be an object, got {show(obj)}"),))
    plain: Json = obj if _is_plain(obj) else _plain(obj, (), errors)
    kind = plain.get("kind")
    if kind not in sch.KINDS:
        errors.add(("kind",), f"{show(kind)} is not one of {', '.join(sch.KINDS)}")
        return _invalid(ref, errors)
    meta = _metadata(plain, errors)
    spec = plain.get("spec")
    if not isinstance(spec, dict):
        message = "is required" if spec is None else f"must be an object, got {_json_type(spec)}"
        errors.add(("spec",), message)
        return _invalid(ref, errors)

    schema_errors, pattern_errors = _Errors(), _Errors()
    _schema_errors(kind, spec, schema_errors, pattern_errors)
    semantic = _Errors()
    _rule_and_list_errors(_spec_rule_nodes(kind), spec, ("spec",), semantic)
    built: ClusterSpec | FrontendSpec | CertificateSpec | None
    if kind == sch.CLUSTER_KIND:
        built = _cluster_spec(spec, ref, semantic)
    elif kind == sch.FRONTEND_KIND:
        built = _frontend_spec(spec, semantic)
    else:
        built = _certificate_spec(spec, ref, semantic)
    # A semantic message is more precise than a failed pattern at the same path (why an
    # address does not parse, rather than which regex it misses).
    semantic_paths = semantic.paths()
    for path, message in schema_errors.items:
        errors.add(path, message)
    for path, message in pattern_errors.items:
        if path not in semantic_paths:
            errors.add(path, message)
    for path, message in semantic.items:
        errors.add(path, message)
    if errors or built is None:
        return _invalid(ref, errors)
    return Parsed(ref=ref, spec=built, meta=meta)


def _invalid(ref: ResourceRef, errors: _Errors) -> Invalid:
    found = tuple(FieldError(ref, format_path(path), message) for path, message in errors.items)
    return Invalid(ref, found or (FieldError(ref, "", "is not valid"),))
