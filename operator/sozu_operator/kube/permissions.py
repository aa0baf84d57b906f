"""The Kubernetes API permissions the operator needs, as data.

`REQUIRED_PERMISSIONS` is the complete list of (API group, resource, verbs) that
`sozu-operator run` uses. It is the single source the deployment artefacts are checked
against: the Helm chart's Role / ClusterRole (``helm/sozu-operator/templates/rbac.yaml``) and
the plain manifests generated from it must grant exactly these, no more and no less
(``tests/deploy/test_rbac.py`` compares them). Change this tuple together with the template.

What the operator does with them:

* ``sozuclusters``, ``sozufrontends``, ``sozucertificates`` (``sozu.io``): list and watch the
  resources it programs into Sōzu;
* ``<plural>/status``: merge-patch its own per-proxy entry (``status.proxies.<pod name>``);
* ``secrets`` (core): list and watch, filtered server-side to ``type=kubernetes.io/tls``, for
  ``SozuCertificate.spec.secretRef``;
* ``endpointslices`` (``discovery.k8s.io``): list and watch, for cluster backends taken from a
  Service;
* ``events`` (core v1): create, for problems a human should see.

kopf runs standalone (no peering objects) with CRD and namespace scanning disabled, so it
needs nothing beyond this. The module imports nothing from the project so that build tools and
tests can load it on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["REQUIRED_PERMISSIONS", "Permission", "flatten"]


@dataclass(frozen=True, slots=True)
class Permission:
    """One RBAC grant: `verbs` on `resource` (``plural`` or ``plural/subresource``) of
    `api_group` (``""`` for the core group)."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]


_WATCH: Final = ("list", "watch")
_SOZU_GROUP: Final = "sozu.io"
_SOZU_PLURALS: Final = ("sozuclusters", "sozufrontends", "sozucertificates")

REQUIRED_PERMISSIONS: Final[tuple[Permission, ...]] = (
    *(Permission(_SOZU_GROUP, plural, _WATCH) for plural in _SOZU_PLURALS),
    *(Permission(_SOZU_GROUP, f"{plural}/status", ("patch",)) for plural in _SOZU_PLURALS),
    Permission("", "secrets", _WATCH),
    Permission("discovery.k8s.io", "endpointslices", _WATCH),
    Permission("", "events", ("create",)),
)
"""Everything `sozu-operator run` calls the Kubernetes API for, in any mode."""


def flatten(permissions: tuple[Permission, ...] = REQUIRED_PERMISSIONS) -> frozenset[
    tuple[str, str, str]
]:
    """The permissions as a set of (api group, resource, verb) triples, for comparisons."""
    return frozenset(
        (permission.api_group, permission.resource, verb)
        for permission in permissions
        for verb in permission.verbs
    )
