"""docs/benchmarks.md (tables), docs/benchmarks.json (everything) and docs/img/bench-*.png."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import Json
from sozu_operator.applier import DEFAULT_LANES

# Agg: no display, deterministic output; set before pyplot is imported anywhere.
os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PENDING = "operator: pending"


# --- formatting --------------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _s(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.0f} ms"


def _ms(value: float) -> str:
    return f"{value:,.1f} ms" if value < 100 else f"{value:,.0f} ms"


def _mib(value: float) -> str:
    return f"{value / 2**20:,.1f} MiB"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _pct(value: float) -> str:
    return f"{value * 100:.0f} %"


def _met(flag: bool | None) -> str:
    return "—" if flag is None else ("**yes**" if flag else "**no**")


def _size(frontends: int) -> str:
    if frontends >= 1000 and frontends % 1000 == 0:
        return f"{frontends // 1000}k"
    return str(frontends)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _met_if(result: Json | None) -> str:
    """The met cell of an operator hook's row: blank until it was measured."""
    if (result or {}).get("status") != "measured":
        return "—"
    assert result is not None
    return _met(bool(result.get("met")))


def _operator_cells(result: Json | None, cells: Callable[[Json], list[str]]) -> list[str]:
    """The measured, reference and ratio cells of an operator hook's row: `cells` of a
    measured result, else its state (pending, skipped, failed) in the first."""
    if (result or {}).get("status") != "measured":
        return [_operator(result), "", ""]
    assert result is not None
    return cells(result)


def _cold_start_cells(result: Json) -> list[str]:
    first = result.get("details", {}).get("seconds_to_first_mutation")
    return [f"{_n(result['rate'])} req/s ({_n(result['requests'])} requests in "
            f"{_s(result['seconds'])} from the process start"
            + (f"; first request after {_s(first)}" if first is not None else "") + ")",
            f"{_n(result['raw_round_trip_rate'])} req/s raw round trips",
            _pct(result["ratio"])]


def _restart_of(operator_cold: Json | None) -> Json | None:
    """The Sōzu-restart measurement of an operator cold-start result, shaped as a hook's own
    result (its status, the shared raw reference) for the row helpers."""
    if (operator_cold or {}).get("status") != "measured":
        return operator_cold
    assert operator_cold is not None
    return {"status": "measured", **operator_cold["sozu_restart"],
            "raw_round_trip_rate": operator_cold["raw_round_trip_rate"]}


def _restart_cells(result: Json) -> list[str]:
    return [f"{_n(result['rate'])} req/s ({_n(result['requests'])} requests in "
            f"{_s(result['seconds'])} from the restart; first request after "
            f"{_s(result['seconds_to_first_mutation'])})",
            f"{_n(result['raw_round_trip_rate'])} req/s raw round trips",
            _pct(result["ratio"])]


def _change_cells(result: Json) -> list[str]:
    return [f"p50 {_ms(result['p50_ms'])}, p99 {_ms(result['p99_ms'])} ({result['changes']} "
            f"changes; debounce {_ms(result['debounce_ms'])})",
            f"p50 minus the debounce: {_ms(result['p50_minus_debounce_ms'])}", "—"]


def _memory_cells(result: Json) -> list[str]:
    return [f"{result['rss_mib']:,.0f} MiB RSS (peak {result['hwm_mib']:,.0f} MiB) with "
            f"{_n(result['resources'])} custom resources", "—", "—"]


def _operator_line(result: Json | None, cells: Callable[[Json], list[str]]) -> str:
    return "; ".join(cell for cell in _operator_cells(result, cells) if cell not in ("", "—"))


def _operator(result: Json | None) -> str:
    """An operator hook's result in one cell: pending, skipped, or its scalar fields."""
    status = (result or {}).get("status", "pending")
    if status == "pending":
        return PENDING
    if status == "skipped":
        return "operator: not measured (`--skip-operator`)"
    assert result is not None
    fields = [
        f"{key} {value:,.3g}" if isinstance(value, float) else f"{key} {value}"
        for key, value in result.items()
        if key != "status" and isinstance(value, int | float | str | bool)
    ]
    return "operator: " + ", ".join(fields)


