"""Sōzu's saved-state file (`save_state` / `load_state`): parse it into typed requests and
render typed requests back into it, byte for byte as Sōzu writes it.

The file is a sequence of records, each the serde_json encoding of a `WorkerRequest` followed by
the two bytes `\\n\\0`. Sōzu's JSON is the derived serde encoding of its prost types: keys in
.proto declaration order, snake_case field names, the `request_type` oneof as a one-key object
whose key is the member name in SCREAMING_SNAKE_CASE, enums as integers, absent optionals as
`null`, repeated fields as arrays, maps as objects with sorted keys, compact separators, and
non-ASCII text written as UTF-8.

Reading is version-agnostic (a 1.0 file is a 2.1 file without the 2.x keys). Writing takes the
Sōzu version because 2.1 writes more keys than 1.0. Fields our models do not carry (custom
answers, HTTP/2 tuning, HSTS, health checks, UDP settings, ...) are accepted when they hold a
value that means "not configured" and are written that way; anything else is refused, or with
`ignore_unknown=True` dropped and reported.

Pure: works on bytes only.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal, NoReturn, TypeAlias, TypeVar

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    Cluster,
    Header,
    HeaderPosition,
    HttpFrontend,
    HttpListener,
    HttpsListener,
    ListenerType,
    LoadBalancing,
    LoadMetric,
    Pairs,
    PathRule,
    PathRuleKind,
    ProxyProtocol,
    RedirectPolicy,
    RedirectScheme,
    RulePosition,
    SocketAddress,
    TcpFrontend,
    TcpListener,
    TlsVersion,
)
from sozu_operator.proxy.scalars import I32, I64, U32, U64, ipv6_from_halves, ipv6_halves

SozuVersion: TypeAlias = Literal[1, 2]

RECORD_TERMINATOR = b"\n\0"
"""Written after every record. Sōzu's reader only needs the `\\0`; the `\\n` is JSON whitespace."""

UPSTREAM_LOAD_BUFFER_BYTES = 200_000
"""`load_state` reads through a buffer of this size: a record (with its terminator) larger than
that makes Sōzu abort the whole load, so `render_state` refuses to write one."""

_JSON_WHITESPACE = b" \t\r\n"
_UDP_LISTENER_TYPE = 3  # ListenerType.UDP, 2.x only; we model no UDP listener

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
_E = TypeVar("_E", bound=IntEnum)
_T = TypeVar("_T")


# --- results and errors --------------------------------------------------------------------


class StateFileError(ValueError):
    """A state file that cannot be read or a request list that cannot be written.

    The message names the source, the record (0-based index, as in Sōzu's `SAVE-<n>` ids), its
    id and the JSON path of the offending value, e.g.
    `state.json: record 3 (id 'SAVE-3') at content.request_type.ADD_CLUSTER.load_balancing: ...`.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str,
        index: int | None = None,
        record_id: str | None = None,
        json_path: str | None = None,
    ) -> None:
        self.reason = reason
        self.source = source
        self.index = index
        self.record_id = record_id
        self.json_path = json_path or None
        where = source
        if index is not None:
            where += f": record {index}"
            if record_id is not None:
                where += f" (id {record_id!r})"
        if json_path:
            where += f" at {json_path}"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A record `parse_state(..., ignore_unknown=True)` left out because no typed request can
    represent it (a verb we do not model, or an activation of a UDP listener)."""

    index: int
    record_id: str | None
    verb: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class DroppedField:
    """A configured value `parse_state(..., ignore_unknown=True)` could not carry into the typed
    request (for example custom HTTP answers on a listener); the request was kept without it."""

    index: int
    record_id: str | None
    json_path: str
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedState:
    """The typed requests of a state file, in file order, and what had to be left behind.

    `skipped` and `dropped` are always empty unless `ignore_unknown=True` was passed."""

    requests: tuple[rq.Request, ...]
    skipped: tuple[SkippedRecord, ...] = ()
    dropped: tuple[DroppedField, ...] = ()


# --- upstream vocabulary ---------------------------------------------------------------------

# Request oneof members we do not model. Knowing them lets us say "not supported" rather than
# "not a Sōzu request" (which usually means a typo or a newer Sōzu).
_UNMODELLED_VERBS = frozenset(
    {
        "LAUNCH_WORKER",
        "UPGRADE_MAIN",
        "UPGRADE_WORKER",
        "SUBSCRIBE_EVENTS",
        "RELOAD_CONFIGURATION",
        "QUERY_METRICS",
        "SOFT_STOP",
        "HARD_STOP",
        "CONFIGURE_METRICS",
        "LOGGING",
        "RETURN_LISTEN_SOCKETS",
        # 2.x only
        "UPDATE_HTTP_LISTENER",
        "UPDATE_HTTPS_LISTENER",
        "UPDATE_TCP_LISTENER",
        "SET_MAX_CONNECTIONS_PER_IP",
        "QUERY_MAX_CONNECTIONS_PER_IP",
        "SET_HEALTH_CHECK",
        "REMOVE_HEALTH_CHECK",
        "QUERY_HEALTH_CHECKS",
        "SET_METRIC_DETAIL",
        "ADD_UDP_LISTENER",
        "UPDATE_UDP_LISTENER",
        "ADD_UDP_FRONTEND",
        "REMOVE_UDP_FRONTEND",
    }
)

# Sōzu's own builders (TOML loader, `sozu` CLI) fill these defaults; the worker treats them
# exactly like the unset values our requests leave, so both count as "not configured".
_DEFAULT_ALPN = ["h2", "http/1.1"]


def _is_unset(value: JsonValue) -> bool:
    return value is None or value == [] or value == {}


def _is_unset_or_false(value: JsonValue) -> bool:
    return _is_unset(value) or value is False


