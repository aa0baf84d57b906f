"""Shared vocabulary of the Kubernetes emulator: API errors rendered as `Status` bodies, field
errors worded like apimachinery's `field.Error`, timestamps, and ObjectMeta validation.

Messages follow the real API server's wording closely enough that kubectl prints what a user
would see against a real cluster (kubectl re-formats 422 bodies from `details.causes`).
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import kmock

JsonObj = dict[str, Any]

# --- errors ---------------------------------------------------------------------------------------


class ApiError(kmock.KubernetesError):
    """An error answered as a `kind: Status` body (kmock's error type, so that kmock's own
    rendering would also produce a Status if one ever escaped our handler)."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: JsonObj | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status=code, reason=reason, message=message, details=details)
        object.__setattr__(self, "extra_headers", dict(headers or {}))

    @property
    def code(self) -> int:
        return int(self.status)

    def body(self) -> JsonObj:
        body: JsonObj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"


def qualified_resource(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified_resource(group, plural)} "{name}" not found',
        details={"name": name, "group": group, "kind": plural},
    )


def route_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified_resource(group, plural)} "{name}" already exists',
        details={"name": name, "group": group, "kind": plural},
    )


def conflict(group: str, plural: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified_resource(group, plural)} "{name}": {why}',
        details={"name": name, "group": group, "kind": plural},
    )


MODIFIED_CONFLICT: Final = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested "
                       "resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str, accepted: Sequence[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}",
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def generic_for_code(code: int, message: str | None = None) -> ApiError:
    """What an injected fault answers: the reason the real server uses for that code."""
    reasons = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        410: "Expired",
        422: "Invalid",
        429: "TooManyRequests",
        500: "InternalError",
        503: "ServiceUnavailable",
        504: "Timeout",
    }
    reason = reasons.get(code, "InternalError" if code >= 500 else "BadRequest")
    headers = {"Retry-After": "1"} if code in (429, 503) else None
    return ApiError(code, reason, message or f"injected fault ({code} {reason})", headers=headers)


# --- field errors (422 Invalid) -------------------------------------------------------------------

_REASONS: Final = {
    "Required": "FieldValueRequired",
    "Invalid": "FieldValueInvalid",
    "NotSupported": "FieldValueNotSupported",
    "Duplicate": "FieldValueDuplicate",
    "TooLong": "FieldValueTooLong",
    "TooMany": "FieldValueTooMany",
    "Forbidden": "FieldValueForbidden",
}


def go_value(value: Any) -> str:
    """How apimachinery prints a bad value inside an error message (roughly `%#v`)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One cause of a 422: `kind` is one of Required/Invalid/NotSupported/Duplicate/TooLong/
    TooMany/Forbidden; `body` is everything after "<field>: "."""

    field: str
    kind: str
    body: str

    @property
    def reason(self) -> str:
        return _REASONS.get(self.kind, "FieldValueInvalid")

    def text(self) -> str:
        return f"{self.field}: {self.body}" if self.field else self.body

    def cause(self) -> JsonObj:
        return {"reason": self.reason, "message": self.body, "field": self.field}


def required(field: str, detail: str = "") -> FieldError:
    body = f"Required value: {detail}" if detail else "Required value"
    return FieldError(field, "Required", body)


def invalid(field: str, value: Any, detail: str) -> FieldError:
    shown = go_value(value)
    return FieldError(field, "Invalid", f"Invalid value: {shown}: {detail}" if detail
                      else f"Invalid value: {shown}")


def not_supported(field: str, value: Any, supported: Iterable[Any]) -> FieldError:
    options = ", ".join(go_value(v) for v in supported)
    return FieldError(
        field, "NotSupported", f"Unsupported value: {go_value(value)}: supported values: {options}"
    )


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError(field, "Duplicate", f"Duplicate value: {go_value(value)}")


def too_long(field: str, limit: int) -> FieldError:
    return FieldError(field, "TooLong", f"Too long: may not be more than {limit} bytes")


def too_many(field: str, actual: int, limit: int) -> FieldError:
    return FieldError(field, "TooMany", f"Too many: {actual}: must have at most {limit} items")


def forbidden_field(field: str, detail: str) -> FieldError:
    return FieldError(field, "Forbidden", f"Forbidden: {detail}")


def invalid_object(kind: str, group: str, name: str, errors: Sequence[FieldError]) -> ApiError:
    """The 422 the API server answers for validation failures."""
    qualified = f"{kind}.{group}" if group else kind
    texts = [e.text() for e in errors]
    joined = texts[0] if len(texts) == 1 else f"[{', '.join(texts)}]"
    return ApiError(
        422,
        "Invalid",
        f'{qualified} "{name}" is invalid: {joined}',
        details={
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [e.cause() for e in errors],
        },
    )


