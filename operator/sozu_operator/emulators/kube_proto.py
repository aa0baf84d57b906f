"""Decoding of the protobuf request bodies kubectl's typed clients send.

`kubectl create namespace|secret|configmap` POST `application/vnd.kubernetes.protobuf` (and
accept JSON back). A body is the magic `k8s\\0` then a `runtime.Unknown` {1: TypeMeta
{1: apiVersion, 2: kind}, 2: raw object, 3: contentEncoding, 4: contentType}. Only the kinds in
`_KINDS` are understood, field by field (numbers from k8s.io/api generated.proto, checked
against what kubectl 1.32 sends); the server-set ObjectMeta fields are skipped, and zero values
are dropped as JSON's omitempty would. Anything else is refused with 415 by the caller.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Final

from sozu_operator.emulators.kube_meta import JsonObj

MAGIC: Final = b"k8s\x00"


class ProtoUnsupported(Exception):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtoUnsupported("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) in wire order: varints as int, length-delimited as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, data[pos:pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ProtoUnsupported(f"wire type {wire}")
    return out


# A message spec: field number -> (JSON name, kind); kind is a scalar kind or a nested spec.
Spec = Mapping[int, tuple[str, Any]]

_OBJECT_META: Final[Spec] = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    11: ("labels", "map_string"),
    12: ("annotations", "map_string"),
    14: ("finalizers", "repeated_string"),
}
_KINDS: Final[Mapping[tuple[str, str], Spec]] = {
    ("v1", "Namespace"): {
        1: ("metadata", _OBJECT_META),
        2: ("spec", {1: ("finalizers", "repeated_string")}),
    },
    ("v1", "Secret"): {
        1: ("metadata", _OBJECT_META),
        2: ("data", "map_bytes"),
        3: ("type", "string"),
        4: ("stringData", "map_string"),
        5: ("immutable", "bool"),
    },
    ("v1", "ConfigMap"): {
        1: ("metadata", _OBJECT_META),
        2: ("data", "map_string"),
        3: ("binaryData", "map_bytes"),
        4: ("immutable", "bool"),
    },
}


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise ProtoUnsupported("expected a string")
    return value.decode()


def _message(data: bytes, spec: Spec) -> JsonObj:
    out: JsonObj = {}
    for number, value in _fields(data):
        if number not in spec:
            continue  # server-set or unsupported fields (e.g. ObjectMeta.uid)
        name, kind = spec[number]
        if isinstance(kind, Mapping):
            if not isinstance(value, bytes):
                raise ProtoUnsupported(f"{name}: expected a message")
            nested = _message(value, kind)
            if nested:
                out[name] = nested
        elif kind == "string":
            if text := _text(value):
                out[name] = text
        elif kind == "bool":
            if value:
                out[name] = True
        elif kind == "repeated_string":
            out.setdefault(name, []).append(_text(value))
        elif kind in ("map_string", "map_bytes"):
            if not isinstance(value, bytes):
                raise ProtoUnsupported(f"{name}: expected a map entry")
            entry = dict(_fields(value))
            key = _text(entry.get(1, b""))
            raw = entry.get(2, b"")
            if not isinstance(raw, bytes):
                raise ProtoUnsupported(f"{name}: expected bytes")
            out.setdefault(name, {})[key] = (
                raw.decode() if kind == "map_string" else base64.b64encode(raw).decode())
    return out


def decode(body: bytes) -> JsonObj:
    """The JSON form of a protobuf-encoded object, or ProtoUnsupported."""
    if not body.startswith(MAGIC):
        raise ProtoUnsupported("missing the k8s protobuf magic prefix")
    envelope = dict(_fields(body[len(MAGIC):]))
    type_meta = envelope.get(1, b"")
    raw = envelope.get(2, b"")
    if not isinstance(type_meta, bytes) or not isinstance(raw, bytes):
        raise ProtoUnsupported("malformed envelope")
    if envelope.get(3):
        raise ProtoUnsupported("encoded (compressed) protobuf bodies")
    meta = dict(_fields(type_meta))
    api_version, kind = _text(meta.get(1, b"")), _text(meta.get(2, b""))
    spec = _KINDS.get((api_version, kind))
    if spec is None:
        raise ProtoUnsupported(f"protobuf bodies of {api_version}/{kind}")
    return {"apiVersion": api_version, "kind": kind, **_message(raw, spec)}
