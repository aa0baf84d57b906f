"""A count model of Sōzu's own `ConfigState::diff` (command/src/state.rs, read at tag 2.1.0).

It answers "which requests would Sōzu's diff send to go from `current` to `target`", verb by
verb, so that our planner's request counts can be compared with it (docs/planning.md,
"Minimality") and benchmarked. Only the verbs are modelled, in upstream's emission order; the
payloads are not.

What upstream's diff does, per object type:

- listeners (optional here, since this tool never manages them): a listener only in `current`
  is deactivated (if active) and removed; one only in `target` is added and activated (if
  active); one in both with any difference is removed, added inactive and re-activated if the
  target is active, then deactivated if it went from active to inactive. Added active TCP
  listeners get a second activation at the very end.
- clusters: a merge over ids; added or changed → `AddCluster`, gone → `RemoveCluster`.
- backends: a merge keyed by (cluster id, backend id) over each cluster's sorted backends,
  comparing whole backends; added → `AddBackend`, gone → `RemoveBackend`, changed (address,
  weight, sticky id or backup) → `RemoveBackend` + `AddBackend`.
- HTTP, HTTPS and TCP frontends: set differences of whole frontends, so any change is
  `Remove…Frontend` + `Add…Frontend`; all removals of a kind come before its additions.
- certificates: set difference of (address, fingerprint); a rotation is `RemoveCertificate` +
  `AddCertificate`, and a change of names or chain under the same fingerprint sends nothing.

Its order is listeners, clusters, backends, HTTP, HTTPS, TCP frontends, certificates: it
removes a changed route before adding it back, and removes a backend whose id changed before
or after adding the new one depending on how the ids sort — for a pod replaced at the same
address, adding first means workers' address-wide `remove_backend` then drops the new backend.
"""

from __future__ import annotations

from collections.abc import Iterator

from sozu_operator.proxy.model import (
    HttpListener,
    HttpsListener,
    ListenerType,
    SocketAddress,
    TcpListener,
)
from sozu_operator.reconcile.proxystate import ProxyState

UPSTREAM_TAG = "2.1.0"


def upstream_diff(
    current: ProxyState, target: ProxyState, *, listeners: bool = False
) -> list[str]:
    """The verbs (Sōzu's CamelCase names) upstream's diff emits, in its order.

    `listeners=False` (the default) leaves listeners out: this tool never manages them and
    its desired state holds none, so including them would count the removal of every one."""
    verbs: list[str] = []
    if listeners:
        verbs += _listener_verbs(current, target)

    clusters = _merge(
        [((cid,), c) for cid, c in sorted(current.clusters.items())],
        [((cid,), c) for cid, c in sorted(target.clusters.items())],
    )
    for outcome in clusters:
        verbs.append("RemoveCluster" if outcome == "removed" else "AddCluster")

    for outcome in _merge(_backend_items(current), _backend_items(target)):
        if outcome == "added":
            verbs.append("AddBackend")
        elif outcome == "removed":
            verbs.append("RemoveBackend")
        else:
            verbs += ["RemoveBackend", "AddBackend"]

    for kind, my_fronts, their_fronts in (
        ("Http", current.http_frontends, target.http_frontends),
        ("Https", current.https_frontends, target.https_frontends),
    ):
        my_set, their_set = set(my_fronts.items()), set(their_fronts.items())
        verbs += [f"Remove{kind}Frontend"] * len(my_set - their_set)
        verbs += [f"Add{kind}Frontend"] * len(their_set - my_set)
    verbs += ["RemoveTcpFrontend"] * len(current.tcp_frontends - target.tcp_frontends)
    verbs += ["AddTcpFrontend"] * len(target.tcp_frontends - current.tcp_frontends)

    my_certificates, their_certificates = set(current.certificates), set(target.certificates)
    verbs += ["RemoveCertificate"] * len(my_certificates - their_certificates)
    verbs += ["AddCertificate"] * len(their_certificates - my_certificates)

    if listeners:
        # Upstream activates newly added active TCP listeners a second time at the very end.
        mine, theirs = _listeners_of(current, ListenerType.TCP), _listeners_of(
            target, ListenerType.TCP
        )
        verbs += ["ActivateListener" for a in theirs.keys() - mine.keys() if theirs[a].active]
    return verbs


_Key = tuple[str, ...]


def _backend_items(state: ProxyState) -> list[tuple[_Key, object]]:
    # Upstream walks each cluster's backend list, kept sorted by every field in declaration
    # order, and keys the merge by (cluster id, backend id) only.
    ordered = sorted(
        state.backends.values(),
        key=lambda b: (
            b.cluster_id,
            b.backend_id,
            b.address.sort_key,
            (b.sticky_id is not None, b.sticky_id or ""),
            (b.weight is not None, b.weight or 0),
            (b.backup is not None, bool(b.backup)),
        ),
    )
    return [((b.cluster_id, b.backend_id), b) for b in ordered]


def _merge(mine: list[tuple[_Key, object]], theirs: list[tuple[_Key, object]]) -> Iterator[str]:
    """Upstream's merge of two key-sorted sequences: "added", "removed" or "changed" (equal
    keys, different values) per key. Repeated keys (one backend id at two addresses) are
    paired in order, as upstream pairs them."""
    i = j = 0
    while i < len(mine) or j < len(theirs):
        if i == len(mine):
            yield "added"
            j += 1
        elif j == len(theirs) or mine[i][0] < theirs[j][0]:
            yield "removed"
            i += 1
        elif mine[i][0] > theirs[j][0]:
            yield "added"
            j += 1
        else:
            if mine[i][1] != theirs[j][1]:
                yield "changed"
            i, j = i + 1, j + 1


_Listener = HttpListener | HttpsListener | TcpListener
_LISTENER_NAME = {ListenerType.HTTP: "Http", ListenerType.HTTPS: "Https", ListenerType.TCP: "Tcp"}
# Upstream's loop order: TCP, (UDP), HTTP, HTTPS.
_LISTENER_ORDER = (ListenerType.TCP, ListenerType.HTTP, ListenerType.HTTPS)


def _listeners_of(state: ProxyState, kind: ListenerType) -> dict[SocketAddress, _Listener]:
    return {address: li for (k, address), li in state.listeners.items() if k is kind}


def _listener_verbs(current: ProxyState, target: ProxyState) -> list[str]:
    verbs: list[str] = []
    for kind in _LISTENER_ORDER:
        mine, theirs = _listeners_of(current, kind), _listeners_of(target, kind)
        for address in mine.keys() - theirs.keys():
            verbs += ["DeactivateListener"] if mine[address].active else []
            verbs.append("RemoveListener")
        for address in theirs.keys() - mine.keys():
            verbs.append(f"Add{_LISTENER_NAME[kind]}Listener")
            verbs += ["ActivateListener"] if theirs[address].active else []
    for kind in _LISTENER_ORDER:
        mine, theirs = _listeners_of(current, kind), _listeners_of(target, kind)
        for address in mine.keys() & theirs.keys():
            if mine[address] != theirs[address]:
                verbs += ["RemoveListener", f"Add{_LISTENER_NAME[kind]}Listener"]
                verbs += ["ActivateListener"] if theirs[address].active else []
            if mine[address].active and not theirs[address].active:
                verbs.append("DeactivateListener")
    return verbs