# --- plots -------------------------------------------------------------------------------------


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_cold_start(results: Json, img: Path) -> Path:
    sizes = results["sizes"]
    cold = [results["per_size"][str(s)]["cold_start"] for s in sizes]
    labels = [_size(s) for s in sizes]
    x = range(len(sizes))
    width = 0.16

    def operator_rate(c: Json, restart: bool) -> float:
        result = (_restart_of(c["operator"]) if restart else c["operator"]) or {}
        return float(result["rate"]) if result.get("status") == "measured" else 0.0

    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    raw = [c["reference"]["raw_round_trip_rate"] for c in cold]
    series = [
        (raw, "reference: raw round trips (ListWorkers)", "#bbbbbb"),
        ([c["send_rate"] for c in cold], "apply: sending phase only", "#8fb3d9"),
        ([c["rate"] for c in cold], "apply: read + reconcile + send", "#1f5f9f"),
        ([operator_rate(c, True) for c in cold], "running operator: Sōzu restarted",
         "#2e8b57"),
        ([operator_rate(c, False) for c in cold], "operator process started", "#9acd9a"),
    ]
    for n, (values, label, color) in enumerate(series):
        ax.bar([i + (n - 2) * width for i in x], values, width, label=label, color=color)
    for i, r in enumerate(raw):
        ax.plot([i - 2.5 * width, i + 2.5 * width], [0.8 * r] * 2, color="#c0392b", lw=1.5,
                label="target: 80 % of raw" if i == 0 else None)
    ax.set_xticks(list(x), [f"{label} frontends" for label in labels])
    ax.set_ylabel("requests per second")
    ax.set_title("Cold start: programming rate vs raw round-trip rate (same run)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    path = img / "bench-cold-start.png"
    _save(fig, path)
    return path


def _plot_resync(results: Json, img: Path) -> Path:
    r = results["resync"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.5, 3.6))
    names = ["first read\n(reference)", "re-read\n(hash-guided)", "operator\npass",
             "reconcile\n(kept state)", "CLI plan\n(no-op)"]
    seconds = [r["reference_first_read"]["seconds"], r["reread"]["seconds"],
               r["operator_pass"]["seconds"], r["resync"]["seconds"], r["cli_plan_seconds"]]
    left.bar(names, seconds, color=["#bbbbbb", "#8fb3d9", "#1f5f9f", "#5f8fbf", "#7f7f7f"])
    left.axhline(r["target_seconds"], color="#c0392b", lw=1.5, label="target: 1 s")
    left.set_ylabel("seconds")
    left.set_yscale("log")
    left.legend(fontsize=8)
    left.tick_params(axis="x", labelsize=8)
    left.set_title("time", fontsize=10)
    requests = [r["reference_first_read"]["requests"], r["reread"]["requests"]]
    right.bar(["first read", "re-read"], requests, color=["#bbbbbb", "#8fb3d9"])
    right.set_yscale("log")
    right.set_ylabel("read requests (mutations: 0)")
    right.set_title("requests", fontsize=10)
    for i, value in enumerate(requests):
        right.text(i, value, _n(value), ha="center", va="bottom", fontsize=9)
    fig.suptitle(f"No-op resync at {_n(r['clusters'])} clusters / {_n(r['frontends'])} frontends",
                 fontsize=11)
    path = img / "bench-resync.png"
    _save(fig, path)
    return path


def _plot_single_change(results: Json, img: Path) -> Path:
    r = results["single_change"]
    kinds = ["backend", "route", "certificate"]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    width = 0.14
    series: list[tuple[str, Callable[[str], float], str]] = [
        ("CLI p50", lambda k: r["paths"]["cli"][k]["p50_ms"], "#7f7f7f"),
        ("CLI p99", lambda k: r["paths"]["cli"][k]["p99_ms"], "#bbbbbb"),
        ("kept state p50", lambda k: r["paths"]["kept"][k]["p50_ms"], "#5f8fbf"),
        ("kept state p99", lambda k: r["paths"]["kept"][k]["p99_ms"], "#afc8e3"),
        ("operator pass p50", lambda k: r["paths"]["pass"][k]["p50_ms"], "#1f5f9f"),
        ("operator pass p99", lambda k: r["paths"]["pass"][k]["p99_ms"], "#8fb3d9"),
    ]
    for j, (label, get, color) in enumerate(series):
        ax.bar([i + (j - 2.5) * width for i in range(3)], [get(k) for k in kinds], width,
               label=label, color=color)
    send = [r["paths"]["pass"][k]["send_p50_ms"] for k in kinds]
    ax.scatter(range(3), send, marker="_", s=900, color="#c0392b", zorder=3,
               label="reference: bare send p50")
    ax.set_yscale("log")
    ax.set_xticks(range(3), kinds)
    ax.set_ylabel("change → programmed (ms)")
    ax.set_title(f"One change at {_n(r['frontends'])} routes")
    ax.legend(fontsize=8)
    path = img / "bench-single-change.png"
    _save(fig, path)
    return path