def _is_unset_or_true(value: JsonValue) -> bool:
    return _is_unset(value) or value is True


def _is_default_alpn(value: JsonValue) -> bool:
    return _is_unset(value) or value == _DEFAULT_ALPN


def _is_empty_answers(value: JsonValue) -> bool:
    # Builders write a CustomHttpAnswers object whose members are all null.
    return _is_unset(value) or (
        isinstance(value, dict) and all(member is None for member in value.values())
    )


_Neutral: TypeAlias = Callable[[JsonValue], bool]

# 2.x listener fields we do not model, in declaration order, each with the value we write
# (what Sōzu stores when a client leaves it unset) and the values we accept as "not configured".
_H2_TUNING_HEAD = (
    "h2_max_rst_stream_per_window",
    "h2_max_ping_per_window",
    "h2_max_settings_per_window",
    "h2_max_empty_data_per_window",
    "h2_max_continuation_frames",
    "h2_max_glitch_count",
    "h2_initial_connection_window",
    "h2_max_concurrent_streams",
    "h2_stream_shrink_ratio",
    "h2_max_rst_stream_lifetime",
    "h2_max_rst_stream_abusive_lifetime",
    "h2_max_rst_stream_emitted_lifetime",
    "h2_max_header_list_size",
)
_H2_TUNING_TAIL = (
    "h2_stream_idle_timeout_seconds",
    "h2_max_header_table_size",
    "h2_graceful_shutdown_deadline_seconds",
    "h2_max_window_update_stream0_per_window",
)
_UnmodelledField: TypeAlias = tuple[str, JsonValue, _Neutral, str]
_H2 = "HTTP/2 tuning"
_HTTP_LISTENER_EXTRA_V2: tuple[_UnmodelledField, ...] = (
    *((name, None, _is_unset, _H2) for name in (*_H2_TUNING_HEAD, *_H2_TUNING_TAIL)),
    ("sozu_id_header", None, _is_unset, "a custom request-id header"),
    ("answers", {}, _is_unset, "custom HTTP answers"),
    ("elide_x_real_ip", None, _is_unset_or_false, "X-Real-IP handling"),
    ("send_x_real_ip", None, _is_unset_or_false, "X-Real-IP handling"),
    ("h2_max_header_fields", None, _is_unset, _H2),
)
_HTTPS_LISTENER_EXTRA_V2: tuple[_UnmodelledField, ...] = (
    ("alpn_protocols", [], _is_default_alpn, "an ALPN protocol list"),
    *((name, None, _is_unset, _H2) for name in _H2_TUNING_HEAD),
    ("strict_sni_binding", None, _is_unset_or_true, "SNI binding settings"),
    ("disable_http11", None, _is_unset_or_false, "disabling HTTP/1.1"),
    *((name, None, _is_unset, _H2) for name in _H2_TUNING_TAIL),
    ("sozu_id_header", None, _is_unset, "a custom request-id header"),
    ("answers", {}, _is_unset, "custom HTTP answers"),
    ("elide_x_real_ip", None, _is_unset_or_false, "X-Real-IP handling"),
    ("send_x_real_ip", None, _is_unset_or_false, "X-Real-IP handling"),
    ("hsts", None, _is_unset, "an HSTS policy"),
    ("h2_max_header_fields", None, _is_unset, _H2),
)
_HTTP_ANSWERS_FIELD: _UnmodelledField = (
    "http_answers",
    None,
    _is_empty_answers,
    "custom HTTP answers",
)
_CLUSTER_EXTRA_V2: tuple[_UnmodelledField, ...] = (
    ("health_check", None, _is_unset, "a health check"),
    ("udp", None, _is_unset, "UDP settings"),
)
_FRONTEND_HSTS: _UnmodelledField = ("hsts", None, _is_unset, "an HSTS policy")


# --- parsing ---------------------------------------------------------------------------------


class _UnrepresentableRecord(Exception):
    """Raised while decoding a record that no typed request can stand for."""

    def __init__(self, verb: str | None, reason: str, json_path: str) -> None:
        super().__init__(reason)
        self.verb = verb
        self.reason = reason
        self.json_path = json_path


@dataclass(slots=True)
class _RecordReader:
    """Per-record context: where we are (for messages) and what lenient mode left behind.

    Mutable on purpose: the record id becomes known only after the JSON has been read, and
    errors before that point must still name the record."""

    source: str
    index: int
    ignore_unknown: bool
    dropped: list[DroppedField]
    record_id: str | None = None

    def fail(self, json_path: str, reason: str) -> NoReturn:
        raise StateFileError(
            reason,
            source=self.source,
            index=self.index,
            record_id=self.record_id,
            json_path=json_path,
        )

    def cannot_carry(self, json_path: str, reason: str) -> None:
        if not self.ignore_unknown:
            self.fail(json_path, reason + " (pass ignore_unknown=True to drop it)")
        self.dropped.append(DroppedField(self.index, self.record_id, json_path, reason))


