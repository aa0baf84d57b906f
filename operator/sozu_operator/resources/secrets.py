"""TLS material from a `kubernetes.io/tls` Secret, wherever the Secret comes from (a watched
Kubernetes object in the operator, a YAML document next to the resources for the CLI)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from sozu_operator.resources.models import TlsMaterial

TLS_SECRET_TYPE = "kubernetes.io/tls"


def tls_material(secret: Mapping[str, Any] | None, *, name: str) -> TlsMaterial | str:
    """The certificate and key of a TLS Secret, or a sentence saying why there are none.
    `name` is how the Secret is named in that sentence ("Secret default/web-tls")."""
    if secret is None:
        return f"{name} does not exist"
    if secret.get("type") != TLS_SECRET_TYPE:
        return f"{name} has type {secret.get('type')!r}, not {TLS_SECRET_TYPE}"
    data = secret.get("data") or {}
    string_data = secret.get("stringData") or {}
    if not isinstance(data, Mapping) or not isinstance(string_data, Mapping):
        return f"{name}: data is not a map"
    fields: dict[str, str] = {}
    for field in ("tls.crt", "tls.key"):
        if field in string_data:
            fields[field] = str(string_data[field])
        elif field in data:
            try:
                fields[field] = base64.b64decode(str(data[field]), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return f"{name}: data.{field} is not base64-encoded PEM text"
        else:
            return f"{name} has no {field}"
    return TlsMaterial(certificate=fields["tls.crt"], key=fields["tls.key"])