def _plot_planning(results: Json, img: Path) -> Path:
    sizes = results["sizes"]
    plans = [results["per_size"][str(s)]["planning"] for s in sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 4))
    for key, label, style in (
        ("build_raw", "build_desired from dicts", "s--"),
        ("build_parsed", "build_desired, validated", "s:"),
        ("plan_cold", "plan, cold start", "o-"),
        ("plan_noop", "plan, no-op", "o-"),
        ("plan_one_change", "plan, one change", "o-"),
    ):
        left.plot(sizes, [p[key]["cpu"] for p in plans], style, label=label)
    left.plot(sizes, [p["plan_noop"]["reference_cpu"] for p in plans], "x:", color="#7f7f7f",
              label="reference: upstream diff, no-op")
    left.plot(sizes, [p["plan_cold"]["reference_cpu"] for p in plans], "x--", color="#7f7f7f",
              label="reference: upstream diff, cold")
    left.axhline(1.0, color="#c0392b", lw=1, label="target: 1 s (at 50k)")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("frontends")
    left.set_ylabel("CPU seconds")
    left.legend(fontsize=7)
    left.set_title("CPU", fontsize=10)
    for key, label, color in (("plan_cold", "plan, cold", "#1f77b4"),
                              ("plan_noop", "plan, no-op", "#2ca02c")):
        right.plot(sizes, [p[key]["peak_bytes"] / 2**20 for p in plans], "o-", label=label,
                   color=color)
        right.plot(sizes, [p[key]["reference_peak_bytes"] / 2**20 for p in plans], "x:",
                   color=color, label=f"reference: upstream diff ({label.split(', ')[1]})")
    right.plot(sizes, [p["desired_state_bytes"] / 2**20 for p in plans], "s--",
               color="#7f7f7f", label="desired state itself")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("frontends")
    right.set_ylabel("peak traced MiB")
    right.legend(fontsize=7)
    right.set_title("peak memory (tracemalloc)", fontsize=10)
    fig.suptitle("Planning", fontsize=11)
    path = img / "bench-planning.png"
    _save(fig, path)
    return path


def _plot_churn(results: Json, img: Path) -> Path:
    r = results["churn"]
    kinds = list(r["by_kind"])
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    width = 0.38
    ax.bar([i - width / 2 for i in range(len(kinds))], [r["by_kind"][k]["upstream"] for k in kinds],
           width, label="reference: Sōzu ConfigState::diff", color="#bbbbbb")
    ax.bar([i + width / 2 for i in range(len(kinds))], [r["by_kind"][k]["ours"] for k in kinds],
           width, label="our planner", color="#1f5f9f")
    ax.set_xticks(range(len(kinds)), kinds, fontsize=8)
    ax.set_ylabel("requests over the trace")
    ax.set_title(f"Churn trace: {r['events']} events (seed {r['seed']})")
    ax.legend(fontsize=8)
    path = img / "bench-churn.png"
    _save(fig, path)
    return path


