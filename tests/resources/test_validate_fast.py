"""parse_resource's fast paths (the compiled schema check, using plain input without a copy,
the pruned rule walk, the address cache) change nothing but speed: the compiled check calls a
spec valid exactly when jsonschema does, and every result is the one of the slow paths alone."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tests.resources.test_fuzz_resources import SEEDS, STABLE, malformed

from sozu_operator.resources import schema as sch
from sozu_operator.resources import validate
from sozu_operator.resources.models import Parsed
from sozu_operator.resources.validate import parse_resource

STRICT = {kind: validate._strict(sch.spec_schema(kind)) for kind in sch.KINDS}
OTHER_TYPES = st.sampled_from(
    [None, True, False, 0, 1, -1, 2.5, 80.0, math.inf, math.nan, "", "x", [], {}, ["x"], {"a": 1}]
)


def _jsonschema_valid(kind: str, spec: Any) -> bool:
    return next(validate._spec_validator(kind).iter_errors(spec), None) is None


class _Text(str):
    """A str subclass: jsonschema takes it for a string, the compiled check leaves it alone."""


# Strategies per schema node: `_valid` draws values jsonschema accepts, `_near` values that
# differ from a valid one in exactly one place, by an edge case that may or may not be valid
# (a length of exactly maxLength, or one more). A disagreement cannot hide behind another error.


def _valid(node: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    match node.get("type"):
        case "string":
            low, high = node.get("minLength", 0), node.get("maxLength", 64)
            if "enum" in node:
                return st.sampled_from(node["enum"])
            if "pattern" in node:
                regex = validate._python_pattern(node["pattern"])
                return st.from_regex(regex).filter(lambda text: low <= len(text) <= high)
            return st.text(min_size=low, max_size=min(high, 12))
        case "integer":
            low, high = node.get("minimum", -(2**64)), node.get("maximum", 2**64)
            exact = st.integers(max(low, -(2**53)), min(high, 2**53))  # exact as floats too
            return st.one_of(st.integers(low, high), st.sampled_from([low, high]),
                             exact.map(float))
        case "boolean":
            return st.booleans()
        case "array":
            item = _valid(node["items"])
            low, high = node.get("minItems", 0), node["maxItems"]
            return st.one_of(
                st.lists(item, min_size=low, max_size=min(high, 3)),
                item.map(lambda value: [value] * high),
            )
        case "object" if isinstance(node.get("additionalProperties"), dict):  # a string map
            most = node["maxProperties"]
            return st.one_of(
                st.dictionaries(_MAP_KEYS, _valid(node["additionalProperties"]), max_size=3),
                st.just({f"k{i}": "v" for i in range(most)}),
            )
        case "object":
            required = node.get("required", [])
            properties = node["properties"]
            return st.fixed_dictionaries(
                {name: _valid(properties[name]) for name in required},
                optional={
                    name: _valid(child) for name, child in properties.items()
                    if name not in required
                },
            )
        case None if "anyOf" in node:
            return st.one_of(*(_valid(option) for option in node["anyOf"]))
    raise AssertionError(f"no strategy for {node}")


def _edges(node: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values for `node` itself that are wrong, or right, by a hair."""
    edges: list[st.SearchStrategy[Any]] = [OTHER_TYPES]
    match node.get("type"):
        case "string":
            low, high = node.get("minLength", 0), node.get("maxLength", 64)
            lengths = st.sampled_from([n for n in (low - 1, low, high, high + 1) if n >= 0])
            valid = _valid(node)
            edges += [
                lengths.map(lambda n: "a" * n),
                lengths.map(lambda n: "a" * max(n - 1, 0) + "\n"),
                valid.map(lambda text: text + "\n"),
                valid.map(lambda text: "_" + text),
                valid.map(str.lower),
                st.text(max_size=8),
            ]
        case "integer":
            bounds = [node.get(key) for key in ("minimum", "maximum") if key in node] or [0]
            around = st.sampled_from([b + step for b in bounds for step in (-1, 0, 1)])
            edges += [around, around.map(float), st.floats(), st.sampled_from(["1", True])]
        case "array":
            item, low, high = _valid(node["items"]), node.get("minItems", 0), node["maxItems"]
            edges += [
                item.map(lambda value: [value] * (high + 1)),
                st.just([] if low else [None]),
            ]
        case "object" if isinstance(node.get("additionalProperties"), dict):
            edges.append(st.just({f"k{i}": "v" for i in range(node["maxProperties"] + 1)}))
        case "object":
            valid = _valid(node)
            edges += [
                st.tuples(valid, st.sampled_from(node.get("required") or [""])).map(
                    lambda pair: {k: v for k, v in pair[0].items() if k != pair[1]}
                ),
                valid.map(lambda spec: {**spec, "unknownField": "x"}),
            ]
    return st.one_of(*edges)