# --- time -----------------------------------------------------------------------------------------


def now_rfc3339() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime.datetime | None:
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def human_duration(seconds: float) -> str:
    """apimachinery's `duration.HumanDuration`, which kubectl shows in AGE columns."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        rest = days % 365
        return f"{days // 365}y{rest}d" if rest else f"{days // 365}y"
    return f"{hours // 24 // 365}y"


def age_of(timestamp: Any) -> str:
    if not isinstance(timestamp, str):
        return "<unknown>"
    parsed = parse_time(timestamp)
    if parsed is None:
        return "<invalid>"
    return human_duration((datetime.datetime.now(tz=datetime.UTC) - parsed).total_seconds())


# --- names and metadata ---------------------------------------------------------------------------

DNS1123_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN: Final = rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*"
_LABEL_RE: Final = re.compile(DNS1123_LABEL)
_SUBDOMAIN_RE: Final = re.compile(DNS1123_SUBDOMAIN)
_QUALIFIED_NAME_RE: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE_RE: Final = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

LABEL_MSG: Final = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
    f"for validation is '{DNS1123_LABEL}')"
)
SUBDOMAIN_MSG: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    f"for validation is '{DNS1123_SUBDOMAIN}')"
)


def dns_label_problems(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not _LABEL_RE.fullmatch(value):
        problems.append(LABEL_MSG)
    return problems


def dns_subdomain_problems(value: str) -> list[str]:
    problems = []
    if len(value) > 253:
        problems.append("must be no more than 253 characters")
    if not _SUBDOMAIN_RE.fullmatch(value):
        problems.append(SUBDOMAIN_MSG)
    return problems


def qualified_name_problems(value: str) -> list[str]:
    """Label keys, annotation keys and finalizers: `[prefix/]name`."""
    prefix, _, name = value.rpartition("/")
    problems = []
    if "/" in value and not prefix:
        problems.append("prefix part must be non-empty")
    elif prefix:
        problems.extend(f"prefix part {p}" for p in dns_subdomain_problems(prefix))
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME_RE.fullmatch(name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        )
    return problems


def label_value_problems(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.fullmatch(value):
        problems.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', "
            "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  "
            "or 'my_value',  or '12345', regex used for validation is "
            "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        )
    return problems


# ObjectMeta fields a client may send; anything else is an unknown field (strict validation).
OBJECT_META_FIELDS: Final = frozenset(
    {
        "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
        "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
        "annotations", "ownerReferences", "finalizers", "managedFields",
    }
)
TOTAL_ANNOTATION_SIZE: Final = 256 * 1024


def validate_metadata(meta: Mapping[str, Any], *, name_is_label: bool) -> list[FieldError]:
    """ObjectMeta checks the API server applies to every kind (apimachinery ValidateObjectMeta)."""
    errors: list[FieldError] = []
    name = meta.get("name")
    if isinstance(name, str) and name:
        problems = dns_label_problems(name) if name_is_label else dns_subdomain_problems(name)
        errors.extend(invalid("metadata.name", name, p) for p in problems)
    labels = meta.get("labels")
    if labels is not None and not isinstance(labels, dict):
        errors.append(invalid("metadata.labels", labels, "must be a map of strings"))
    for key, value in (labels or {}).items() if isinstance(labels, dict) else ():
        errors.extend(invalid("metadata.labels", key, p) for p in qualified_name_problems(key))
        if not isinstance(value, str):
            errors.append(invalid(f"metadata.labels[{key}]", value, "must be a string"))
        else:
            errors.extend(invalid("metadata.labels", value, p) for p in label_value_problems(value))
    annotations = meta.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        errors.append(invalid("metadata.annotations", annotations, "must be a map of strings"))
    elif isinstance(annotations, dict):
        size = 0
        for key, value in annotations.items():
            problems = qualified_name_problems(key.lower())
            errors.extend(invalid("metadata.annotations", key, p) for p in problems)
            if not isinstance(value, str):
                errors.append(invalid(f"metadata.annotations[{key}]", value, "must be a string"))
            else:
                size += len(key) + len(value.encode())
        if size > TOTAL_ANNOTATION_SIZE:
            errors.append(too_long("metadata.annotations", TOTAL_ANNOTATION_SIZE))
    finalizers = meta.get("finalizers")
    if finalizers is not None and not isinstance(finalizers, list):
        errors.append(invalid("metadata.finalizers", finalizers, "must be a list of strings"))
    for index, finalizer in enumerate(finalizers or []) if isinstance(finalizers, list) else ():
        field = f"metadata.finalizers[{index}]"
        if not isinstance(finalizer, str):
            errors.append(invalid(field, finalizer, "must be a string"))
        else:
            errors.extend(invalid(field, finalizer, p) for p in qualified_name_problems(finalizer))
    return errors


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