def _describe(value: JsonValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {json.dumps(text, ensure_ascii=False)}"
    if isinstance(value, list):
        return "an array"
    return "an object"


class _Object:
    """One JSON object of a record being decoded: typed accessors that check each value and
    name its JSON path on failure, and remember which keys were read so that `done()` can vet
    the rest."""

    def __init__(self, reader: _RecordReader, value: JsonValue, path: str) -> None:
        if not isinstance(value, dict):
            reader.fail(path, f"expected a JSON object, got {_describe(value)}")
        self._reader = reader
        self._data: dict[str, JsonValue] = value
        self._path = path
        self._read: set[str] = set()

    @property
    def reader(self) -> _RecordReader:
        return self._reader

    def keys(self) -> list[str]:
        return list(self._data)

    def peek(self, key: str) -> JsonValue:
        """The raw value, without marking the key as read."""
        return self._data.get(key)

    def path(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def fail(self, key: str, reason: str) -> NoReturn:
        self._reader.fail(self.path(key), reason)

    def take(self, key: str) -> JsonValue:
        """The raw value (None when absent), marking the key as read."""
        self._read.add(key)
        return self._data.get(key)

    def required(self, key: str) -> JsonValue:
        """The raw value of a required field: present and not null."""
        if key not in self._data:
            self.fail(key, "missing required field")
        value = self.take(key)
        if value is None:
            self.fail(key, "required field is null")
        return value

    # scalars

    def _check_string(self, key: str, value: JsonValue) -> str:
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_describe(value)}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate escape (\ud800): serde_json refuses those.
            self.fail(key, "the string contains an unpaired surrogate escape")
        return value

    def string(self, key: str) -> str:
        return self._check_string(key, self.required(key))

    def optional_string(self, key: str) -> str | None:
        value = self.take(key)
        return None if value is None else self._check_string(key, value)

    def _check_bool(self, key: str, value: JsonValue) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_describe(value)}")
        return value

    def boolean(self, key: str) -> bool:
        return self._check_bool(key, self.required(key))

    def optional_boolean(self, key: str) -> bool | None:
        value = self.take(key)
        return None if value is None else self._check_bool(key, value)

    def _check_int(self, key: str, value: JsonValue, bounds: tuple[int, int]) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {_describe(value)}")
        low, high = bounds
        if not low <= value <= high:
            self.fail(key, f"{value} is outside {low}..{high}")
        return value

    def integer(self, key: str, bounds: tuple[int, int]) -> int:
        return self._check_int(key, self.required(key), bounds)

    def optional_integer(self, key: str, bounds: tuple[int, int]) -> int | None:
        value = self.take(key)
        return None if value is None else self._check_int(key, value, bounds)

    def _check_enum(self, key: str, value: JsonValue, enum: type[_E]) -> _E:
        number = self._check_int(key, value, I32)
        try:
            return enum(number)
        except ValueError:
            known = ", ".join(f"{member.value}={member.name}" for member in enum)
            self.fail(key, f"{number} is not a {enum.__name__} value (known: {known})")

    def enum(self, key: str, enum: type[_E]) -> _E:
        return self._check_enum(key, self.required(key), enum)

    def optional_enum(self, key: str, enum: type[_E]) -> _E | None:
        value = self.take(key)
        return None if value is None else self._check_enum(key, value, enum)

    # containers: a missing key reads as empty (Sōzu 2.x does the same for older files), but
    # null is refused as serde refuses it.

    def _array(self, key: str) -> list[JsonValue]:
        value = self.take(key)
        if key not in self._data:
            return []
        if not isinstance(value, list):
            self.fail(key, f"expected an array, got {_describe(value)}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        return tuple(
            self._check_string(f"{key}[{position}]", item)
            for position, item in enumerate(self._array(key))
        )

    def enums(self, key: str, enum: type[_E]) -> tuple[_E, ...]:
        return tuple(
            self._check_enum(f"{key}[{position}]", item, enum)
            for position, item in enumerate(self._array(key))
        )

    def messages(self, key: str, decode: Callable[[_Object], _T]) -> tuple[_T, ...]:
        return tuple(
            decode(_Object(self._reader, item, self.path(f"{key}[{position}]")))
            for position, item in enumerate(self._array(key))
        )

    def string_map(self, key: str) -> Pairs:
        value = self.take(key)
        if key not in self._data:
            return ()
        if not isinstance(value, dict):
            self.fail(key, f"expected an object, got {_describe(value)}")
        return tuple(
            sorted(
                (name, self._check_string(f"{key}[{json.dumps(name)}]", item))
                for name, item in value.items()
            )
        )

    # nested messages

    def message(self, key: str, decode: Callable[[_Object], _T]) -> _T:
        return decode(_Object(self._reader, self.required(key), self.path(key)))

    def optional_message(self, key: str, decode: Callable[[_Object], _T]) -> _T | None:
        value = self.take(key)
        return None if value is None else decode(_Object(self._reader, value, self.path(key)))

    # fields we cannot carry

    def unmodelled(self, fields: Iterable[_UnmodelledField]) -> None:
        for key, _written, neutral, what in fields:
            value = self.take(key)
            if not neutral(value):
                self._reader.cannot_carry(self.path(key), f"{what} is not supported by this tool")

    def done(self) -> None:
        """Vet keys nobody read. Sōzu ignores unknown keys; we do too while they say nothing,
        because a value there would be silently lost."""
        for key, value in self._data.items():
            if key not in self._read and not _is_unset(value):
                self._reader.cannot_carry(
                    self.path(key), f"unknown field holding {_describe(value)}"
                )


def _decode_ipv6(obj: _Object) -> ipaddress.IPv6Address:
    low, high = obj.integer("low", U64), obj.integer("high", U64)
    obj.done()
    return ipv6_from_halves(high, low)


