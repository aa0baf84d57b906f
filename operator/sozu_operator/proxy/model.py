"""Typed, immutable models of the objects Sōzu's configuration state holds.

Field names follow Sōzu's protobuf messages so that a reader can map them one to one; defaults
are the ones Sōzu's own command-line client and TOML loader use. Fields marked "2.x" only exist
on Sōzu 2.x; the 1.0 codec refuses a model that sets them.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeAlias

IpAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

# Sōzu keeps string maps (tags, custom answers); we keep them as sorted pairs so that models
# stay hashable and compare equal whatever order the wire or a YAML file gave them in.
Pairs: TypeAlias = tuple[tuple[str, str], ...]


def pairs(mapping: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> Pairs:
    """Normalise a mapping (or pairs) into the sorted tuple form models store."""
    if type(mapping) is tuple and _is_normal(mapping):
        return mapping  # already normal: the common case when models are rebuilt or copied
    items = mapping.items() if isinstance(mapping, Mapping) else mapping
    return tuple(sorted(dict(items).items()))


def _is_normal(items: tuple[object, ...]) -> bool:
    """Whether `items` is a tuple of (str, str) pairs with strictly increasing keys."""
    previous: str | None = None
    for item in items:
        if type(item) is not tuple or len(item) != 2:
            return False
        key, value = item
        if type(key) is not str or type(value) is not str:
            return False
        if previous is not None and key <= previous:
            return False
        previous = key
    return True


class LoadBalancing(IntEnum):
    ROUND_ROBIN = 0
    RANDOM = 1
    LEAST_LOADED = 2
    POWER_OF_TWO = 3
    HRW = 4  # 2.x
    MAGLEV = 5  # 2.x


class ProxyProtocol(IntEnum):
    EXPECT_HEADER = 0
    SEND_HEADER = 1
    RELAY_HEADER = 2


class LoadMetric(IntEnum):
    CONNECTIONS = 0
    REQUESTS = 1
    CONNECTION_TIME = 2


class PathRuleKind(IntEnum):
    PREFIX = 0
    REGEX = 1
    EQUALS = 2


class RulePosition(IntEnum):
    PRE = 0
    POST = 1
    TREE = 2


class RedirectPolicy(IntEnum):
    FORWARD = 0
    PERMANENT = 1
    UNAUTHORIZED = 2
    FOUND = 3
    PERMANENT_REDIRECT = 4


class RedirectScheme(IntEnum):
    USE_SAME = 0
    USE_HTTP = 1
    USE_HTTPS = 2


class HeaderPosition(IntEnum):
    UNSPECIFIED = 0
    REQUEST = 1
    RESPONSE = 2
    BOTH = 3


class TlsVersion(IntEnum):
    SSL_V2 = 0
    SSL_V3 = 1
    TLS_V1_0 = 2
    TLS_V1_1 = 3
    TLS_V1_2 = 4
    TLS_V1_3 = 5


class ListenerType(IntEnum):
    HTTP = 0
    HTTPS = 1
    TCP = 2


@functools.total_ordering
@dataclass(frozen=True, slots=True, eq=False)
class SocketAddress:
    """A listener or backend address. `str()` gives Rust's `SocketAddr` display, which is the
    text Sōzu uses in frontend keys and listener maps.

    The display text is computed once: it is one-to-one with (ip, port), so equality and hashing
    use it too (hashing an `ipaddress` object formats it in hex each time; addresses are dict
    keys in every table of a 50k-route state)."""

    ip: IpAddress
    port: int
    _text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"port {self.port} is outside 0..65535")
        if isinstance(self.ip, ipaddress.IPv4Address):
            text = f"{self.ip}:{self.port}"
        else:
            mapped = self.ip.ipv4_mapped
            shown = f"::ffff:{mapped}" if mapped is not None else self.ip.compressed
            text = f"[{shown}]:{self.port}"
        object.__setattr__(self, "_text", text)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SocketAddress):
            return NotImplemented
        return self._text == other._text

    def __hash__(self) -> int:
        return hash(self._text)

    def __lt__(self, other: object) -> bool:
        # Rust orders SocketAddr V4 before V6, then by address and port; Python refuses to
        # compare IPv4Address with IPv6Address.
        if not isinstance(other, SocketAddress):
            return NotImplemented
        return self.sort_key < other.sort_key

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (self.ip.version, int(self.ip), self.port)

    def __str__(self) -> str:
        return self._text

    @classmethod
    def parse(cls, text: str) -> SocketAddress:
        """Parse `1.2.3.4:80` or `[::1]:80`; raises ValueError with the offending text."""
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"{text!r} is not an address of the form IP:PORT or [IPv6]:PORT")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            if "." in host and host.lower().startswith("::ffff:"):
                host = "::ffff:" + host[7:]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{text!r} does not start with an IP address") from None
        if isinstance(ip, ipaddress.IPv6Address) and not text.startswith("["):
            raise ValueError(f"{text!r}: an IPv6 address must be written in brackets")
        return cls(ip, int(port_text))


@dataclass(frozen=True, slots=True)
class Cluster:
    cluster_id: str
    sticky_session: bool = False
    https_redirect: bool = False
    proxy_protocol: ProxyProtocol | None = None
    load_balancing: LoadBalancing = LoadBalancing.ROUND_ROBIN
    answer_503: str | None = None
    load_metric: LoadMetric | None = None
    # 2.x only
    http2: bool | None = None
    answers: Pairs = ()
    https_redirect_port: int | None = None
    authorized_hashes: tuple[str, ...] = ()
    www_authenticate: str | None = None
    max_connections_per_ip: int | None = None
    retry_after: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "answers", pairs(self.answers))


@dataclass(frozen=True, slots=True)
class Backend:
    """Identity in Sōzu: (cluster_id, backend_id, address); adding it again is an upsert."""

    cluster_id: str
    backend_id: str
    address: SocketAddress
    sticky_id: str | None = None
    weight: int | None = None
    backup: bool | None = None

    @property
    def identity(self) -> tuple[str, str, SocketAddress]:
        return (self.cluster_id, self.backend_id, self.address)


@dataclass(frozen=True, slots=True)
class PathRule:
    kind: PathRuleKind = PathRuleKind.PREFIX
    value: str = ""

    @property
    def key_text(self) -> str:
        return _PATH_MARKERS[self.kind] + self.value


_PATH_MARKERS = {PathRuleKind.PREFIX: "P", PathRuleKind.REGEX: "R", PathRuleKind.EQUALS: "="}


@dataclass(frozen=True, slots=True)
class Header:
    position: HeaderPosition
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class HttpFrontend:
    """An HTTP or HTTPS route (the same message serves both; Sōzu keeps them in two maps).

    Its identity is `key`: address, hostname, path rule and method. The cluster, position, tags
    and 2.x policy fields are not part of it, so changing them needs a remove and an add."""

    address: SocketAddress
    hostname: str
    path: PathRule = PathRule()
    cluster_id: str | None = None
    method: str | None = None
    position: RulePosition = RulePosition.TREE
    tags: Pairs = ()
    # 2.x only
    redirect: RedirectPolicy | None = None
    required_auth: bool | None = None
    redirect_scheme: RedirectScheme | None = None
    redirect_template: str | None = None
    rewrite_host: str | None = None
    rewrite_path: str | None = None
    rewrite_port: int | None = None
    headers: tuple[Header, ...] = ()
    # Derived from the fields above, once: every table of routes is keyed by it.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", pairs(self.tags))
        text = f"{self.address};{self.hostname};{self.path.key_text}"
        object.__setattr__(self, "key", text if self.method is None else f"{text};{self.method}")


@dataclass(frozen=True, slots=True)
class TcpFrontend:
    cluster_id: str
    address: SocketAddress
    tags: Pairs = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", pairs(self.tags))


@dataclass(frozen=True, slots=True)
class CertificateAndKey:
    certificate: str
    key: str
    certificate_chain: tuple[str, ...] = ()
    versions: tuple[TlsVersion, ...] = ()
    names: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # Never let a private key reach a log line through a repr.
        return (
            f"CertificateAndKey(certificate=<{len(self.certificate)} chars>, key=<redacted>, "
            f"chain={len(self.certificate_chain)}, versions={list(self.versions)}, "
            f"names={list(self.names)})"
        )


@dataclass(frozen=True, slots=True)
class HttpListener:
    address: SocketAddress
    public_address: SocketAddress | None = None
    expect_proxy: bool = False
    sticky_name: str = "SOZUBALANCEID"
    front_timeout: int = 60
    back_timeout: int = 30
    connect_timeout: int = 3
    request_timeout: int = 10
    active: bool = False

    @property
    def kind(self) -> ListenerType:
        return ListenerType.HTTP


@dataclass(frozen=True, slots=True)
class HttpsListener:
    address: SocketAddress
    public_address: SocketAddress | None = None
    expect_proxy: bool = False
    sticky_name: str = "SOZUBALANCEID"
    front_timeout: int = 60
    back_timeout: int = 30
    connect_timeout: int = 3
    request_timeout: int = 10
    active: bool = False
    versions: tuple[TlsVersion, ...] = (TlsVersion.TLS_V1_2, TlsVersion.TLS_V1_3)
    cipher_list: tuple[str, ...] = ()
    cipher_suites: tuple[str, ...] = ()
    signature_algorithms: tuple[str, ...] = ()
    groups_list: tuple[str, ...] = ()
    certificate: str | None = None
    certificate_chain: tuple[str, ...] = ()
    key: str | None = field(default=None, repr=False)
    send_tls13_tickets: int = 4

    @property
    def kind(self) -> ListenerType:
        return ListenerType.HTTPS


@dataclass(frozen=True, slots=True)
class TcpListener:
    address: SocketAddress
    public_address: SocketAddress | None = None
    expect_proxy: bool = False
    front_timeout: int = 60
    back_timeout: int = 30
    connect_timeout: int = 3
    active: bool = False

    @property
    def kind(self) -> ListenerType:
        return ListenerType.TCP


Listener: TypeAlias = HttpListener | HttpsListener | TcpListener
