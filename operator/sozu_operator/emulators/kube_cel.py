"""A tiny evaluator for the simple forms of CEL used in `x-kubernetes-validations`.

Supported: literals (int, double, string, bool, null, lists, maps), `self` / `oldSelf`, field
access, indexing, `has(x.f)`, `size()`, `type()` with the type names (`int`, `string`, ...),
`int()/string()/double()`, `!`, `-`, `* / %`, `+ -`, comparisons, `in`, `&&`, `||`, `?:`, the
string methods `startsWith/endsWith/contains/matches/lowerAscii/upperAscii/trim`, and the
macros `all/exists/exists_one/map/filter`.

Not supported (rules using them are *skipped*, not enforced; `compile_rule` raises
`CelUnsupported` so the caller can record that): `uint`/bytes literals, timestamps/durations,
`optional` syntax, the Kubernetes CEL libraries (quantity, url, ip, `isSorted`...), and
`messageExpression`. Semantics differ from cel-go in corners: arithmetic mixes int and double
like Python, and a runtime error (e.g. a missing key) fails the rule with that error's text, as
the real server does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final


class CelUnsupported(Exception):
    """The rule uses syntax this evaluator does not know."""


class CelError(Exception):
    """A runtime evaluation error (no such key, bad operand types...)."""


@dataclass(frozen=True, slots=True)
class CelType:
    name: str


TYPES: Final = {
    name: CelType(name)
    for name in ("int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type",
                 "type")
}

_TOKEN_RE: Final = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<float>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>0x[0-9a-fA-F]+|\d+)(?P<uint>[uU])?
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%!<>?:.,()\[\]{}])
    """,
    re.VERBOSE,
)

