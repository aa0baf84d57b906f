"""What each resource's status should say, as a merge patch, or nothing when it already says it.

Pure: given the outcome of a reconcile pass and the status currently stored on the object, it
returns the smallest patch. That is what keeps N sidecars from ping-ponging: every sidecar
computes the same `conditions` from the same inputs, writes only its own `proxies.<pod>` entry,
keeps `lastTransitionTime` when a condition's status did not change, and writes nothing at all
when nothing changed.

Conditions:
- `Ready`: the resource was accepted (valid, its references resolved, no conflict). Its message
  names the first field at fault otherwise.
- `Programmed`: every proxy that reported for this resource programmed its current generation;
  `proxiesProgrammed` reads "2/3" for the printer column.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sozu_operator.resources.models import FieldError, ResourceRef

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ProxyReport:
    """This proxy's view of one resource after a pass."""

    pod: str
    programmed_generation: int | None  # None: not programmed by this proxy (yet)
    plan_hash: str
    last_applied: str | None  # RFC 3339; None keeps whatever was stored
    sozu_version: str


@dataclass(frozen=True, slots=True)
class ResourceOutcome:
    ref: ResourceRef
    generation: int | None
    accepted: bool
    problems: tuple[FieldError, ...]
    notes: tuple[FieldError, ...]
    report: ProxyReport
    extra: Mapping[str, Any]  # kind-specific status fields (clusterId, sozuKey, fingerprint…)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(
    kind: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    previous: Sequence[Json],
    now: str,
) -> Json:
    text = "True" if status else "False"
    before = next((c for c in previous if isinstance(c, dict) and c.get("type") == kind), None)
    changed = before is None or before.get("status") != text
    transition = now if changed else before.get("lastTransitionTime", now) if before else now
    return {
        "type": kind,
        "status": text,
        "reason": reason,
        "message": message[:1000],
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    }


def _ready(outcome: ResourceOutcome) -> tuple[bool, str, str]:
    if outcome.accepted:
        note = f" ({outcome.notes[0].path}: {outcome.notes[0].message})" if outcome.notes else ""
        return True, "Accepted", "The resource is valid and its references resolved." + note
    if outcome.problems:
        first = outcome.problems[0]
        where = f"{first.path}: " if first.path else ""
        more = f" (and {len(outcome.problems) - 1} more)" if len(outcome.problems) > 1 else ""
        return False, "Invalid", f"{where}{first.message}{more}"
    return False, "Pending", "Waiting for the references of this resource to be resolved."


def desired_status(outcome: ResourceOutcome, current: Mapping[str, Any] | None) -> Json:
    """The full status this proxy wants on the object (other proxies' entries included as they
    are, since the aggregate depends on them)."""
    current = dict(current or {})
    now = _now()
    proxies: dict[str, Json] = {
        pod: dict(entry)
        for pod, entry in (current.get("proxies") or {}).items()
        if isinstance(entry, dict)
    }
    report = outcome.report
    mine = dict(proxies.get(report.pod, {}))
    mine.update(
        {
            "programmedGeneration": report.programmed_generation,
            "planHash": report.plan_hash,
            "sozuVersion": report.sozu_version,
        }
    )
    if report.last_applied is not None or "lastApplied" not in mine:
        mine["lastApplied"] = report.last_applied or mine.get("lastApplied")
    proxies[report.pod] = mine
    programmed = sum(
        1
        for entry in proxies.values()
        if outcome.generation is not None
        and entry.get("programmedGeneration") == outcome.generation
    )
    previous = current.get("conditions") or []
    ready, reason, message = _ready(outcome)
    all_programmed = ready and programmed == len(proxies)
    conditions = [
        _condition("Ready", ready, reason, message, outcome.generation, previous, now),
        _condition(
            "Programmed",
            all_programmed,
            "Programmed" if all_programmed else "NotProgrammed",
            f"{programmed} of {len(proxies)} proxies programmed generation {outcome.generation}.",
            outcome.generation,
            previous,
            now,
        ),
    ]
    return {
        **dict(outcome.extra),
        "observedGeneration": outcome.generation,
        "conditions": conditions,
        "proxies": proxies,
        "proxiesProgrammed": f"{programmed}/{len(proxies)}",
    }


def status_patch(outcome: ResourceOutcome, current: Mapping[str, Any] | None) -> Json | None:
    """A merge patch for `/status`, or None when the stored status already says it all.

    Only this proxy's entry of `proxies` is sent: a merge patch merges maps, so the entries
    other sidecars wrote are never erased, even if they changed since we read them."""
    wanted = desired_status(outcome, current)
    have = dict(current or {})
    patch: Json = {}
    for key, value in wanted.items():
        if key == "proxies":
            entry = value[outcome.report.pod]
            stored = (have.get("proxies") or {}).get(outcome.report.pod)
            # A null in a merge patch deletes the field, so the server never stores one:
            # compare without them, or an entry with a null would be re-sent every pass.
            if not isinstance(stored, Mapping) or _non_null(stored) != _non_null(entry):
                patch["proxies"] = {outcome.report.pod: entry}
        elif have.get(key) != value:
            patch[key] = value
    return patch or None


def _non_null(entry: Mapping[str, Any]) -> Json:
    return {key: value for key, value in entry.items() if value is not None}
