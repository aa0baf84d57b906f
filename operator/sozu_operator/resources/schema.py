"""OpenAPI v3 schemas of the three resource kinds: the single source of truth.

`scripts/gen_crds.py` writes `crds/*.yaml` from `crd_manifest()`, and `validate.py` checks
objects against the very same dicts, so the API server and the CLI can never disagree about what
a valid resource is. Constraints that need more than a schema are written as CEL rules
(`x-kubernetes-validations`); each one has a Python twin in `validate.py`, and a test fails when a
rule has none.

The schemas are structural (every node typed, no `additionalProperties` next to `properties`) as
apiextensions.k8s.io/v1 demands. Defaults are only placed where the API server may apply them
without breaking a rule: e.g. `position` has none, because a defaulted position on a TCP frontend
would violate "TCP frontends have no position". The Python side applies the same defaults, taken
from the constants below.

Enum values are Sōzu's own protobuf names (ROUND_ROBIN, PREFIX, TREE…), so that Sōzu's
documentation reads directly onto these resources.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sozu_operator.proxy.model import (
    HeaderPosition,
    LoadBalancing,
    LoadMetric,
    PathRuleKind,
    ProxyProtocol,
    RedirectPolicy,
    RedirectScheme,
    RulePosition,
)

Schema = dict[str, Any]

GROUP: Final = "sozu.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CATEGORY: Final = "sozu"

CLUSTER_KIND: Final = "SozuCluster"
FRONTEND_KIND: Final = "SozuFrontend"
CERTIFICATE_KIND: Final = "SozuCertificate"
KINDS: Final = (CLUSTER_KIND, FRONTEND_KIND, CERTIFICATE_KIND)

# Tag keys under this prefix carry ownership markers (reconcile/ownership.py); the whole prefix
# is reserved so that adding a marker later cannot collide with a user's tag.
RESERVED_TAG_PREFIX: Final = "sozu.io/"

# Defaults, shared by the schemas (applied by the API server) and the parser (applied in CLI mode).
DEFAULT_NAMESPACE: Final = "default"
DEFAULT_PROTOCOL: Final = "HTTP"
DEFAULT_LOAD_BALANCING: Final = LoadBalancing.ROUND_ROBIN.name
DEFAULT_PATH_KIND: Final = PathRuleKind.PREFIX.name
DEFAULT_POSITION: Final = RulePosition.TREE.name
DEFAULT_HEADER_POSITION: Final = HeaderPosition.REQUEST.name

PROTOCOLS: Final = ("HTTP", "HTTPS", "TCP")
TLS_VERSIONS: Final = ("TLS_V1_2", "TLS_V1_3")  # the only ones Sōzu's rustls workers honour
LOAD_BALANCING_V2_ONLY: Final = (LoadBalancing.HRW.name, LoadBalancing.MAGLEV.name)

# Spec fields that only Sōzu 2.x understands. The 1.0 codec refuses them; the builder reports
# them per resource before anything reaches a proxy.
CLUSTER_V2_FIELDS: Final = (
    "http2",
    "answers",
    "httpsRedirectPort",
    "authorizedHashes",
    "wwwAuthenticate",
    "maxConnectionsPerIp",
    "retryAfter",
)
FRONTEND_V2_FIELDS: Final = (
    "redirect",
    "requiredAuth",
    "redirectScheme",
    "redirectTemplate",
    "rewriteHost",
    "rewritePath",
    "rewritePort",
    "headers",
)
# Everything a TCP frontend must leave unset: Sōzu's RequestTcpFrontend has no such fields.
HTTP_ONLY_FRONTEND_FIELDS: Final = ("hostname", "path", "method", "position", *FRONTEND_V2_FIELDS)

# Patterns are written for both Python's `re` and RE2 (the API server's engine): no lookaround,
# no backreferences, explicit ASCII classes.
DNS_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HOSTNAME: Final = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ADDRESS: Final = r"^([0-9]{1,3}(\.[0-9]{1,3}){3}|\[[0-9a-fA-F:.]+\]):[0-9]{1,5}$"
CLUSTER_ID: Final = r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$"
BACKEND_ID: Final = r"^[A-Za-z0-9._:/\[\]-]+$"
STICKY_ID: Final = r"^[A-Za-z0-9._~-]+$"
METHOD: Final = r"^[A-Z][A-Z0-9_-]*$"
PORT_NAME: Final = DNS_LABEL  # an IANA service name; checked in Python (int-or-string field)
HEADER_NAME: Final = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
NO_LINE_BREAK: Final = r"^[^\r\n]*$"
CONDITION_TYPE: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

# How a failed pattern reads in an error message: "'x' is not <hint>". Patterns are the keys,
# so two constants with the same regex share one hint.
PATTERN_HINTS: Final[Mapping[str, str]] = {
    DNS_LABEL: "a DNS label (lowercase letters, digits and '-')",
    DNS_SUBDOMAIN: "a DNS subdomain name (lowercase letters, digits, '-' and '.')",
    HOSTNAME: "a lowercase DNS name (optionally starting with '*.')",
    ADDRESS: "an address of the form IP:PORT or [IPv6]:PORT",
    CLUSTER_ID: "a cluster id (letters, digits, '.', '_', '/', '-'; alphanumeric at both ends)",
    BACKEND_ID: "a backend id (letters, digits and . _ : / [ ] -)",
    STICKY_ID: "a sticky id (letters, digits and . _ ~ -)",
    METHOD: "an uppercase HTTP method token such as GET",
    HEADER_NAME: "an HTTP header name",
    NO_LINE_BREAK: "a single line of text",
    CONDITION_TYPE: "a condition type",
    CONDITION_REASON: "a CamelCase reason",
}

MAX_BACKENDS: Final = 256
MAX_TAGS: Final = 32
MAX_PEM: Final = 65536
MAX_ADDRESS: Final = 64


@dataclass(frozen=True, slots=True)
class CelRule:
    """One `x-kubernetes-validations` entry. `field_path` (relative, e.g. ".hostname") is where
    the API server and our validator report the failure; None means the object itself."""

    rule: str
    message: str
    field_path: str | None = None

    def as_schema(self) -> Schema:
        entry: Schema = {"rule": self.rule, "message": self.message}
        if self.field_path is not None:
            entry["fieldPath"] = self.field_path
        return entry


# --- schema builders ---------------------------------------------------------------------------


def _string(
    description: str,
    *,
    pattern: str | None = None,
    enum: Sequence[str] | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    default: str | None = None,
    fmt: str | None = None,
) -> Schema:
    node: Schema = {"type": "string", "description": description}
    if enum is not None:
        node["enum"] = list(enum)
    if pattern is not None:
        node["pattern"] = pattern
    if min_length is not None:
        node["minLength"] = min_length
    if max_length is not None:
        node["maxLength"] = max_length
    if fmt is not None:
        node["format"] = fmt
    if default is not None:
        node["default"] = default
    return node


def _enum(description: str, values: Sequence[str], *, default: str | None = None) -> Schema:
    return _string(description, enum=values, default=default)


def _integer(
    description: str, *, minimum: int | None = None, maximum: int | None = None, int64: bool = False
) -> Schema:
    node: Schema = {"type": "integer", "description": description}
    if int64:
        node["format"] = "int64"
    if minimum is not None:
        node["minimum"] = minimum
    if maximum is not None:
        node["maximum"] = maximum
    return node


def _boolean(description: str, *, default: bool | None = None) -> Schema:
    node: Schema = {"type": "boolean", "description": description}
    if default is not None:
        node["default"] = default
    return node


def _array(
    description: str,
    items: Schema,
    *,
    max_items: int,
    min_items: int | None = None,
    list_type: str | None = None,
    map_keys: Sequence[str] = (),
) -> Schema:
    node: Schema = {"type": "array", "description": description, "items": items}
    if min_items is not None:
        node["minItems"] = min_items
    node["maxItems"] = max_items
    if list_type is not None:
        node["x-kubernetes-list-type"] = list_type
    if map_keys:
        node["x-kubernetes-list-map-keys"] = list(map_keys)
    return node


def _object(
    description: str,
    properties: Mapping[str, Schema],
    *,
    required: Sequence[str] = (),
    rules: Sequence[CelRule] = (),
) -> Schema:
    node: Schema = {"type": "object", "description": description, "properties": dict(properties)}
    if required:
        node["required"] = list(required)
    if rules:
        node["x-kubernetes-validations"] = [rule.as_schema() for rule in rules]
    return node


def _string_map(
    description: str, values: Schema, *, max_properties: int, rules: Sequence[CelRule] = ()
) -> Schema:
    node: Schema = {
        "type": "object",
        "description": description,
        "additionalProperties": values,
        "maxProperties": max_properties,
    }
    if rules:
        node["x-kubernetes-validations"] = [rule.as_schema() for rule in rules]
    return node


def _names(enum_type: type[Any]) -> list[str]:
    return [member.name for member in enum_type]


def _class_name() -> Schema:
    return _string(
        "Which operator fleet handles this resource, like an IngressClass name. An operator "
        "started with a class name only handles resources of that class (and, if it is the "
        "default class, resources without one).",
        pattern=DNS_SUBDOMAIN,
        max_length=253,
    )


def _address(description: str) -> Schema:
    return _string(description, pattern=ADDRESS, max_length=MAX_ADDRESS)


# --- CEL rules (each has a Python twin in validate.py) -----------------------------------------

RULE_SERVICE_OR_BACKENDS: Final = CelRule(
    rule="!has(self.service) || !has(self.backends) || size(self.backends) == 0",
    message="set either backends or service, not both",
    field_path=".service",
)
RULE_SERVICE_PORT_RANGE: Final = CelRule(
    rule="type(self.port) != int || (self.port >= 1 && self.port <= 65535)",
    message="a port number must be between 1 and 65535",
    field_path=".port",
)
RULE_HTTP_NEEDS_HOSTNAME: Final = CelRule(
    rule="(has(self.protocol) && self.protocol == 'TCP') || has(self.hostname)",
    message="HTTP and HTTPS frontends need a hostname",
    field_path=".hostname",
)
TCP_FORBIDDEN_RULES: Final[Mapping[str, CelRule]] = {
    field: CelRule(
        rule=f"!has(self.protocol) || self.protocol != 'TCP' || !has(self.{field})",
        message=f"TCP frontends have no {field}",
        field_path=f".{field}",
    )
    for field in HTTP_ONLY_FRONTEND_FIELDS
}
RULE_PATH_SLASH: Final = CelRule(
    rule="(has(self.kind) && self.kind == 'REGEX') || self.value == '' || "
    "self.value.startsWith('/')",
    message="a PREFIX or EQUALS path is empty or starts with '/'",
    field_path=".value",
)
RULE_RESERVED_TAGS: Final = CelRule(
    rule=f"self.all(k, !k.startsWith('{RESERVED_TAG_PREFIX}'))",
    message=f"tag keys starting with '{RESERVED_TAG_PREFIX}' are reserved for ownership markers",
)
RULE_CERTIFICATE_SOURCE: Final = CelRule(
    rule="has(self.certificate) != has(self.secretRef)",
    message="set exactly one of certificate (inline PEM) or secretRef",
)
RULE_KEY_WITH_INLINE: Final = CelRule(
    rule="has(self.certificate) == has(self.key)",
    message="key is required with an inline certificate and not allowed with secretRef",
    field_path=".key",
)
RULE_CHAIN_WITH_INLINE: Final = CelRule(
    rule="!has(self.secretRef) || !has(self.chain)",
    message="chain goes with an inline certificate only (a Secret's tls.crt carries its chain)",
    field_path=".chain",
)


# --- specs -------------------------------------------------------------------------------------

_V2 = " Sōzu 2.x only: rejected when the target proxy runs Sōzu 1.0."


def _backend() -> Schema:
    return _object(
        "A static backend server.",
        {
            "address": _address("Backend address, IP:PORT or [IPv6]:PORT. Unique in the list."),
            "id": _string(
                "Sōzu backend id. Defaults to the address, so that reordering the list never "
                "changes a backend's identity.",
                pattern=BACKEND_ID,
                max_length=253,
            ),
            "weight": _integer(
                "Load-balancing weight (Sōzu LoadBalancingParams.weight).",
                minimum=0,
                maximum=2147483647,
            ),
            "backup": _boolean("Only used when no other backend is available."),
            "stickyId": _string(
                "Value of the sticky-session cookie that routes to this backend.",
                pattern=STICKY_ID,
                max_length=128,
            ),
        },
        required=["address"],
    )


def _service_ref() -> Schema:
    return _object(
        "A Kubernetes Service whose ready endpoints (EndpointSlices) the operator turns into "
        "backends. Mutually exclusive with backends.",
        {
            "name": _string("Service name.", pattern=DNS_LABEL, max_length=63),
            "port": {
                "description": "Service port, by number or by name.",
                "x-kubernetes-int-or-string": True,
                "anyOf": [{"type": "integer"}, {"type": "string"}],
            },
            "namespace": _string(
                "Service namespace; defaults to the SozuCluster's namespace.",
                pattern=DNS_LABEL,
                max_length=63,
            ),
        },
        required=["name", "port"],
        rules=[RULE_SERVICE_PORT_RANGE],
    )


def cluster_spec() -> Schema:
    return _object(
        "A Sōzu cluster: load-balancing settings and the backends that serve it.",
        {
            "className": _class_name(),
            "clusterId": _string(
                "Cluster id in Sōzu, without the operator's owner prefix (Sōzu sees "
                "`<owner>:<clusterId>`). Defaults to `<namespace>/<name>`.",
                pattern=CLUSTER_ID,
                max_length=253,
            ),
            "loadBalancing": _enum(
                "Load-balancing algorithm. HRW and MAGLEV are Sōzu 2.x only.",
                _names(LoadBalancing),
                default=DEFAULT_LOAD_BALANCING,
            ),
            "loadMetric": _enum(
                "Metric used by LEAST_LOADED and POWER_OF_TWO.", _names(LoadMetric)
            ),
            "stickySession": _boolean(
                "Pin clients to a backend with a cookie.", default=False
            ),
            "httpsRedirect": _boolean(
                "Answer plain-HTTP requests with a redirect to HTTPS.", default=False
            ),
            "proxyProtocol": _enum(
                "PROXY protocol handling (TCP clusters).", _names(ProxyProtocol)
            ),
            "answer503": _string(
                "Full HTTP response sent when no backend is available.", max_length=MAX_PEM
            ),
            "backends": _array(
                "Static backends. Leave empty and set service to let the operator resolve them.",
                _backend(),
                max_items=MAX_BACKENDS,
                list_type="map",
                map_keys=["address"],
            ),
            "service": _service_ref(),
            "http2": _boolean("Talk HTTP/2 to the backends." + _V2),
            "answers": _string_map(
                "Custom HTTP answer templates by status code." + _V2,
                _string("Answer template.", max_length=MAX_PEM),
                max_properties=MAX_TAGS,
            ),
            "httpsRedirectPort": _integer(
                "Port used in HTTPS redirects." + _V2, minimum=1, maximum=65535
            ),
            "authorizedHashes": _array(
                "Credential hashes accepted for basic authentication." + _V2,
                _string("A credential hash.", min_length=1, max_length=256),
                max_items=64,
                list_type="set",
            ),
            "wwwAuthenticate": _string(
                "WWW-Authenticate realm sent with 401 answers." + _V2, max_length=1024
            ),
            "maxConnectionsPerIp": _integer(
                "Connection limit per client IP." + _V2,
                minimum=0,
                maximum=2**63 - 1,
                int64=True,
            ),
            "retryAfter": _integer(
                "Retry-After seconds sent with 429/503 answers." + _V2,
                minimum=0,
                maximum=2**32 - 1,
                int64=True,
            ),
        },
        rules=[RULE_SERVICE_OR_BACKENDS],
    )


def _path() -> Schema:
    return _object(
        "Path rule. Sōzu matches it against the path including the query string; regexes are "
        "not anchored (anchor them yourself).",
        {
            "kind": _enum("How value is matched.", _names(PathRuleKind), default=DEFAULT_PATH_KIND),
            "value": _string("Prefix, regex or exact path.", max_length=1024),
        },
        required=["value"],
        rules=[RULE_PATH_SLASH],
    )


def _header() -> Schema:
    return _object(
        "A header added to requests or responses." + _V2,
        {
            "position": _enum(
                "Where the header is set.",
                [HeaderPosition.REQUEST.name, HeaderPosition.RESPONSE.name,
                 HeaderPosition.BOTH.name],
                default=DEFAULT_HEADER_POSITION,
            ),
            "key": _string("Header name.", pattern=HEADER_NAME, max_length=256),
            "value": _string("Header value.", pattern=NO_LINE_BREAK, max_length=4096),
        },
        required=["key", "value"],
    )


def frontend_spec() -> Schema:
    return _object(
        "A route: traffic on a listener (and, for HTTP/HTTPS, a hostname and path) sent to a "
        "SozuCluster.",
        {
            "className": _class_name(),
            "cluster": _string(
                "Name of a SozuCluster in the same namespace.",
                pattern=DNS_SUBDOMAIN,
                max_length=253,
            ),
            "protocol": _enum("Listener protocol.", PROTOCOLS, default=DEFAULT_PROTOCOL),
            "address": _address(
                "Address of the Sōzu listener this route lives on, e.g. 0.0.0.0:8080."
            ),
            "hostname": _string(
                "Host to match (HTTP/HTTPS only). `*.example.com` matches one label.",
                pattern=HOSTNAME,
                max_length=253,
            ),
            "path": _path(),
            "method": _string(
                "HTTP method to match; any method when unset.", pattern=METHOD, max_length=32
            ),
            "position": _enum(
                "Where the rule sits: TREE (the hostname trie, the default), or the ordered "
                "PRE/POST lists tried before/after it. HTTP/HTTPS only.",
                _names(RulePosition),
            ),
            "tags": _string_map(
                f"Free-form tags stored on the Sōzu frontend. Keys under "
                f"'{RESERVED_TAG_PREFIX}' are reserved.",
                _string("Tag value.", max_length=1024),
                max_properties=MAX_TAGS,
                rules=[RULE_RESERVED_TAGS],
            ),
            "redirect": _enum("Redirect policy." + _V2, _names(RedirectPolicy)),
            "requiredAuth": _boolean("Require basic authentication." + _V2),
            "redirectScheme": _enum("Scheme used by redirects." + _V2, _names(RedirectScheme)),
            "redirectTemplate": _string("Redirect target template." + _V2, max_length=2048),
            "rewriteHost": _string("Host rewrite template." + _V2, max_length=1024),
            "rewritePath": _string("Path rewrite template." + _V2, max_length=2048),
            "rewritePort": _integer("Port rewrite." + _V2, minimum=1, maximum=65535),
            "headers": _array(
                "Headers to set." + _V2, _header(), max_items=32, list_type="atomic"
            ),
        },
        required=["cluster", "address"],
        rules=[RULE_HTTP_NEEDS_HOSTNAME, *TCP_FORBIDDEN_RULES.values()],
    )


def certificate_spec() -> Schema:
    return _object(
        "A TLS certificate served on HTTPS listeners: inline PEM, or a kubernetes.io/tls Secret.",
        {
            "className": _class_name(),
            "addresses": _array(
                "HTTPS listener addresses that serve this certificate.",
                _address("HTTPS listener address."),
                min_items=1,
                max_items=16,
                list_type="set",
            ),
            "certificate": _string(
                "Inline PEM certificate (leaf first; further blocks are treated as the chain). "
                "Prefer secretRef: a key inline in a custom resource is readable by anyone who "
                "can read the resource.",
                max_length=MAX_PEM,
            ),
            "chain": _array(
                "Inline PEM intermediate certificates.",
                _string("PEM certificate(s).", max_length=MAX_PEM),
                max_items=16,
                list_type="atomic",
            ),
            "key": _string("Inline PEM private key.", max_length=MAX_PEM),
            "secretRef": _object(
                "A kubernetes.io/tls Secret in the same namespace (tls.crt, tls.key).",
                {"name": _string("Secret name.", pattern=DNS_SUBDOMAIN, max_length=253)},
                required=["name"],
            ),
            "names": _array(
                "SNI names to serve. Empty: the names Sōzu derives from the certificate.",
                _string("SNI name.", pattern=HOSTNAME, max_length=253),
                max_items=64,
                list_type="set",
            ),
            "versions": _array(
                "TLS versions recorded with the certificate (Sōzu workers use the listener's).",
                _enum("TLS version.", TLS_VERSIONS),
                max_items=2,
                list_type="set",
            ),
        },
        required=["addresses"],
        rules=[RULE_CERTIFICATE_SOURCE, RULE_KEY_WITH_INLINE, RULE_CHAIN_WITH_INLINE],
    )


# --- status ------------------------------------------------------------------------------------

CONDITION_READY: Final = "Ready"
CONDITION_PROGRAMMED: Final = "Programmed"


def _condition() -> Schema:
    # The shape of metav1.Condition, so that kubectl and generic tooling read it.
    return _object(
        "A condition, as in metav1.Condition.",
        {
            "type": _string(
                "Condition type: Ready (accepted and valid) or Programmed (served by proxies).",
                pattern=CONDITION_TYPE,
                max_length=316,
            ),
            "status": _enum("Condition status.", ["True", "False", "Unknown"]),
            "reason": _string(
                "CamelCase reason.", pattern=CONDITION_REASON, min_length=1, max_length=1024
            ),
            "message": _string("Human-readable detail.", max_length=32768),
            "observedGeneration": _integer(
                "metadata.generation the condition was computed from.", minimum=0, int64=True
            ),
            "lastTransitionTime": _string(
                "When status last changed.", fmt="date-time"
            ),
        },
        required=["type", "status", "reason", "message", "lastTransitionTime"],
    )


def _proxy_status() -> Schema:
    return _object(
        "What one proxy (pod) has applied. Each proxy writes only its own entry.",
        {
            "programmedGeneration": _integer(
                "metadata.generation of this resource last programmed into the proxy.",
                minimum=0,
                int64=True,
            ),
            "planHash": _string("Hash of the last plan the proxy applied.", max_length=128),
            "lastApplied": _string("When the proxy last applied a plan.", fmt="date-time"),
            "sozuVersion": _string("Sōzu version the proxy runs.", max_length=64),
        },
    )


def _status(description: str, extra: Mapping[str, Schema]) -> Schema:
    properties: dict[str, Schema] = {
        "observedGeneration": _integer(
            "metadata.generation the conditions were computed from.", minimum=0, int64=True
        ),
        "conditions": _array(
            "Ready and Programmed conditions, written by a single writer.",
            _condition(),
            max_items=16,
            list_type="map",
            map_keys=["type"],
        ),
        "proxies": _string_map(
            "Per-proxy programming state, keyed by pod name.",
            _proxy_status(),
            max_properties=1024,
        ),
        "proxiesProgrammed": _string(
            "Summary `<programmed>/<total>` proxies, for kubectl get.", max_length=32
        ),
    }
    properties.update(extra)
    return _object(description, properties)


def cluster_status() -> Schema:
    return _status(
        "Observed state of the SozuCluster.",
        {
            "clusterId": _string("Cluster id in Sōzu, owner prefix included.", max_length=300),
            "backends": _integer("Number of backends programmed.", minimum=0),
        },
    )


def frontend_status() -> Schema:
    return _status(
        "Observed state of the SozuFrontend.",
        {"sozuKey": _string("Sōzu identity of the frontend.", max_length=2048)},
    )


def certificate_status() -> Schema:
    return _status(
        "Observed state of the SozuCertificate.",
        {
            "fingerprint": _string("SHA-256 fingerprint (lowercase hex).", max_length=64),
            "notAfter": _string("Expiry of the certificate.", fmt="date-time"),
            "servedNames": _array(
                "SNI names the certificate is served for.",
                _string("SNI name.", max_length=253),
                max_items=256,
                list_type="atomic",
            ),
        },
    )


# --- kinds and CRDs ----------------------------------------------------------------------------

_READY_COLUMN: Final[Schema] = {
    "name": "Ready",
    "type": "string",
    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
}
_PROGRAMMED_COLUMN: Final[Schema] = {
    "name": "Programmed",
    "type": "string",
    "description": "Proxies that programmed the current generation",
    "jsonPath": ".status.proxiesProgrammed",
}
_AGE_COLUMN: Final[Schema] = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
}
_CLASS_COLUMN: Final[Schema] = {
    "name": "Class",
    "type": "string",
    "priority": 1,
    "jsonPath": ".spec.className",
}


@dataclass(frozen=True, slots=True)
class KindInfo:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: Schema
    status: Schema
    printer_columns: tuple[Schema, ...]


def _kinds() -> dict[str, KindInfo]:
    return {
        CLUSTER_KIND: KindInfo(
            kind=CLUSTER_KIND,
            plural="sozuclusters",
            singular="sozucluster",
            short_names=("scl",),
            spec=cluster_spec(),
            status=cluster_status(),
            printer_columns=(
                _READY_COLUMN,
                _PROGRAMMED_COLUMN,
                {"name": "Cluster ID", "type": "string", "jsonPath": ".status.clusterId"},
                {"name": "Backends", "type": "integer", "jsonPath": ".status.backends"},
                _AGE_COLUMN,
                _CLASS_COLUMN,
            ),
        ),
        FRONTEND_KIND: KindInfo(
            kind=FRONTEND_KIND,
            plural="sozufrontends",
            singular="sozufrontend",
            short_names=("sfe",),
            spec=frontend_spec(),
            status=frontend_status(),
            printer_columns=(
                _READY_COLUMN,
                _PROGRAMMED_COLUMN,
                {"name": "Protocol", "type": "string", "jsonPath": ".spec.protocol"},
                {"name": "Cluster", "type": "string", "jsonPath": ".spec.cluster"},
                {"name": "Host", "type": "string", "jsonPath": ".spec.hostname"},
                {"name": "Path", "type": "string", "jsonPath": ".spec.path.value"},
                _AGE_COLUMN,
                {"name": "Address", "type": "string", "priority": 1, "jsonPath": ".spec.address"},
                _CLASS_COLUMN,
            ),
        ),
        CERTIFICATE_KIND: KindInfo(
            kind=CERTIFICATE_KIND,
            plural="sozucertificates",
            singular="sozucertificate",
            short_names=("scert",),
            spec=certificate_spec(),
            status=certificate_status(),
            printer_columns=(
                _READY_COLUMN,
                _PROGRAMMED_COLUMN,
                {"name": "Not After", "type": "string", "jsonPath": ".status.notAfter"},
                _AGE_COLUMN,
                {"name": "Names", "type": "string", "priority": 1,
                 "jsonPath": ".status.servedNames"},
                {"name": "Fingerprint", "type": "string", "priority": 1,
                 "jsonPath": ".status.fingerprint"},
                _CLASS_COLUMN,
            ),
        ),
    }


_KINDS: Final = _kinds()


def kind_info(kind: str) -> KindInfo:
    """The schema facts of one kind; raises KeyError for anything but the three kinds."""
    return _KINDS[kind]


def spec_schema(kind: str) -> Schema:
    """A private copy of a kind's spec schema (callers may mutate it)."""
    return copy.deepcopy(_KINDS[kind].spec)


def object_schema(kind: str) -> Schema:
    """The openAPIV3Schema of a whole object of `kind`."""
    info = _KINDS[kind]
    return {
        "type": "object",
        "description": f"{info.kind} ({API_VERSION}).",
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "Versioned schema of this representation of an object.",
            },
            "kind": {"type": "string", "description": "REST resource this object represents."},
            "metadata": {"type": "object", "description": "Standard object metadata."},
            "spec": copy.deepcopy(info.spec),
            "status": copy.deepcopy(info.status),
        },
        "required": ["spec"],
    }


def crd_manifest(kind: str) -> Schema:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of `kind`."""
    info = _KINDS[kind]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "sozu-operator"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(c) for c in info.printer_columns],
                    "schema": {"openAPIV3Schema": object_schema(kind)},
                }
            ],
        },
    }


def crd_file_name(kind: str) -> str:
    return f"{_KINDS[kind].plural}.yaml"