def _children(node: Mapping[str, Any]) -> Iterator[tuple[str | int, Mapping[str, Any]]]:
    yield from node.get("properties", {}).items()
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield key, node[key]
    yield from enumerate(node.get("anyOf", ()))


def _node_paths(node: Mapping[str, Any], path: tuple[str | int, ...] = ()) -> Iterator[Any]:
    yield path
    for step, child in _children(node):
        yield from _node_paths(child, (*path, step))


def _near(node: Mapping[str, Any], path: Sequence[str | int]) -> st.SearchStrategy[Any]:
    """A valid value but for an edge case at the node `path` leads to."""
    if not path:
        return _edges(node)
    step, rest = path[0], path[1:]
    child = dict(_children(node))[step]
    near = _near(child, rest)
    if isinstance(step, int):  # an anyOf option
        return near
    if step == "items":
        return st.tuples(st.lists(_valid(child), max_size=2), near).map(
            lambda pair: [*pair[0], pair[1]]
        )
    name = _MAP_KEYS if step == "additionalProperties" else st.just(step)
    return st.tuples(_valid(node), name, near).map(
        lambda triple: {**triple[0], triple[1]: triple[2]}
    )


_MAP_KEYS = st.one_of(st.text(max_size=6), st.sampled_from(["team", "sozu.io/x"]))


VALID = {kind: _valid(schema) for kind, schema in STRICT.items()}
# Every node of every kind is as likely to hold the edge case, however deep it is.
NEAR = st.one_of(
    *(
        st.tuples(st.just(kind), _near(schema, path))
        for kind, schema in STRICT.items()
        for path in _node_paths(schema)
    )
)


def test_every_kind_compiles() -> None:
    # A schema change the compiler does not follow would silently lose the fast path.
    for kind in sch.KINDS:
        assert validate._spec_check(kind) is not None, kind


@settings(max_examples=1500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(NEAR)
def test_compiled_check_agrees_with_jsonschema(case: tuple[str, Any]) -> None:
    kind, spec = case
    expected = _jsonschema_valid(kind, spec)
    event("valid" if expected else "invalid")
    assert validate._surely_valid(kind, spec) == expected


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(st.sampled_from(sch.KINDS).flatmap(lambda kind: st.tuples(st.just(kind), VALID[kind])))
def test_valid_strategies_draw_valid_specs(case: tuple[str, Any]) -> None:
    # Otherwise the agreement test above would see edges at more than one place.
    kind, spec = case
    assert _jsonschema_valid(kind, spec)
    assert validate._surely_valid(kind, spec)


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(malformed)
def test_compiled_check_agrees_on_malformed_resources(obj: Any) -> None:
    if not isinstance(obj, Mapping) or obj.get("kind") not in sch.KINDS:
        return
    spec = validate._plain(obj, (), validate._Errors()).get("spec")
    assert validate._surely_valid(obj["kind"], spec) == _jsonschema_valid(obj["kind"], spec)


@pytest.mark.parametrize("value", [_Text("web"), _Text("x" * 300)])
def test_values_of_other_types_are_left_to_jsonschema(value: str) -> None:
    spec = {"cluster": value, "address": "0.0.0.0:8080", "hostname": "a.example"}
    assert not validate._surely_valid(sch.FRONTEND_KIND, spec)
    obj = {"apiVersion": sch.API_VERSION, "kind": sch.FRONTEND_KIND,
           "metadata": {"name": "web"}, "spec": spec}
    assert isinstance(parse_resource(obj), Parsed) == (len(value) <= 253)


@pytest.mark.parametrize(
    "node",
    [
        {"type": "string", "const": "a"},
        {"type": ["string", "null"]},
        {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        {"type": "object", "patternProperties": {"^a": {"type": "string"}}},
        {"type": "integer", "enum": [1]},
        {"type": "string", "enum": ["a", 1]},
        {"enum": ["a"]},
        {"$ref": "#"},
        {"type": "object", "properties": {"a": {"type": "string", "format": "x", "not": {}}}},
        {"type": "array", "items": True},
    ],
)
def test_compiler_refuses_what_it_does_not_implement(node: dict[str, Any]) -> None:
    with pytest.raises(validate._Unsupported):
        validate._compile(node)


def _slow_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "_surely_valid", lambda kind, spec: False)
    monkeypatch.setattr(validate, "_is_plain", lambda value: False)
    monkeypatch.setattr(validate, "_spec_rule_nodes", lambda kind: sch.kind_info(kind).spec)
    monkeypatch.setattr(validate, "_cached_address", validate._parse_address)


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(malformed, st.sampled_from([*SEEDS, *STABLE])), st.sampled_from([None, 1, 2]))
def test_results_are_those_of_the_slow_paths(obj: Any, sozu_version: int | None) -> None:
    fast = parse_resource(obj, sozu_version=sozu_version)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _slow_paths(monkeypatch)
        slow = parse_resource(obj, sozu_version=sozu_version)
    assert fast == slow
    assert repr(fast) == repr(slow)  # the same errors in the same order
