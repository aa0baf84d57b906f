"""Typed answers of the command socket.

A request gets zero or more PROCESSING responses, then exactly one OK or FAILURE (or, for a
few verbs and for verbs unknown to the running Sōzu, nothing at all).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeAlias

from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    Cluster,
    HttpFrontend,
    HttpListener,
    HttpsListener,
    SocketAddress,
    TcpFrontend,
    TcpListener,
)


class ResponseStatus(IntEnum):
    OK = 0
    PROCESSING = 1
    FAILURE = 2


class RunState(IntEnum):
    RUNNING = 0
    STOPPING = 1
    STOPPED = 2
    NOT_ANSWERING = 3


class EventKind(IntEnum):
    BACKEND_DOWN = 0
    BACKEND_UP = 1
    NO_AVAILABLE_BACKENDS = 2
    REMOVED_BACKEND_HAS_NO_CONNECTIONS = 3


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: int
    pid: int
    run_state: RunState = RunState.RUNNING


@dataclass(frozen=True, slots=True)
class WorkerInfos:
    workers: tuple[WorkerInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class ListedFrontends:
    http: tuple[HttpFrontend, ...] = ()
    https: tuple[HttpFrontend, ...] = ()
    tcp: tuple[TcpFrontend, ...] = ()


@dataclass(frozen=True, slots=True)
class ListenersList:
    http: tuple[HttpListener, ...] = ()
    https: tuple[HttpsListener, ...] = ()
    tcp: tuple[TcpListener, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterInformation:
    configuration: Cluster | None
    http_frontends: tuple[HttpFrontend, ...] = ()
    https_frontends: tuple[HttpFrontend, ...] = ()
    tcp_frontends: tuple[TcpFrontend, ...] = ()
    backends: tuple[Backend, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterInformations:
    clusters: tuple[ClusterInformation, ...] = ()


@dataclass(frozen=True)
class ClusterHashes:
    hashes: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CertificatesWithFingerprints:
    """fingerprint (lowercase hex) → certificate. Sōzu includes the private keys."""

    certificates: Mapping[str, CertificateAndKey] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CertificateSummary:
    domain: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class CertificatesByAddress:
    address: SocketAddress
    summaries: tuple[CertificateSummary, ...] = ()


@dataclass(frozen=True, slots=True)
class ListOfCertificatesByAddress:
    certificates: tuple[CertificatesByAddress, ...] = ()


@dataclass(frozen=True)
class RequestCounts:
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    kind: int
    cluster_id: str | None = None
    backend_id: str | None = None
    address: SocketAddress | None = None


@dataclass(frozen=True)
class WorkerResponses:
    """Answers of fanned-out queries: worker id (decimal text) or "main" → content."""

    responses: Mapping[str, ResponseContent] = field(default_factory=dict)


ResponseContent: TypeAlias = (
    WorkerInfos
    | ListedFrontends
    | ListenersList
    | ClusterInformations
    | ClusterHashes
    | CertificatesWithFingerprints
    | ListOfCertificatesByAddress
    | RequestCounts
    | Event
    | WorkerResponses
)


@dataclass(frozen=True)
class Response:
    status: ResponseStatus
    message: str = ""
    content: ResponseContent | None = None

    @property
    def is_final(self) -> bool:
        return self.status is not ResponseStatus.PROCESSING

    @classmethod
    def ok(cls, message: str = "", content: ResponseContent | None = None) -> Response:
        return cls(ResponseStatus.OK, message, content)

    @classmethod
    def failure(cls, message: str) -> Response:
        return cls(ResponseStatus.FAILURE, message)

    @classmethod
    def processing(cls, message: str = "") -> Response:
        return cls(ResponseStatus.PROCESSING, message)