def _plot_growth(results: Json, img: Path) -> Path:
    rows = results["growth"]["metrics"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for row in rows.values():
        base_x, base_y = row["sizes"][0], row["values"][0]
        ax.plot([x / base_x for x in row["sizes"]], [y / base_y for y in row["values"]], "o-",
                lw=1, ms=3, label=f"{row['label']} ({row['exponent']:.2f})")
    top = max(max(row["sizes"]) / row["sizes"][0] for row in rows.values()) if rows else 1
    ax.plot([1, top], [1, top], color="black", lw=2, ls="--", label="linear (1.00)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("size / smallest size")
    ax.set_ylabel("value / value at smallest size")
    ax.set_title("Growth (growth exponent in brackets)")
    ax.legend(fontsize=6, loc="upper left")
    path = img / "bench-growth.png"
    _save(fig, path)
    return path


# --- markdown ----------------------------------------------------------------------------------


def _summary(results: Json) -> list[str]:
    sizes = results["sizes"]
    rows: list[list[str]] = []
    for size in sizes:
        c = results["per_size"][str(size)]["cold_start"]
        rows.append([
            "1", f"cold start, {_size(size)} frontends via `apply` ({_n(c['requests'])} requests)",
            f"{_n(c['rate'])} req/s", f"{_n(c['reference']['raw_round_trip_rate'])} req/s raw "
            "round trips", _pct(c["ratio"]), "≥ 80 %", _met(c["met"]),
        ])
    for size in sizes:
        operator_cold = results["per_size"][str(size)]["cold_start"]["operator"]
        rows.append(["1", f"cold start, {_size(size)} frontends via the running operator: Sōzu "
                     "restarted under it", *_operator_cells(_restart_of(operator_cold),
                                                            _restart_cells),
                     "≥ 80 %", _met_if(_restart_of(operator_cold))])
    for size in sizes:
        operator_cold = results["per_size"][str(size)]["cold_start"]["operator"]
        rows.append(["1", f"cold start, {_size(size)} frontends via an operator process "
                     "started on an empty Sōzu", *_operator_cells(operator_cold,
                                                                 _cold_start_cells),
                     "≥ 80 %", _met_if(operator_cold)])
    r = results["resync"]
    first, reread = r["reference_first_read"], r["reread"]
    rows.append([
        "2", f"no-op resync, {_n(r['clusters'])} clusters / {_size(r['frontends'])} frontends: "
        "read requests", f"{_n(reread['requests'])} ({reread['clusters_queried']} clusters "
        f"queried), 0 mutations", f"{_n(first['requests'])} (first read)",
        _pct(r["ratio_requests"]), "not every cluster; 0 mutations (asserted)",
        _met(r["met_requests"]),
    ])
    op = r["operator_pass"]
    rows.append([
        "2", "no-op resync: the operator's pass (full hash-guided read, reconciliation reused)",
        f"{_s(op['seconds'])} ({_n(op['requests'])} requests; whole reconcile with kept "
        f"resources: {_s(r['resync']['seconds'])})", f"{_s(first['seconds'])} (first read alone)",
        _pct(op["seconds"] / first["seconds"]), "< 1 s", _met(r["met_seconds"]),
    ])
    s = results["single_change"]
    cli, kept = s["paths"]["cli"]["all"], s["paths"]["kept"]["all"]
    rows.append([
        "3", f"one change at {_size(s['frontends'])} routes, CLI `apply` "
        f"({cli['changes']} changes)", f"p50 {_ms(cli['p50_ms'])}, p99 {_ms(cli['p99_ms'])}",
        f"bare send p50 {_ms(cli['send_p50_ms'])}", _ratio(cli["ratio_p50"]), "—", "—",
    ])
    rows.append([
        "3", f"one change, kept reader + validated resources ({kept['changes']} changes)",
        f"p50 {_ms(kept['p50_ms'])}, p99 {_ms(kept['p99_ms'])}",
        f"bare send p50 {_ms(kept['send_p50_ms'])}", _ratio(kept["ratio_p50"]), "—", "—",
    ])
    one = s["paths"]["pass"]["all"]
    rows.append([
        "3", f"one change, the operator's pass in process, no API ({one['changes']} changes): "
        "pass start → programmed",
        f"p50 {_ms(one['p50_ms'])}, p99 {_ms(one['p99_ms'])}"
        + (f" (whole pass, outcomes for statuses included: p50 "
           f"{_ms(one['whole_pass_p50_ms'])}, p99 {_ms(one['whole_pass_p99_ms'])})"
           if "whole_pass_p50_ms" in one else ""),
        f"bare send p50 {_ms(one['send_p50_ms'])}", _ratio(one["ratio_p50"]),
        "p50 < 200 ms, p99 < 1 s", _met(one["p50_ms"] < 200 and one["p99_ms"] < 1000),
    ])
    op = s["operator"]
    rows.append(["3", f"one change at {_size(s['frontends'])} routes via the running operator",
                 *_operator_cells(op, _change_cells), "p50 < 200 ms + debounce, p99 < 1 s",
                 _met_if(op)])
    big = results["per_size"][str(sizes[-1])]["planning"]
    for key, label in (("plan_noop", "no-op"), ("plan_cold", "cold start")):
        p = big[key]
        rows.append([
            "4", f"plan ({label}), {_n(big['clusters'])} clusters / {_size(sizes[-1])} frontends",
            f"{p['cpu_gc_relaxed']:.2f} s CPU as `sozu-operator` runs (GC threshold raised at "
            f"start); {p['cpu']:.2f} s with Python's default GC thresholds ({p['gc']:.2f} s "
            f"of it in GC); peak {_mib(p['peak_bytes'])}",
            f"{p['reference_cpu']:.2f} s, peak {_mib(p['reference_peak_bytes'])} "
            "(upstream diff)", _ratio(p["ratio"]), "< 1 s CPU",
            _met(p["cpu_gc_relaxed"] < 1.0),
        ])
    memory = _nearest(results, 10_000)["planning"]["operator_resident_memory"]
    rows.append(["4", "operator resident memory, 10k-frontend workload",
                 *_operator_cells(memory, _memory_cells),
                 "none here (the target is at 10k CRs: next row)", "—"])
    if isinstance(memory, dict) and "at_target_size" in memory:
        rows.append(["4", "operator resident memory at 10k CRs",
                     *_operator_cells(memory["at_target_size"], _memory_cells), "< 300 MiB",
                     _met_if(memory["at_target_size"])])
    c = results["churn"]
    rows.append([
        "5", f"churn trace ({c['events']} events, {_size(c['base_frontends'])} frontends): "
        "requests", _n(c["ours"]), f"{_n(c['upstream'])} (Sōzu's diff)", _pct(c["ratio"]),
        "never more; fewer on weight and certificate changes", _met(c["met"]),
    ])
    g = results["growth"]["metrics"]
    flagged = [row["label"] for row in g.values() if row["superlinear"]]
    rows.append([
        "6", f"growth {_size(sizes[0])} → {_size(sizes[-1])}", f"{len(g)} metrics, "
        f"{len(flagged)} above {results['growth']['threshold']:.2f}", "linear (1.00)", "—",
        "superlinear explained", "see §6",
    ])
    return _table(["#", "Figure", "Measured", "Reference", "Ratio", "Target", "Met?"], rows)


def _apply_gaps(results: Json) -> list[str]:
    """Why `apply` falls short of the target, in figures of this run: the reconcile before the
    first request, which sending does not overlap, and the client's own CPU time."""
    lines = []
    for size in results["sizes"]:
        c = results["per_size"][str(size)]["cold_start"]
        if c["met"]:
            continue
        sec, cpu = c["seconds"], c["cpu_seconds"]
        budget = c["requests"] / c["reference"]["raw_round_trip_rate"] / 0.8
        used = f"the client's CPU until programmed was {_s(cpu['client'])}"
        if sec["send"] >= budget:
            verdict = (f"Sending alone exceeds that budget, so sending while still planning "
                       f"would not be enough here ({used}).")
        elif cpu["client"] >= budget:
            verdict = (f"Here {used}, over that budget: one Python process cannot finish "
                       "sooner than its own CPU time, so sending while still planning would "
                       "not be enough; the client's CPU per request would have to fall too.")
        else:
            verdict = (f"Here {used}, within that budget: sending while still planning "
                       "(streaming the plan to the sender, not done) could meet the target.")
        lines.append(
            f"- **`apply`, {_size(size)}: {_pct(c['ratio'])}, below 80 %.** At 80 % of raw "
            f"the run may take {_s(budget)}. Sending alone took {_s(sec['send'])} "
            f"({_pct(c['send_ratio'])} of raw, over {DEFAULT_LANES} connections: Sōzu takes "
            "one request at a time per connection), after a reconcile of "
            f"{_s(sec['reconcile'])} (validating every resource, building the desired state, "
            f"planning) that sending does not overlap. {verdict} The running operator keeps "
            "its validated resources and built state: after a Sōzu restart it only plans "
            "before sending (the restart rows).")
    return [*lines, ""] if lines else []


def _restart_gaps(results: Json) -> list[str]:
    """Why the running operator re-programming a restarted Sōzu falls short, in figures of
    this run: what came before its first request against the budget."""
    lines = []
    for size in results["sizes"]:
        result = _restart_of(results["per_size"][str(size)]["cold_start"]["operator"])
        if (result or {}).get("status") != "measured" or result is None or result["met"]:
            continue
        budget = result["requests"] / result["raw_round_trip_rate"] / 0.8
        first = result["seconds_to_first_mutation"]
        lines.append(
            f"- **Sōzu restarted under the operator, {_size(size)}: {_pct(result['ratio'])}, "
            f"below 80 %.** At 80 % of raw the re-programming may take {_s(budget)}. Its "
            f"first request left {_s(first)} after the restart (noticing the hang-up, "
            "connecting again, reading the empty Sōzu, planning every object), and sending "
            f"took {_s(result['seconds'] - first)}: at this size that fixed part is "
            f"{_pct(first / budget)} of the budget.")
    return [*lines, ""] if lines else []


def _process_start_gaps(results: Json) -> list[str]:
    """Why an operator process started on an empty Sōzu falls short of the target, in figures
    of this run: its fixed start-up cost against the time the whole work takes raw."""
    lines = []
    for size in results["sizes"]:
        result = results["per_size"][str(size)]["cold_start"]["operator"]
        if (result or {}).get("status") != "measured" or result["met"]:
            continue
        raw_seconds = result["requests"] / result["raw_round_trip_rate"]
        first = result["details"]["seconds_to_first_mutation"]
        restart = result["sozu_restart"]
        lines.append(
            f"- **Operator process started, {_size(size)}: {_pct(result['ratio'])}, below "
            f"80 %.** Its first request left {_s(first)} after the process started: the "
            "interpreter's start and imports (`python -X importtime -c \"import "
            "sozu_operator.kube.operator\"` shows them), logging in, its own LIST of "
            "everything watched. "
            f"All {_n(result['requests'])} requests take {_s(raw_seconds)} at the raw rate: "
            f"at 80 % the whole cold start may take {_s(raw_seconds / 0.8)}, start-up "
            "included. Once running, the same "
            f"operator re-programmed a restarted Sōzu at {_pct(restart['ratio'])} of raw "
            f"(first request {_s(restart['seconds_to_first_mutation'])} after the restart).")
    return [*lines, ""] if lines else []


def _cold_section(results: Json) -> list[str]:
    lines = ["## 1. Cold start", "", "![cold start](img/bench-cold-start.png)", ""]
    rows = []
    for size in results["sizes"]:
        c = results["per_size"][str(size)]["cold_start"]
        sec = c["seconds"]
        rows.append([
            _size(size), _n(c["requests"]), _s(sec["read"]), _s(sec["reconcile"]),
            _s(sec["send"]), _s(sec["programmed"]), _n(c["rate"]), _n(c["send_rate"]),
            _n(c["reference"]["raw_round_trip_rate"]), _n(c["reference"]["two_frame_rate"]),
            _pct(c["ratio"]), _pct(c["send_ratio"]),
            f"{c['cpu_seconds']['client']:.1f} / {c['cpu_seconds']['emulator']:.1f} s",
            _s(sec["confirm"]), _met(c["met"]),
        ])
    lines += _table(
        ["frontends", "requests", "read", "reconcile", "send", "programmed", "rate (req/s)",
         "send rate", "raw round trips", "raw, 2-frame answer", "rate / raw", "send / raw",
         "CPU client / emulator",
         "CLI confirm", "≥ 80 %?"],
        rows,
    )
    lines += [
        "*rate* = requests / time to programmed (read + reconcile + send); *raw round trips* "
        "= `ListWorkers` on the same connection and emulator, median of three measurements "
        "(before, between reconcile and send, after; each the median of 4 batches); "
        "*raw, 2-frame answer* = the same with `Status`, answered like a "
        "mutation (PROCESSING, then OK); *CPU* = client and emulator CPU seconds until "
        "programmed; *CLI confirm* = the fresh read and re-plan `apply` does afterwards (not "
        "part of *programmed*).",
        "",
        "Running operator (`sozu-operator run`, a process, against the bundled Kubernetes API "
        "emulator), **Sōzu restarted under it** once it is in sync and idle (back to its "
        "listeners, every command connection closed; timed from the restart until Sōzu "
        "answered the last request, which must be exactly the cold start's additions; the "
        "same work as `apply`'s row, nothing starts): "
        + "; ".join(f"{_size(size)}: " + _operator_line(
            _restart_of(results["per_size"][str(size)]["cold_start"]["operator"]),
            _restart_cells) for size in results["sizes"]) + ".",
        "",
        "The same operator **started as a process** on an empty Sōzu, with every resource "
        "already in the API (its time includes the interpreter's start and imports, and its "
        "own LIST of everything watched): "
        + "; ".join(f"{_size(size)}: " + _operator_line(
            results["per_size"][str(size)]["cold_start"]["operator"], _cold_start_cells)
            for size in results["sizes"]) + ".",
        "",
    ]
    return lines


def _resync_section(results: Json) -> list[str]:
    r = results["resync"]
    first, reread, resync = r["reference_first_read"], r["reread"], r["resync"]
    lines = ["## 2. No-op resync", "", "![resync](img/bench-resync.png)", ""]
    lines += _table(
        ["", "requests", "clusters queried", "wall", "client CPU", "emulator CPU"],
        [
            ["first read (reference)", _n(first["requests"]), _n(first["clusters_queried"]),
             _s(first["seconds"]), _s(first["client_cpu"]), _s(first["emulator_cpu"])],
            ["re-read (hash-guided)", _n(reread["requests"]), _n(reread["clusters_queried"]),
             _s(reread["seconds"]), _s(reread["client_cpu"]), _s(reread["emulator_cpu"])],
            ["no-op resync (re-read + reconcile + plan)", _n(reread["requests"]), "0",
             f"{_s(resync['seconds'])} (GC {_s(resync['gc_seconds'])})",
             f"plan alone {_s(resync['plan_cpu'])} (GC {_s(resync['plan_gc'])})", ""],
            [f"the same with `gc.set_threshold{tuple(r['resync_gc_relaxed']['thresholds'])}`",
             _n(reread["requests"]), "0",
             f"{_s(r['resync_gc_relaxed']['seconds'])} "
             f"(GC {_s(r['resync_gc_relaxed']['gc_seconds'])})", "", ""],
            ["no-op resync, desired state kept (re-read + plan)", _n(reread["requests"]), "0",
             f"{_s(r['resync_kept_desired']['seconds'])} "
             f"(GC {_s(r['resync_kept_desired']['gc_seconds'])})", "", ""],
            ["CLI `plan`, no-op (fresh reader, validates all)", _n(first["requests"]),
             _n(first["clusters_queried"]), _s(r["cli_plan_seconds"]), "", ""],
            ["**the operator's resync pass** (`Reconciler.pass_once`, full read)",
             _n(r["operator_pass"]["requests"]), _n(r["operator_pass"]["clusters_queried"]),
             f"{_s(r['operator_pass']['seconds'])} "
             f"(GC {_s(r['operator_pass']['gc_seconds'])})", "", ""],
        ],
    )
    verbs = ", ".join(f"{verb} {count}" for verb, count in r["requests_by_verb"].items())
    lines += [
        f"Mutating requests received by the emulator over all of the above: "
        f"**{r['mutating_requests']}** (asserted). Requests received: {verbs}.",
        "",
    ]
    if reread["notes"]:
        lines += ["Reader notes on the re-read: " + "; ".join(reread["notes"]), ""]
    return lines


def _single_section(results: Json) -> list[str]:
    s = results["single_change"]
    lines = ["## 3. Single change", "", "![single change](img/bench-single-change.png)", ""]
    rows = []
    for path, label in (("cli", "CLI `apply`"), ("kept", "kept reader + validated resources"),
                        ("pass", "operator pass (in process, no API)")):
        for kind in ("backend", "route", "certificate", "all"):
            p = s["paths"][path][kind]
            expected = s["expected_requests"].get(kind)
            rows.append([
                label, kind, str(p["changes"]),
                ", ".join(expected) if expected else "",
                _ms(p["p50_ms"]), _ms(p["p99_ms"]), _ms(p["send_p50_ms"]),
                _ratio(p["ratio_p50"]),
            ])
    lines += _table(["path", "change", "n", "requests (checked)", "p50", "p99",
                     "bare send p50 (reference)", "p50 / send"], rows)
    lines += ["Running operator: " + _operator_line(s["operator"], _change_cells) + ".", ""]
    return lines


def _planning_section(results: Json) -> list[str]:
    lines = ["## 4. Planning", "", "![planning](img/bench-planning.png)", ""]
    rows = []
    for size in results["sizes"]:
        p = results["per_size"][str(size)]["planning"]
        for key, label in (("plan_cold", "cold"), ("plan_noop", "no-op"),
                           ("plan_one_change", "one change")):
            q = p[key]
            rows.append([
                _size(size), label, _n(q["steps"]), f"{q['cpu']:.3f} s", f"{q['gc']:.3f} s",
                f"{q['cpu_gc_relaxed']:.3f} s",
                f"{q['reference_cpu']:.3f} s", _ratio(q["ratio"]), _mib(q["peak_bytes"]),
                _mib(q["reference_peak_bytes"]),
                _met(q["cpu_gc_relaxed"] < 1.0) if size == results["sizes"][-1] else "—",
            ])
    lines += _table(["frontends", "plan", "steps", "CPU", "of which GC", "CPU, GC threshold "
                     "50k (as `sozu-operator` runs)", "upstream diff CPU", "ratio", "peak",
                     "upstream peak", "< 1 s? (as it runs)"], rows)
    rows = []
    for size in results["sizes"]:
        p = results["per_size"][str(size)]["planning"]
        rows.append([
            _size(size), f"{p['build_raw']['cpu']:.2f} s ({p['build_raw']['gc']:.2f} s GC)",
            f"{p['build_parsed']['cpu']:.2f} s ({p['build_parsed']['gc']:.2f} s GC)",
            _mib(p["build_raw"]["peak_bytes"]), _mib(p["desired_state_bytes"]),
            f"{p['max_rss_mib']:,.0f} MiB",
        ])
    lines += _table(["frontends", "build from dicts (validates)", "build from validated",
                     "build peak", "desired state", "process max RSS"], rows)
    lines += [
        "CPU is `time.process_time()`, median of repeats, each size in its own process; "
        "*of which GC* is the wall time CPython's cyclic collector ran inside it; *GC "
        "threshold 50k* is the same plan after `gc.set_threshold(50_000, 20, 100)`. Peak is "
        "`tracemalloc`'s peak above the baseline, in a separate pass.",
        "",
        "Operator resident memory, 10k-frontend workload: " + _operator_line(
            _nearest(results, 10_000)["planning"]["operator_resident_memory"], _memory_cells)
        + ".",
        "",
    ]
    return lines


def _nearest(results: Json, size: int) -> Json:
    best = min(results["sizes"], key=lambda s: abs(s - size))
    found: Json = results["per_size"][str(best)]
    return found


def _churn_section(results: Json) -> list[str]:
    c = results["churn"]
    lines = ["## 5. Requests versus upstream", "", "![churn](img/bench-churn.png)", ""]
    rows = []
    for kind, k in c["by_kind"].items():
        rows.append([
            kind, str(k["events"]), _n(k["ours"]), _n(k["upstream"]), _ratio(k["ratio"]),
            str(k["events_with_more"]), str(k["events_with_fewer"]),
            "fewer on every event" if k["strictly_fewer_required"] else "never more",
            _met(k["events_with_more"] == 0 and (
                not k["strictly_fewer_required"] or k["events_with_fewer"] == k["events"])),
        ])
    rows.append(["**all**", str(c["events"]), _n(c["ours"]), _n(c["upstream"]),
                 _ratio(c["ratio"]), "", "", "", _met(c["met"])])
    lines += _table(["event", "events", "ours", "upstream diff", "ratio", "events with more",
                     "events with fewer", "target", "met?"], rows)
    lines += [
        f"Trace: seed {c['seed']}, {c['events']} events over {_n(c['clusters'])} clusters "
        f"({_n(c['base_frontends'])} frontends), recorded in `benchmarks.json`. Every plan was "
        f"applied to the emulator and the next plan was empty; the simulator found "
        f"{c['simulator_violations']} traffic-safety violations ({c['flagged_gaps']} flagged "
        "gaps, all route moves: Sōzu cannot change a route's cluster in place).",
        "",
    ]
    return lines


def _growth_section(results: Json) -> list[str]:
    g = results["growth"]
    lines = ["## 6. Growth", "", "![growth](img/bench-growth.png)", ""]
    rows = []
    for row in g["metrics"].values():
        rows.append([
            row["label"], " → ".join(f"{v:.3g}" for v in row["values"]) + f" {row['unit']}",
            f"{row['size_ratio']:.0f}×", f"{row['value_ratio']:.1f}×",
            f"{row['exponent']:.2f}", "**superlinear**" if row["superlinear"] else "linear or less",
        ])
    lines += _table(["metric", "values", "size ×", "value ×", "exponent", "verdict"], rows)
    explained = [(row["label"], row["explanation"]) for row in g["metrics"].values()
                 if row["superlinear"]]
    if explained:
        lines += [f"Above {g['threshold']:.2f}, explained:", ""]
        lines += [f"- **{label}**: {text}" for label, text in explained]
        lines.append("")
    return lines


def markdown(results: Json) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py`; do not edit by hand. Every figure is measured in the "
        "same run as its reference and reads as a ratio (the machine may be shared). The Sōzu "
        "side is the bundled emulator in its own process (a Python stand-in: real Sōzu answers "
        "far faster, so emulator time counts against us here).",
        "",
        f"- command: `{results['command']}` ({results['mode']} run, "
        f"{results['duration_seconds']:.0f} s)",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory']}; load average at start "
        f"{m['load_average_at_start']}",
        f"- Python {m['python']} ({m['implementation']}), {m['platform']}",
        f"- date: {m['date']}",
        "- machine-readable: [`benchmarks.json`](benchmarks.json)",
        "",
        "## Summary",
        "",
        *_summary(results),
        *_apply_gaps(results),
        *_restart_gaps(results),
        *_process_start_gaps(results),
        *_cold_section(results),
        *_resync_section(results),
        *_single_section(results),
        *_planning_section(results),
        *_churn_section(results),
        *_growth_section(results),
    ]
    return "\n".join(lines).rstrip() + "\n"


def write(results: Json, out: Path) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    img = out.parent / "img"
    img.mkdir(exist_ok=True)
    pictures = [
        _plot_cold_start(results, img),
        _plot_resync(results, img),
        _plot_single_change(results, img),
        _plot_planning(results, img),
        _plot_churn(results, img),
        _plot_growth(results, img),
    ]
    results = {**results, "images": [str(p.relative_to(out.parent)) for p in pictures]}
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    out.write_text(markdown(results))
    return [out, json_path, *pictures]