def _decode_ip(obj: _Object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    inner = obj.take("inner")
    obj.done()
    if inner is None:
        # An IpAddress with no member is what Sōzu reads as 0.0.0.0.
        return ipaddress.IPv4Address(0)
    member = _Object(obj.reader, inner, obj.path("inner"))
    if member.keys() == ["V4"]:
        return ipaddress.IPv4Address(member.integer("V4", U32))
    if member.keys() == ["V6"]:
        return member.message("V6", _decode_ipv6)
    obj.fail("inner", f'expected exactly one of "V4" or "V6", got keys {member.keys()}')


def _decode_socket_address(obj: _Object) -> SocketAddress:
    ip = obj.message("ip", _decode_ip)
    port = obj.integer("port", U32)
    if port > 0xFFFF:
        # Sōzu would silently truncate this to 16 bits; we refuse rather than guess.
        obj.fail("port", f"{port} is not a TCP/UDP port (0..65535)")
    obj.done()
    return SocketAddress(ip, port)


def _u32(obj: _Object, key: str) -> int:
    return obj.integer(key, U32)


# The scalar fields that follow `address` and `public_address` in the listener messages, in
# .proto declaration order (the order Sōzu writes them in), each with how it is read. Rendering
# and decoding share these lists; HTTPS has HTTP's, then its TLS settings.
_ListenerFields: TypeAlias = tuple[tuple[str, Callable[[_Object, str], JsonValue]], ...]
_TCP_LISTENER_FIELDS: _ListenerFields = (
    ("expect_proxy", _Object.boolean),
    ("front_timeout", _u32),
    ("back_timeout", _u32),
    ("connect_timeout", _u32),
    ("active", _Object.boolean),
)
_HTTP_LISTENER_FIELDS: _ListenerFields = (
    ("expect_proxy", _Object.boolean),
    ("sticky_name", _Object.string),
    ("front_timeout", _u32),
    ("back_timeout", _u32),
    ("connect_timeout", _u32),
    ("request_timeout", _u32),
    ("active", _Object.boolean),
)


def _decode_listener_fields(obj: _Object, fields: _ListenerFields) -> dict[str, Any]:
    decoded: dict[str, Any] = {
        "address": obj.message("address", _decode_socket_address),
        "public_address": obj.optional_message("public_address", _decode_socket_address),
    }
    for key, read in fields:
        decoded[key] = read(obj, key)
    return decoded


def _decode_http_listener(obj: _Object) -> HttpListener:
    listener = HttpListener(**_decode_listener_fields(obj, _HTTP_LISTENER_FIELDS))
    obj.unmodelled((_HTTP_ANSWERS_FIELD, *_HTTP_LISTENER_EXTRA_V2))
    obj.done()
    return listener


def _decode_https_listener(obj: _Object) -> HttpsListener:
    listener = HttpsListener(
        **_decode_listener_fields(obj, _HTTP_LISTENER_FIELDS),
        versions=obj.enums("versions", TlsVersion),
        cipher_list=obj.strings("cipher_list"),
        cipher_suites=obj.strings("cipher_suites"),
        signature_algorithms=obj.strings("signature_algorithms"),
        groups_list=obj.strings("groups_list"),
        certificate=obj.optional_string("certificate"),
        certificate_chain=obj.strings("certificate_chain"),
        key=obj.optional_string("key"),
        send_tls13_tickets=obj.integer("send_tls13_tickets", U64),
    )
    obj.unmodelled((_HTTP_ANSWERS_FIELD, *_HTTPS_LISTENER_EXTRA_V2))
    obj.done()
    return listener


def _decode_tcp_listener(obj: _Object) -> TcpListener:
    listener = TcpListener(**_decode_listener_fields(obj, _TCP_LISTENER_FIELDS))
    obj.done()
    return listener


def _decode_listener_type(obj: _Object, verb: str) -> ListenerType:
    if obj.peek("proxy") == _UDP_LISTENER_TYPE:
        raise _UnrepresentableRecord(verb, "it targets a UDP listener", obj.path("proxy"))
    return obj.enum("proxy", ListenerType)


def _decode_cluster(obj: _Object) -> Cluster:
    cluster = Cluster(
        cluster_id=obj.string("cluster_id"),
        sticky_session=obj.boolean("sticky_session"),
        https_redirect=obj.boolean("https_redirect"),
        proxy_protocol=obj.optional_enum("proxy_protocol", ProxyProtocol),
        load_balancing=obj.enum("load_balancing", LoadBalancing),
        answer_503=obj.optional_string("answer_503"),
        load_metric=obj.optional_enum("load_metric", LoadMetric),
        http2=obj.optional_boolean("http2"),
        answers=obj.string_map("answers"),
        https_redirect_port=obj.optional_integer("https_redirect_port", U32),
        authorized_hashes=obj.strings("authorized_hashes"),
        www_authenticate=obj.optional_string("www_authenticate"),
        max_connections_per_ip=obj.optional_integer("max_connections_per_ip", U64),
        retry_after=obj.optional_integer("retry_after", U32),
    )
    obj.unmodelled(_CLUSTER_EXTRA_V2)
    obj.done()
    return cluster


def _decode_path_rule(obj: _Object) -> PathRule:
    rule = PathRule(kind=obj.enum("kind", PathRuleKind), value=obj.string("value"))
    obj.done()
    return rule


def _decode_header(obj: _Object) -> Header:
    header = Header(
        position=obj.enum("position", HeaderPosition),
        key=obj.string("key"),
        value=obj.string("val"),
    )
    obj.done()
    return header


def _decode_http_frontend(obj: _Object) -> HttpFrontend:
    frontend = HttpFrontend(
        cluster_id=obj.optional_string("cluster_id"),
        address=obj.message("address", _decode_socket_address),
        hostname=obj.string("hostname"),
        path=obj.message("path", _decode_path_rule),
        method=obj.optional_string("method"),
        position=obj.enum("position", RulePosition),
        tags=obj.string_map("tags"),
        redirect=obj.optional_enum("redirect", RedirectPolicy),
        required_auth=obj.optional_boolean("required_auth"),
        redirect_scheme=obj.optional_enum("redirect_scheme", RedirectScheme),
        redirect_template=obj.optional_string("redirect_template"),
        rewrite_host=obj.optional_string("rewrite_host"),
        rewrite_path=obj.optional_string("rewrite_path"),
        rewrite_port=obj.optional_integer("rewrite_port", U32),
        headers=obj.messages("headers", _decode_header),
    )
    obj.unmodelled((_FRONTEND_HSTS,))
    obj.done()
    return frontend


def _decode_tcp_frontend(obj: _Object) -> TcpFrontend:
    frontend = TcpFrontend(
        cluster_id=obj.string("cluster_id"),
        address=obj.message("address", _decode_socket_address),
        tags=obj.string_map("tags"),
    )
    obj.done()
    return frontend


def _decode_certificate_and_key(obj: _Object) -> CertificateAndKey:
    certificate = CertificateAndKey(
        certificate=obj.string("certificate"),
        certificate_chain=obj.strings("certificate_chain"),
        key=obj.string("key"),
        versions=obj.enums("versions", TlsVersion),
        names=obj.strings("names"),
    )
    obj.done()
    return certificate


def _decode_weight(obj: _Object) -> int:
    weight = obj.integer("weight", I32)
    obj.done()
    return weight


def _decode_add_backend(obj: _Object) -> Backend:
    backend = Backend(
        cluster_id=obj.string("cluster_id"),
        backend_id=obj.string("backend_id"),
        address=obj.message("address", _decode_socket_address),
        sticky_id=obj.optional_string("sticky_id"),
        weight=obj.optional_message("load_balancing_parameters", _decode_weight),
        backup=obj.optional_boolean("backup"),
    )
    obj.done()
    return backend


def _decoded(obj: _Object, request: rq.Request) -> rq.Request:
    obj.done()
    return request


# One decoder per verb. Payloads that are messages arrive as an `_Object`; the few that are
# bare strings (`REMOVE_CLUSTER`, paths, ids) are handled in `_decode_request`.
_MESSAGE_DECODERS: dict[str, Callable[[_Object], rq.Request]] = {
    "ADD_CLUSTER": lambda o: rq.AddCluster(_decode_cluster(o)),
    "ADD_HTTP_FRONTEND": lambda o: rq.AddHttpFrontend(_decode_http_frontend(o)),
    "REMOVE_HTTP_FRONTEND": lambda o: rq.RemoveHttpFrontend(_decode_http_frontend(o)),
    "ADD_HTTPS_FRONTEND": lambda o: rq.AddHttpsFrontend(_decode_http_frontend(o)),
    "REMOVE_HTTPS_FRONTEND": lambda o: rq.RemoveHttpsFrontend(_decode_http_frontend(o)),
    "ADD_TCP_FRONTEND": lambda o: rq.AddTcpFrontend(_decode_tcp_frontend(o)),
    "REMOVE_TCP_FRONTEND": lambda o: rq.RemoveTcpFrontend(_decode_tcp_frontend(o)),
    "ADD_BACKEND": lambda o: rq.AddBackend(_decode_add_backend(o)),
    "REMOVE_BACKEND": lambda o: _decoded(
        o,
        rq.RemoveBackend(
            cluster_id=o.string("cluster_id"),
            backend_id=o.string("backend_id"),
            address=o.message("address", _decode_socket_address),
        ),
    ),
    "ADD_CERTIFICATE": lambda o: _decoded(
        o,
        rq.AddCertificate(
            address=o.message("address", _decode_socket_address),
            certificate=o.message("certificate", _decode_certificate_and_key),
            expired_at=o.optional_integer("expired_at", I64),
        ),
    ),
    "REPLACE_CERTIFICATE": lambda o: _decoded(
        o,
        rq.ReplaceCertificate(
            address=o.message("address", _decode_socket_address),
            new_certificate=o.message("new_certificate", _decode_certificate_and_key),
            old_fingerprint=o.string("old_fingerprint"),
            new_expired_at=o.optional_integer("new_expired_at", I64),
        ),
    ),
    "REMOVE_CERTIFICATE": lambda o: _decoded(
        o,
        rq.RemoveCertificate(
            address=o.message("address", _decode_socket_address),
            fingerprint=o.string("fingerprint"),
        ),
    ),
    "ADD_HTTP_LISTENER": lambda o: rq.AddHttpListener(_decode_http_listener(o)),
    "ADD_HTTPS_LISTENER": lambda o: rq.AddHttpsListener(_decode_https_listener(o)),
    "ADD_TCP_LISTENER": lambda o: rq.AddTcpListener(_decode_tcp_listener(o)),
    "REMOVE_LISTENER": lambda o: _decoded(
        o,
        rq.RemoveListener(
            address=o.message("address", _decode_socket_address),
            proxy=_decode_listener_type(o, "REMOVE_LISTENER"),
        ),
    ),
    "ACTIVATE_LISTENER": lambda o: _decoded(
        o,
        rq.ActivateListener(
            address=o.message("address", _decode_socket_address),
            proxy=_decode_listener_type(o, "ACTIVATE_LISTENER"),
            from_scm=o.boolean("from_scm"),
        ),
    ),
    "DEACTIVATE_LISTENER": lambda o: _decoded(
        o,
        rq.DeactivateListener(
            address=o.message("address", _decode_socket_address),
            proxy=_decode_listener_type(o, "DEACTIVATE_LISTENER"),
            to_scm=o.boolean("to_scm"),
        ),
    ),
    "LIST_WORKERS": lambda o: _decoded(o, rq.ListWorkers()),
    "LIST_LISTENERS": lambda o: _decoded(o, rq.ListListeners()),
    "LIST_FRONTENDS": lambda o: _decoded(
        o,
        rq.ListFrontends(
            http=o.boolean("http"),
            https=o.boolean("https"),
            tcp=o.boolean("tcp"),
            domain=o.optional_string("domain"),
        ),
    ),
    "STATUS": lambda o: _decoded(o, rq.Status()),
    "QUERY_CLUSTERS_BY_DOMAIN": lambda o: _decoded(
        o,
        rq.QueryClustersByDomain(hostname=o.string("hostname"), path=o.optional_string("path")),
    ),
    "QUERY_CLUSTERS_HASHES": lambda o: _decoded(o, rq.QueryClustersHashes()),
    "QUERY_CERTIFICATES_FROM_THE_STATE": lambda o: _decoded(
        o,
        rq.QueryCertificatesFromTheState(
            domain=o.optional_string("domain"), fingerprint=o.optional_string("fingerprint")
        ),
    ),
    "QUERY_CERTIFICATES_FROM_WORKERS": lambda o: _decoded(
        o,
        rq.QueryCertificatesFromWorkers(
            domain=o.optional_string("domain"), fingerprint=o.optional_string("fingerprint")
        ),
    ),
    "COUNT_REQUESTS": lambda o: _decoded(o, rq.CountRequests()),
}

_STRING_DECODERS: dict[str, Callable[[str], rq.Request]] = {
    "SAVE_STATE": rq.SaveState,
    "LOAD_STATE": rq.LoadState,
    "REMOVE_CLUSTER": rq.RemoveCluster,
    "QUERY_CLUSTER_BY_ID": rq.QueryClusterById,
}


def _decode_request(reader: _RecordReader, content: JsonValue) -> rq.Request:
    envelope = _Object(reader, content, "content")
    request_type = envelope.take("request_type")
    envelope.done()
    if request_type is None:
        raise _UnrepresentableRecord(None, "it carries no request", envelope.path("request_type"))
    member = _Object(reader, request_type, envelope.path("request_type"))
    if len(member.keys()) != 1:
        envelope.fail("request_type", f"expected exactly one request member, got {member.keys()}")
    (verb,) = member.keys()
    if verb in _STRING_DECODERS:
        return _STRING_DECODERS[verb](member.string(verb))
    if verb in _MESSAGE_DECODERS:
        return _MESSAGE_DECODERS[verb](_Object(reader, member.take(verb), member.path(verb)))
    reason = (
        f"{verb} is a Sōzu request this tool does not model"
        if verb in _UNMODELLED_VERBS
        else f"{verb} is not a request type of Sōzu 1.0 or 2.1"
    )
    raise _UnrepresentableRecord(verb, reason, member.path(verb))


def _reject_duplicate_keys(pairs: list[tuple[str, JsonValue]]) -> dict[str, JsonValue]:
    # serde refuses a repeated field; Python would silently keep the last one.
    result: dict[str, JsonValue] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {json.dumps(key, ensure_ascii=False)} in an object")
        result[key] = value
    return result


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(reader: _RecordReader, chunk: bytes, offset: int) -> JsonValue:
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError as error:
        reader.fail("", f"not valid UTF-8 at byte {offset + error.start} of the file")
    try:
        value: JsonValue = json.loads(
            text,
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as error:
        at = offset + len(text[: error.pos].encode("utf-8"))
        reader.fail("", f"invalid JSON ({error.msg}) at byte {at} of the file")
    except ValueError as error:
        reader.fail("", f"invalid JSON: {error}")
    return value


def parse_state(
    data: bytes, *, source: str = "<state>", ignore_unknown: bool = False
) -> ParsedState:
    """Read a state file written by Sōzu 1.0 or 2.x `save_state` (or by `render_state`).

    Records are split on `\\0` as Sōzu's loader does; whitespace around a record and a
    whitespace-only tail are ignored, an empty record or a non-blank unterminated tail is an
    error. Every record must be a typed request: a verb we do not model, or a configured value
    our models cannot carry, raises `StateFileError` unless `ignore_unknown=True`, which skips
    such records and drops such values, reporting both in the result."""
    requests: list[rq.Request] = []
    skipped: list[SkippedRecord] = []
    dropped: list[DroppedField] = []
    position = 0
    index = 0
    while position < len(data):
        end = data.find(b"\0", position)
        if end == -1:
            if data[position:].strip(_JSON_WHITESPACE):
                raise StateFileError(
                    f"data after the last record is not terminated by \\n\\0 (from byte "
                    f"{position}; truncated file?)",
                    source=source,
                    index=index,
                )
            break
        chunk, offset, position = data[position:end], position, end + 1
        reader = _RecordReader(source, index, ignore_unknown, dropped)
        if not chunk.strip(_JSON_WHITESPACE):
            reader.fail("", f"empty record (a \\0 at byte {end} with no JSON before it)")
        record = _Object(reader, _load_json(reader, chunk, offset), "")
        record_id = record.peek("id")
        if isinstance(record_id, str):
            reader.record_id = record_id
        record.string("id")
        dropped_before = len(dropped)
        try:
            requests.append(_decode_request(reader, record.required("content")))
        except _UnrepresentableRecord as unrepresentable:
            if not ignore_unknown:
                reader.fail(
                    unrepresentable.json_path,
                    f"cannot be read: {unrepresentable.reason} "
                    "(pass ignore_unknown=True to skip such records)",
                )
            del dropped[dropped_before:]
            skipped.append(
                SkippedRecord(index, reader.record_id, unrepresentable.verb, unrepresentable.reason)
            )
        record.done()
        index += 1
    return ParsedState(tuple(requests), tuple(skipped), tuple(dropped))


# --- rendering -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RenderContext:
    index: int
    record_id: str
    verb: str
    version: SozuVersion

    def fail(self, json_path: str, reason: str) -> NoReturn:
        raise StateFileError(
            reason,
            source="render_state",
            index=self.index,
            record_id=self.record_id,
            json_path=f"content.request_type.{self.verb}{json_path}",
        )

    def v2_only(self, json_path: str, is_set: bool) -> None:
        if is_set and self.version == 1:
            self.fail(json_path, "is a Sōzu 2.x setting; a 1.0 state file cannot carry it")


def _render_socket_address(address: SocketAddress) -> dict[str, JsonValue]:
    inner: dict[str, JsonValue]
    if isinstance(address.ip, ipaddress.IPv4Address):
        inner = {"V4": int(address.ip)}
    else:
        high, low = ipv6_halves(address.ip)
        inner = {"V6": {"low": low, "high": high}}
    return {"ip": {"inner": inner}, "port": address.port}


def _optional_address(address: SocketAddress | None) -> JsonValue:
    return None if address is None else _render_socket_address(address)


def _enum(value: IntEnum | None) -> JsonValue:
    return None if value is None else int(value)


def _map(pairs: Pairs) -> dict[str, JsonValue]:
    # Sōzu's maps are BTreeMaps: keys in byte order, which is code-point order for UTF-8.
    return dict(sorted(pairs))


def _versioned(
    rendered: dict[str, JsonValue],
    ctx: _RenderContext,
    *,
    v2_fields: dict[str, JsonValue],
    extras_v2: Iterable[_UnmodelledField],
) -> dict[str, JsonValue]:
    """For 2.1, `rendered` followed by the modelled 2.x fields and the unmodelled ones as we
    write them; for 1.0, `rendered` alone, refused if a modelled 2.x field is set."""
    if ctx.version == 1:
        for key, value in v2_fields.items():
            ctx.v2_only(f".{key}", not _is_unset(value))
        return rendered
    return rendered | v2_fields | {key: written for key, written, _neutral, _what in extras_v2}


def _render_listener_fields(
    listener: HttpListener | HttpsListener | TcpListener, fields: _ListenerFields
) -> dict[str, JsonValue]:
    rendered: dict[str, JsonValue] = {
        "address": _render_socket_address(listener.address),
        "public_address": _optional_address(listener.public_address),
    }
    for key, _read in fields:
        rendered[key] = getattr(listener, key)
    return rendered


def _render_http_listener(listener: HttpListener, ctx: _RenderContext) -> dict[str, JsonValue]:
    rendered = _render_listener_fields(listener, _HTTP_LISTENER_FIELDS)
    rendered["http_answers"] = None
    return _versioned(rendered, ctx, v2_fields={}, extras_v2=_HTTP_LISTENER_EXTRA_V2)


def _render_https_listener(listener: HttpsListener, ctx: _RenderContext) -> dict[str, JsonValue]:
    rendered = _render_listener_fields(listener, _HTTP_LISTENER_FIELDS) | {
        "versions": [int(version) for version in listener.versions],
        "cipher_list": list(listener.cipher_list),
        "cipher_suites": list(listener.cipher_suites),
        "signature_algorithms": list(listener.signature_algorithms),
        "groups_list": list(listener.groups_list),
        "certificate": listener.certificate,
        "certificate_chain": list(listener.certificate_chain),
        "key": listener.key,
        "send_tls13_tickets": listener.send_tls13_tickets,
        "http_answers": None,
    }
    return _versioned(rendered, ctx, v2_fields={}, extras_v2=_HTTPS_LISTENER_EXTRA_V2)


def _render_tcp_listener(listener: TcpListener) -> dict[str, JsonValue]:
    return _render_listener_fields(listener, _TCP_LISTENER_FIELDS)


def _render_cluster(cluster: Cluster, ctx: _RenderContext) -> dict[str, JsonValue]:
    ctx.v2_only(
        ".load_balancing",
        cluster.load_balancing in (LoadBalancing.HRW, LoadBalancing.MAGLEV),
    )
    rendered: dict[str, JsonValue] = {
        "cluster_id": cluster.cluster_id,
        "sticky_session": cluster.sticky_session,
        "https_redirect": cluster.https_redirect,
        "proxy_protocol": _enum(cluster.proxy_protocol),
        "load_balancing": int(cluster.load_balancing),
        "answer_503": cluster.answer_503,
        "load_metric": _enum(cluster.load_metric),
    }
    v2_fields: dict[str, JsonValue] = {
        "http2": cluster.http2,
        "answers": _map(cluster.answers),
        "https_redirect_port": cluster.https_redirect_port,
        "authorized_hashes": list(cluster.authorized_hashes),
        "www_authenticate": cluster.www_authenticate,
        "max_connections_per_ip": cluster.max_connections_per_ip,
        "retry_after": cluster.retry_after,
    }
    return _versioned(rendered, ctx, v2_fields=v2_fields, extras_v2=_CLUSTER_EXTRA_V2)


def _render_http_frontend(frontend: HttpFrontend, ctx: _RenderContext) -> dict[str, JsonValue]:
    rendered: dict[str, JsonValue] = {
        "cluster_id": frontend.cluster_id,
        "address": _render_socket_address(frontend.address),
        "hostname": frontend.hostname,
        "path": {"kind": int(frontend.path.kind), "value": frontend.path.value},
        "method": frontend.method,
        "position": int(frontend.position),
        "tags": _map(frontend.tags),
    }
    v2_fields: dict[str, JsonValue] = {
        "redirect": _enum(frontend.redirect),
        "required_auth": frontend.required_auth,
        "redirect_scheme": _enum(frontend.redirect_scheme),
        "redirect_template": frontend.redirect_template,
        "rewrite_host": frontend.rewrite_host,
        "rewrite_path": frontend.rewrite_path,
        "rewrite_port": frontend.rewrite_port,
        "headers": [
            {"position": int(header.position), "key": header.key, "val": header.value}
            for header in frontend.headers
        ],
    }
    return _versioned(rendered, ctx, v2_fields=v2_fields, extras_v2=(_FRONTEND_HSTS,))


def _render_tcp_frontend(frontend: TcpFrontend) -> dict[str, JsonValue]:
    return {
        "cluster_id": frontend.cluster_id,
        "address": _render_socket_address(frontend.address),
        "tags": _map(frontend.tags),
    }


def _render_certificate_and_key(certificate: CertificateAndKey) -> dict[str, JsonValue]:
    return {
        "certificate": certificate.certificate,
        "certificate_chain": list(certificate.certificate_chain),
        "key": certificate.key,
        "versions": [int(version) for version in certificate.versions],
        "names": list(certificate.names),
    }


def _render_backend(backend: Backend) -> dict[str, JsonValue]:
    return {
        "cluster_id": backend.cluster_id,
        "backend_id": backend.backend_id,
        "address": _render_socket_address(backend.address),
        "sticky_id": backend.sticky_id,
        "load_balancing_parameters": None if backend.weight is None else {"weight": backend.weight},
        "backup": backend.backup,
    }


def _certificate_filters(domain: str | None, fingerprint: str | None) -> dict[str, JsonValue]:
    return {"domain": domain, "fingerprint": fingerprint}


def _render_payload(request: rq.Request, ctx: _RenderContext) -> JsonValue:
    match request:
        case rq.AddCluster(cluster):
            return _render_cluster(cluster, ctx)
        case rq.RemoveCluster(cluster_id) | rq.QueryClusterById(cluster_id):
            return cluster_id
        case (
            rq.AddHttpFrontend(frontend)
            | rq.RemoveHttpFrontend(frontend)
            | rq.AddHttpsFrontend(frontend)
            | rq.RemoveHttpsFrontend(frontend)
        ):
            return _render_http_frontend(frontend, ctx)
        case rq.AddTcpFrontend(tcp_frontend) | rq.RemoveTcpFrontend(tcp_frontend):
            return _render_tcp_frontend(tcp_frontend)
        case rq.AddBackend(backend):
            return _render_backend(backend)
        case rq.RemoveBackend(cluster_id, backend_id, address):
            return {
                "cluster_id": cluster_id,
                "backend_id": backend_id,
                "address": _render_socket_address(address),
            }
        case rq.AddCertificate(address, certificate, expired_at):
            return {
                "address": _render_socket_address(address),
                "certificate": _render_certificate_and_key(certificate),
                "expired_at": expired_at,
            }
        case rq.ReplaceCertificate(address, new_certificate, old_fingerprint, new_expired_at):
            return {
                "address": _render_socket_address(address),
                "new_certificate": _render_certificate_and_key(new_certificate),
                "old_fingerprint": old_fingerprint,
                "new_expired_at": new_expired_at,
            }
        case rq.RemoveCertificate(address, fingerprint):
            return {"address": _render_socket_address(address), "fingerprint": fingerprint}
        case rq.AddHttpListener(http_listener):
            return _render_http_listener(http_listener, ctx)
        case rq.AddHttpsListener(https_listener):
            return _render_https_listener(https_listener, ctx)
        case rq.AddTcpListener(tcp_listener):
            return _render_tcp_listener(tcp_listener)
        case rq.RemoveListener(address, proxy):
            return {"address": _render_socket_address(address), "proxy": int(proxy)}
        case rq.ActivateListener(address, proxy, from_scm):
            return {
                "address": _render_socket_address(address),
                "proxy": int(proxy),
                "from_scm": from_scm,
            }
        case rq.DeactivateListener(address, proxy, to_scm):
            return {
                "address": _render_socket_address(address),
                "proxy": int(proxy),
                "to_scm": to_scm,
            }
        case rq.ListFrontends(http, https, tcp, domain):
            return {"http": http, "https": https, "tcp": tcp, "domain": domain}
        case rq.QueryClustersByDomain(hostname, path):
            return {"hostname": hostname, "path": path}
        case rq.QueryCertificatesFromTheState(
            domain, fingerprint
        ) | rq.QueryCertificatesFromWorkers(domain, fingerprint):
            return _certificate_filters(domain, fingerprint)
        case rq.SaveState(path) | rq.LoadState(path):
            return path
        case (
            rq.ListWorkers()
            | rq.ListListeners()
            | rq.Status()
            | rq.QueryClustersHashes()
            | rq.CountRequests()
        ):
            return {}
    raise TypeError(f"not a request: {request!r}")


_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")


def _verb(request: rq.Request) -> str:
    # Our class names are Sōzu's CamelCase variant names; serde writes them SCREAMING_SNAKE.
    return _CAMEL_BOUNDARY.sub("_", type(request).__name__).upper()


def render_state(requests: Iterable[rq.Request], *, version: SozuVersion = 2) -> bytes:
    """Write `requests`, in the given order, as Sōzu's `save_state` would: records `SAVE-0`,
    `SAVE-1`, ... each followed by `\\n\\0`, in the layout of Sōzu 2.1 (`version=2`) or 1.0
    (`version=1`). Fields our models do not carry are written unset (`null`, `[]` or `{}`),
    which is what Sōzu stores and writes back for requests sent by this tool.

    Raises `StateFileError` when a request sets a 2.x-only field for `version=1`, or when a
    record would exceed Sōzu's load buffer (`UPSTREAM_LOAD_BUFFER_BYTES`)."""
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, not {version!r}")
    out = bytearray()
    for index, request in enumerate(requests):
        verb = _verb(request)
        ctx = _RenderContext(index, f"SAVE-{index}", verb, version)
        payload = _render_payload(request, ctx)
        record = {"id": ctx.record_id, "content": {"request_type": {verb: payload}}}
        # serde_json's compact form; non-ASCII stays UTF-8 and control characters use the same
        # escapes (\n, \t, ..., \u00XX lowercase) as Python's encoder.
        encoded = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if len(encoded) + len(RECORD_TERMINATOR) > UPSTREAM_LOAD_BUFFER_BYTES:
            ctx.fail(
                "",
                f"the record is {len(encoded)} bytes; Sōzu's load_state cannot read a record "
                f"larger than {UPSTREAM_LOAD_BUFFER_BYTES - len(RECORD_TERMINATOR)} bytes",
            )
        out += encoded
        out += RECORD_TERMINATOR
    return bytes(out)
