"""Plans for people and for machines: the text and JSON forms, the saved plan file, and the
digest that ties a saved plan to the live state it was computed from.

A saved plan carries every request in Sōzu's own state-file JSON (see docs/statefile.md), so it
can be replayed without recomputation, except that private keys are replaced by their SHA-256:
`apply --plan` takes the keys from the resource files again and checks them against it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import CertificateAndKey
from sozu_operator.proxy.statefile import parse_state, render_state
from sozu_operator.reconcile.planner import Action, Phase, Plan, Step
from sozu_operator.reconcile.proxystate import ProxyState

PLAN_FORMAT = "sozu-operator/plan/v1"
REDACTED = "<redacted>"
NO_CHANGES = "No changes: Sōzu already serves what the resources describe."
_MARKS = {Action.ADD: "+", Action.UPDATE: "~", Action.REPLACE: "~", Action.REMOVE: "-"}


class PlanFileError(ValueError):
    """A saved plan that cannot be used; the message says why and what to do."""


def state_digest(state: ProxyState, *, sozu_version: int = 2) -> str:
    """A digest of everything a proxy serves (keys included, but only hashed)."""
    requests = state.to_config_state(sozu_version=sozu_version).generate_requests()
    return "sha256:" + hashlib.sha256(render_state(requests, version=2)).hexdigest()


def key_digest(key_pem: str) -> str:
    return "sha256:" + hashlib.sha256(key_pem.encode()).hexdigest()


def action_counts(plan: Plan) -> dict[str, int]:
    counts = Counter(step.action.value for step in plan.steps)
    return {action.value: counts.get(action.value, 0) for action in Action}


def summary_line(plan: Plan) -> str:
    if plan.is_empty:
        return NO_CHANGES
    counts = action_counts(plan)
    gaps = len(plan.gaps)
    text = (
        f"Plan: {counts['add']} to add, {counts['update']} to update, "
        f"{counts['replace']} to replace, {counts['remove']} to remove "
        f"({len(plan.steps)} requests)"
    )
    return text + (f", {gaps} with a brief traffic gap." if gaps else ".")


def render_text(plan: Plan, *, header: str | None = None) -> str:
    lines: list[str] = []
    if header:
        lines += [header, ""]
    phase: Phase | None = None
    for index, step in enumerate(plan.steps, start=1):
        if step.phase is not phase:
            phase = step.phase
            lines.append(f"{phase.value}:")
        summary = step.summary
        if summary[:2] not in ("+ ", "~ ", "- "):
            summary = f"{_MARKS[step.action]} {summary}"
        shown = step.resource and step.resource not in summary
        source = f"   [{step.resource}]" if shown else ""
        lines.append(f"  {index:>4}. {summary}{source}")
        if step.gap:
            lines.append(f"        ! gap: {step.gap}")
    if plan.problems:
        if lines:
            lines.append("")
        lines.append("Left alone:")
        lines += [
            f"  ? {p.kind} {p.key}: {p.reason}" + (f" [{p.resource}]" if p.resource else "")
            for p in plan.problems
        ]
    if not plan.guard.allowed:
        lines += ["", f"REFUSED by the mass-deletion guard: {plan.guard.reason}"]
    lines += ["", summary_line(plan)]
    return "\n".join(lines)


def _request_json(request: rq.Mutation) -> dict[str, Any]:
    record = json.loads(render_state([request], version=2).rstrip(b"\n\0"))
    payload: dict[str, Any] = record["content"]["request_type"]
    return payload


def _redact(payload: dict[str, Any]) -> dict[str, Any]:
    for member in ("ADD_CERTIFICATE", "REPLACE_CERTIFICATE"):
        if member in payload:
            body = payload[member]
            certificate = body["certificate" if member == "ADD_CERTIFICATE" else "new_certificate"]
            certificate["key_sha256"] = key_digest(certificate["key"])
            certificate["key"] = REDACTED
    return payload


def plan_document(
    plan: Plan,
    *,
    owner: str,
    sozu_version: int,
    live_digest: str | None,
    target: str | None = None,
) -> dict[str, Any]:
    """The stable JSON form of a plan (`--output json` and `--out`)."""
    return {
        "format": PLAN_FORMAT,
        "owner": owner,
        "sozuVersion": sozu_version,
        "target": target,
        "liveDigest": live_digest,
        "summary": {**action_counts(plan), "requests": len(plan.steps), "gaps": len(plan.gaps)},
        "guard": {
            "allowed": plan.guard.allowed,
            "ownedLive": plan.guard.owned_live,
            "removals": plan.guard.removals,
            "maxRemovalShare": plan.guard.max_removal_share,
            "minObjects": plan.guard.min_objects,
            "forced": plan.guard.forced,
            "reason": plan.guard.reason,
        },
        "steps": [
            {
                "index": index,
                "phase": step.phase.value,
                "action": step.action.value,
                "verb": rq.verb_name(step.request),
                "summary": step.summary,
                "resource": step.resource,
                "gap": step.gap,
                "gapRoutes": list(step.gap_routes),
                "request": _redact(_request_json(step.request)),
            }
            for index, step in enumerate(plan.steps)
        ],
        "problems": [
            {"kind": p.kind, "key": p.key, "reason": p.reason, "resource": p.resource}
            for p in plan.problems
        ],
    }


@dataclass(frozen=True)
class SavedPlan:
    owner: str
    sozu_version: int
    live_digest: str
    steps: tuple[Step, ...]
    # For each step carrying a certificate: the SHA-256 of the key the plan was made with.
    key_digests: Mapping[int, str]


def _step_request(index: int, payload: Any) -> rq.Mutation:
    record = json.dumps({"id": f"SAVE-{index}", "content": {"request_type": payload}})
    try:
        parsed = parse_state(record.encode() + b"\n\0", source=f"plan step {index}")
    except ValueError as error:
        raise PlanFileError(f"step {index}: {error}") from None
    request = parsed.requests[0]
    if not rq.is_mutation(request):
        raise PlanFileError(f"step {index}: {rq.verb_name(request)} is not a change")
    return request


def load_plan_document(document: Any) -> SavedPlan:
    if not isinstance(document, dict) or document.get("format") != PLAN_FORMAT:
        raise PlanFileError(f"not a saved plan (expected \"format\": \"{PLAN_FORMAT}\")")
    try:
        steps: list[Step] = []
        key_digests: dict[int, str] = {}
        for index, raw in enumerate(document["steps"]):
            payload = raw["request"]
            for member, field in (("ADD_CERTIFICATE", "certificate"),
                                  ("REPLACE_CERTIFICATE", "new_certificate")):
                if isinstance(payload, dict) and member in payload:
                    certificate = payload[member][field]
                    key_digests[index] = certificate.pop("key_sha256")
            steps.append(
                Step(
                    request=_step_request(index, payload),
                    phase=Phase(raw["phase"]),
                    action=Action(raw["action"]),
                    summary=str(raw["summary"]),
                    resource=raw.get("resource"),
                    gap=raw.get("gap"),
                    gap_routes=tuple(raw.get("gapRoutes", ())),
                )
            )
        return SavedPlan(
            owner=str(document["owner"]),
            sozu_version=int(document["sozuVersion"]),
            live_digest=str(document["liveDigest"]),
            steps=tuple(steps),
            key_digests=key_digests,
        )
    except PlanFileError:
        raise
    except (KeyError, TypeError, ValueError) as error:
        raise PlanFileError(
            f"the saved plan is malformed ({type(error).__name__}: {error})"
        ) from None


def restore_keys(saved: SavedPlan, certificates: Iterable[CertificateAndKey]) -> tuple[Step, ...]:
    """Put the private keys back into a saved plan's certificate steps, from certificates the
    resource files give; a key must match the digest the plan recorded."""
    keys = {key_digest(c.key): c.key for c in certificates}
    steps = list(saved.steps)
    for index, digest in saved.key_digests.items():
        key = keys.get(digest)
        if key is None:
            raise PlanFileError(
                f"step {index + 1} ({steps[index].summary}) needs a private key that none of "
                "the given files holds; give the -f files the plan was made from"
            )
        step = steps[index]
        match step.request:
            case rq.AddCertificate(certificate=certificate):
                request: rq.Mutation = replace(
                    step.request, certificate=replace(certificate, key=key)
                )
            case rq.ReplaceCertificate(new_certificate=certificate):
                request = replace(step.request, new_certificate=replace(certificate, key=key))
            case _:
                raise PlanFileError(f"step {index + 1} carries a key but is not a certificate")
        steps[index] = replace(step, request=request)
    return tuple(steps)