_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _tokenize(source: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN_RE.match(source, pos)
        if match is None:
            raise CelUnsupported(f"unexpected character {source[pos]!r} at {pos}")
        pos = match.end()
        kind = match.lastgroup
        text = match.group(0)
        if kind == "ws":
            continue
        if kind in ("int", "uint"):
            if match.group("uint"):
                raise CelUnsupported("unsigned integers")
            tokens.append(("lit", int(match.group("int"), 0)))
        elif kind == "float":
            tokens.append(("lit", float(text)))
        elif kind == "string":
            tokens.append(("lit", _unquote(text)))
        elif kind == "ident":
            if text in ("true", "false"):
                tokens.append(("lit", text == "true"))
            elif text == "null":
                tokens.append(("lit", None))
            else:
                tokens.append(("ident", text))
        else:
            tokens.append(("op", text))
    tokens.append(("end", None))
    return tokens


# An expression compiles to a closure over an environment (variable name -> value).
Env = dict[str, Any]
Node = Callable[[Env], Any]

_ABSENT: Final = object()
_MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.pos = 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, Any]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def accept(self, op: str) -> bool:
        if self.peek() == ("op", op):
            self.pos += 1
            return True
        return False

    def expect(self, op: str) -> None:
        if not self.accept(op):
            raise CelUnsupported(f"expected {op!r}, got {self.peek()[1]!r}")

    def parse(self) -> Node:
        node = self.conditional()
        if self.peek()[0] != "end":
            raise CelUnsupported(f"unexpected {self.peek()[1]!r}")
        return node

    def conditional(self) -> Node:
        cond = self.logical_or()
        if self.accept("?"):
            then = self.conditional()
            self.expect(":")
            other = self.conditional()
            return lambda env: then(env) if _truth(cond(env)) else other(env)
        return cond

    def logical_or(self) -> Node:
        node = self.logical_and()
        while self.accept("||"):
            node = _or(node, self.logical_and())
        return node

    def logical_and(self) -> Node:
        node = self.relation()
        while self.accept("&&"):
            node = _and(node, self.relation())
        return node

    def relation(self) -> Node:
        node = self.addition()
        while True:
            kind, value = self.peek()
            if kind == "op" and value in ("==", "!=", "<", "<=", ">", ">="):
                self.take()
                node = _compare(value, node, self.addition())
            elif kind == "ident" and value == "in":
                self.take()
                node = _membership(node, self.addition())
            else:
                return node

    def addition(self) -> Node:
        node = self.multiplication()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take()[1]
            node = _arith(op, node, self.multiplication())
        return node

    def multiplication(self) -> Node:
        node = self.unary()
        while self.peek() in (("op", "*"), ("op", "/"), ("op", "%")):
            op = self.take()[1]
            node = _arith(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.accept("!"):
            inner = self.unary()
            return lambda env: not _bool(inner(env))
        if self.accept("-"):
            inner = self.unary()
            return lambda env: -_number(inner(env))
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.accept("."):
                kind, name = self.take()
                if kind != "ident":
                    raise CelUnsupported("expected a field name after '.'")
                node = self.method(node, name) if self.accept("(") else _field(node, name)
            elif self.accept("["):
                index = self.conditional()
                self.expect("]")
                node = _index(node, index)
            else:
                return node

    def args(self) -> list[Node]:
        args: list[Node] = []
        if self.accept(")"):
            return args
        while True:
            args.append(self.conditional())
            if self.accept(")"):
                return args
            self.expect(",")

    def method(self, target: Node, name: str) -> Node:
        if name in _MACROS:
            kind, var = self.take()
            if kind != "ident":
                raise CelUnsupported(f"{name}() needs a variable name")
            self.expect(",")
            body = self.conditional()
            self.expect(")")
            return _macro(name, target, var, body)
        args = self.args()
        return _method(name, target, args)

    def primary(self) -> Node:
        kind, value = self.take()
        if kind == "lit":
            return lambda env: value
        if kind == "ident":
            if self.accept("("):
                if value == "has":
                    return self.has()
                return _function(value, self.args())
            name = str(value)

            def variable(env: Env) -> Any:
                if name in env:
                    return env[name]
                if name in TYPES:
                    return TYPES[name]
                raise CelError(f"undeclared reference to '{name}'")

            return variable
        if (kind, value) == ("op", "("):
            node = self.conditional()
            self.expect(")")
            return node
        if (kind, value) == ("op", "["):
            items: list[Node] = []
            if not self.accept("]"):
                while True:
                    items.append(self.conditional())
                    if self.accept("]"):
                        break
                    self.expect(",")
            return lambda env: [item(env) for item in items]
        if (kind, value) == ("op", "{"):
            pairs: list[tuple[Node, Node]] = []
            if not self.accept("}"):
                while True:
                    key = self.conditional()
                    self.expect(":")
                    pairs.append((key, self.conditional()))
                    if self.accept("}"):
                        break
                    self.expect(",")
            return lambda env: {k(env): v(env) for k, v in pairs}
        raise CelUnsupported(f"unexpected {value!r}")

    def has(self) -> Node:
        # has() takes a field selection and tests presence instead of reading the value.
        start = self.pos
        target = self.member()
        self.expect(")")
        tokens = self.tokens[start:self.pos - 1]
        if len(tokens) < 3 or tokens[-2] != ("op", ".") or tokens[-1][0] != "ident":
            raise CelUnsupported("has() needs a field selection like has(self.field)")
        field = tokens[-1][1]
        sub = _Parser.__new__(_Parser)
        sub.tokens = [*tokens[:-2], ("end", None)]
        sub.pos = 0
        owner = sub.member()
        del target

        def presence(env: Env) -> bool:
            container = owner(env)
            if isinstance(container, Mapping):
                return field in container and container[field] is not None
            raise CelError(f"invalid type for field selection: {_type_name(container)}")

        return presence


def _truth(value: Any) -> bool:
    return _bool(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise CelError(f"no such overload: expected bool, got {_type_name(value)}")
    return value


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CelError(f"no such overload: expected a number, got {_type_name(value)}")
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null_type"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, CelType):
        return "type"
    return type(value).__name__


def _or(left: Node, right: Node) -> Node:
    # CEL's || is commutative over errors: true wins even if the other side errs.
    def node(env: Env) -> bool:
        try:
            if _bool(left(env)):
                return True
            left_error = None
        except CelError as error:
            left_error = error
        if _bool(right(env)):
            return True
        if left_error is not None:
            raise left_error
        return False

    return node


def _and(left: Node, right: Node) -> Node:
    def node(env: Env) -> bool:
        try:
            if not _bool(left(env)):
                return False
            left_error = None
        except CelError as error:
            left_error = error
        if not _bool(right(env)):
            return False
        if left_error is not None:
            raise left_error
        return True

    return node


def _compare(op: str, left: Node, right: Node) -> Node:
    def node(env: Env) -> bool:
        a, b = left(env), right(env)
        if op == "==":
            return _equal(a, b)
        if op == "!=":
            return not _equal(a, b)
        if isinstance(a, str) and isinstance(b, str):
            pass
        elif isinstance(a, bool) or isinstance(b, bool) or not (
            isinstance(a, int | float) and isinstance(b, int | float)
        ):
            raise CelError(f"no such overload: {_type_name(a)} {op} {_type_name(b)}")
        if op == "<":
            return bool(a < b)
        if op == "<=":
            return bool(a <= b)
        if op == ">":
            return bool(a > b)
        return bool(a >= b)

    return node


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _membership(item: Node, container: Node) -> Node:
    def node(env: Env) -> bool:
        value, where = item(env), container(env)
        if isinstance(where, list):
            return any(_equal(value, x) for x in where)
        if isinstance(where, Mapping):
            return value in where
        raise CelError(f"no such overload: in {_type_name(where)}")

    return node


def _arith(op: str, left: Node, right: Node) -> Node:
    def node(env: Env) -> Any:
        a, b = left(env), right(env)
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            return a + b
        if op == "+" and isinstance(a, list) and isinstance(b, list):
            return a + b
        x, y = _number(a), _number(b)
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if y == 0:
            raise CelError("division by zero" if op == "/" else "modulus by zero")
        if isinstance(x, int) and isinstance(y, int):
            # CEL integer division truncates towards zero.
            quotient = abs(x) // abs(y) * (1 if (x >= 0) == (y >= 0) else -1)
            return quotient if op == "/" else x - quotient * y
        return x / y if op == "/" else x % y

    return node


def _field(target: Node, name: str) -> Node:
    def node(env: Env) -> Any:
        value = target(env)
        if isinstance(value, Mapping):
            if name not in value or value[name] is None:
                raise CelError(f"no such key: {name}")
            return value[name]
        raise CelError(f"invalid type for field selection: {_type_name(value)}")

    return node


def _index(target: Node, index: Node) -> Node:
    def node(env: Env) -> Any:
        value, key = target(env), index(env)
        if isinstance(value, list):
            if isinstance(key, bool) or not isinstance(key, int):
                raise CelError("list index must be an int")
            if not 0 <= key < len(value):
                raise CelError(f"index out of bounds: {key}")
            return value[key]
        if isinstance(value, Mapping):
            if key not in value:
                raise CelError(f"no such key: {key}")
            return value[key]
        raise CelError(f"no such overload: index on {_type_name(value)}")

    return node


def _size(value: Any) -> int:
    if isinstance(value, str | list | Mapping):
        return len(value)
    raise CelError(f"no such overload: size({_type_name(value)})")


def _convert(name: str, value: Any) -> Any:
    try:
        if name == "int":
            if isinstance(value, bool):
                raise CelError("no such overload: int(bool)")
            return int(value)
        if name == "double":
            return float(value)
        if name == "string":
            if isinstance(value, bool):
                return "true" if value else "false"
            return str(value)
        if name == "bool":
            if isinstance(value, str) and value in ("true", "false"):
                return value == "true"
            return _bool(value)
    except (TypeError, ValueError) as error:
        raise CelError(f"cannot convert to {name}: {error}") from error
    raise CelError(f"no such function: {name}")


def _function(name: str, args: list[Node]) -> Node:
    if name == "size" and len(args) == 1:
        arg = args[0]
        return lambda env: _size(arg(env))
    if name == "type" and len(args) == 1:
        arg = args[0]
        return lambda env: TYPES.get(_type_name(arg(env)), CelType(_type_name(arg(env))))
    if name in ("int", "double", "string", "bool") and len(args) == 1:
        arg = args[0]
        return lambda env: _convert(name, arg(env))
    if name == "matches" and len(args) == 2:
        text, pattern = args
        return lambda env: _matches(text(env), pattern(env))
    raise CelUnsupported(f"function {name}()")


def _matches(text: Any, pattern: Any) -> bool:
    if not isinstance(text, str) or not isinstance(pattern, str):
        raise CelError("no such overload: matches")
    try:
        return re.search(pattern, text) is not None
    except re.error as error:
        raise CelError(f"invalid regex: {error}") from error


def _string_method(name: str, value: str, args: list[Any]) -> Any:
    if name == "startsWith" and len(args) == 1:
        return value.startswith(args[0])
    if name == "endsWith" and len(args) == 1:
        return value.endswith(args[0])
    if name == "contains" and len(args) == 1:
        return args[0] in value
    if name == "matches" and len(args) == 1:
        return _matches(value, args[0])
    if name == "lowerAscii" and not args:
        return value.lower()
    if name == "upperAscii" and not args:
        return value.upper()
    if name == "trim" and not args:
        return value.strip()
    if name == "size" and not args:
        return len(value)
    raise CelError(f"no such overload: string.{name}")


_STRING_METHODS: Final = frozenset(
    {"startsWith", "endsWith", "contains", "matches", "lowerAscii", "upperAscii", "trim", "size"}
)


def _method(name: str, target: Node, args: list[Node]) -> Node:
    if name not in _STRING_METHODS:
        raise CelUnsupported(f"method .{name}()")

    def node(env: Env) -> Any:
        value = target(env)
        values = [arg(env) for arg in args]
        if name == "size" and not values:
            return _size(value)
        if not isinstance(value, str) or not all(isinstance(v, str) for v in values):
            raise CelError(f"no such overload: {_type_name(value)}.{name}")
        return _string_method(name, value, values)

    return node


def _macro(name: str, target: Node, var: str, body: Node) -> Node:
    def node(env: Env) -> Any:
        container = target(env)
        if isinstance(container, Mapping):
            items = list(container.keys())
        elif isinstance(container, list):
            items = list(container)
        else:
            raise CelError(f"no such overload: {_type_name(container)}.{name}")
        results = []
        for item in items:
            scope = dict(env)
            scope[var] = item
            results.append((item, body(scope)))
        if name == "all":
            return all(_bool(r) for _, r in results)
        if name == "exists":
            return any(_bool(r) for _, r in results)
        if name == "exists_one":
            return sum(1 for _, r in results if _bool(r)) == 1
        if name == "map":
            return [r for _, r in results]
        return [item for item, r in results if _bool(r)]

    return node


@dataclass(frozen=True, slots=True)
class CompiledRule:
    source: str
    uses_old_self: bool
    _node: Node

    def evaluate(self, value: Any, old_value: Any = _ABSENT) -> bool:
        """True if the rule holds; raises CelError on evaluation errors."""
        env: Env = {"self": value}
        if old_value is not _ABSENT:
            env["oldSelf"] = old_value
        result = self._node(env)
        if not isinstance(result, bool):
            raise CelError(f"rule evaluated to {_type_name(result)}, not bool")
        return result


NO_OLD: Final = _ABSENT


def compile_rule(source: str) -> CompiledRule:
    uses_old_self = bool(re.search(r"\boldSelf\b", source))
    return CompiledRule(source, uses_old_self, _Parser(source).parse())
