"""The text table of ``python -m fastreg bench``: 80 columns by default, everything with ``--wide``.

Default: one block per case, the case name (and the throughput's unit) on its own line, then a
line per contender with its median, the spread of the rounds (min-max, in the median's unit),
throughput, fastreg's ratio against it and its goal. If that would pass 80 columns the
throughput column goes first, then over-long lines are cut; a failed peer's message goes on a
line of its own. ``--wide``: one line per contender with every figure (min, quartiles, max,
rounds and calls per sample), never cut.

A contender faster than the machine's own limit (a copy of the same bytes, the bare GEMM) means
the limit was measured badly (a noisy neighbour slowed the copy), not that the kernel beat the
memory bus: such a case is flagged with ``(!)`` and a note, and its goals are not counted.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runner import Goal, Result, Timing

#: The default table's width: a terminal's.
WIDTH = 80

_UNITS = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9))


def _unit(seconds: float) -> tuple[str, float]:
    for unit, factor in _UNITS[:-1]:
        if seconds >= factor:
            return unit, factor
    return _UNITS[-1]


def format_seconds(seconds: float) -> str:
    """``seconds`` with 3 significant digits in s, ms, us or ns."""
    unit, factor = _unit(seconds)
    return f"{seconds / factor:.3g} {unit}"


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def format_spread(timing: Timing) -> str:
    """``min-max`` of the rounds in the median's unit (no unit written), e.g. ``2.14-2.50``."""
    _, factor = _unit(timing.median_s)
    high = timing.max_s if timing.max_s is not None else timing.median_s
    return f"{_number(timing.min_s / factor)}-{_number(high / factor)}"


def _ratio_cell(result: Result, label: str) -> str:
    flag = " (!)" if label in result.beyond_limit else ""
    if label == "fastreg":
        if result.percent_of_limit is None:
            return ""
        return f"{result.percent_of_limit:.0f}% of {result.limit}{flag}"
    if label == result.limit:
        return f"{result.limit_ratio:.2f}x its time"
    if label in result.speedups:
        speedup = result.speedups[label]
        if speedup >= 1.0:
            return f"{speedup:.2f}x faster{flag}"
        return f"{1.0 / speedup:.2f}x slower{flag}"
    return ""


def _goal_cell(goals: list[Goal], key: str) -> str:
    for goal in goals:
        if goal.key == key:
            if goal.kind == "seconds":  # a time budget on fastreg's own median
                return f"<={format_seconds(goal.target)} {goal.status}"
            rule = ">=" if goal.kind == "speedup" else "<="
            return f"{rule}{goal.target:.3g}x {goal.status}"
    return ""


def _throughput(result: Result, timing: Timing, unit: bool = True) -> str:
    if timing.throughput is None:
        return ""
    return f"{timing.throughput:.3g} {result.unit}" if unit else f"{timing.throughput:.3g}"


def _notes(result: Result, wide: bool) -> list[str]:
    notes = [] if wide else [f"{label} failed: {msg}" for label, msg in result.failed.items()]
    if not result.beyond_limit:
        return notes
    who = ", ".join(result.beyond_limit)
    return notes + [
        f"(!) {who} ran faster than the {result.limit}, the machine's limit: a measurement "
        "problem (the limit was timed slow), not a result; the case's goals are not counted; "
        "rerun it"
    ]


#: The columns of both layouts: (key, heading, alignment); the narrow one keeps ``_NARROW``.
_COLUMNS = (
    ("case", "case", "<"),
    ("label", "contender", "<"),
    ("median", "median", ">"),
    ("spread", "min-max", ">"),
    ("min", "min", ">"),
    ("iqr", "q1-q3", ">"),
    ("max", "max", ">"),
    ("rounds", "rounds x calls", ">"),
    ("throughput", "throughput", ">"),
    ("ratio", "fastreg", "<"),
    ("goal", "goal", "<"),
)
_NARROW = ("label", "median", "spread", "throughput", "ratio", "goal")
_WIDE = ("case", "label", "median", "min", "iqr", "max", "rounds", "throughput", "ratio", "goal")


def _optional(seconds: float | None) -> str:
    return format_seconds(seconds) if seconds is not None else "?"


def _rows(result: Result, wide: bool) -> list[dict[str, str]]:
    """One dict of cells per contender line of ``result`` (missing keys are empty); the
    narrow table writes the throughput's unit once, on the case's line."""
    rows: list[dict[str, str]] = []
    if result.error:
        return [{"label": "ERROR", "ratio": result.error.strip().splitlines()[-1]}]
    for label, timing in result.timings.items():
        rows.append(
            {
                "label": label,
                "median": format_seconds(timing.median_s),
                "spread": format_spread(timing),
                "min": format_seconds(timing.min_s),
                "iqr": f"{_optional(timing.q1_s)}-{_optional(timing.q3_s)}",
                "max": _optional(timing.max_s),
                "rounds": f"{timing.rounds} x {timing.number}",
                "throughput": _throughput(result, timing, unit=wide),
                "ratio": _ratio_cell(result, label),
                "goal": _goal_cell(result.goals, label),
            }
        )
    for label, message in result.failed.items():
        goal = _goal_cell(result.goals, label)
        cell = message if wide else "(below)"
        rows.append({"label": label, "median": "failed", "ratio": cell, "goal": goal})
    for label in result.missing:
        goal = _goal_cell(result.goals, label)
        rows.append({"label": label, "median": "n/a", "ratio": "not installed", "goal": goal})
    for goal in result.goals:
        if goal.status == "invalid":
            rows.append({"label": goal.key, "goal": f"invalid goal key {goal.key!r}"})
    return rows


def _summary(results: Sequence[Result]) -> str:
    goals = [g for r in results for g in r.goals if g.status in ("met", "missed")]
    summary = f"goals met: {sum(g.status == 'met' for g in goals)}/{len(goals)}"
    suspect = [r.name for r in results if r.beyond_limit]
    if suspect:
        summary += f"; not counted, beyond the machine limit (!): {', '.join(suspect)}"
    errors = [r.name for r in results if r.error]
    if errors:
        summary += f"; cases with errors: {', '.join(errors)}"
    return summary


def _align(rows: list[dict[str, str]], keys: Sequence[str], rule: bool = False) -> list[str]:
    """``rows`` as aligned text lines in the columns ``keys``: the heading line first, then a
    rule of dashes under each heading if ``rule``."""
    columns = [c for c in _COLUMNS if c[0] in keys]
    table = [{key: heading for key, heading, _ in columns}, *rows]
    widths = {key: max(len(row.get(key, "")) for row in table) for key, _, _ in columns}
    if rule:
        table.insert(1, {key: "-" * width for key, width in widths.items()})
    return [
        "  ".join(f"{row.get(key, ''):{a}{widths[key]}}" for key, _, a in columns).rstrip()
        for row in table
    ]


def _cut(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


def _narrow(results: Sequence[Result]) -> list[str]:
    indent = "  "
    per_case = [_rows(r, wide=False) for r in results]
    every = [row for rows in per_case for row in rows if row["label"] != "ERROR"]
    keys: tuple[str, ...] = _NARROW
    if max(len(line) for line in _align(every, keys)) + len(indent) > WIDTH:
        keys = tuple(k for k in keys if k != "throughput")  # "% of limit" says it relatively
    heading, *lines = _align(every, keys)
    aligned = iter(lines)
    out = [_cut(indent + heading, WIDTH)]
    for result, rows in zip(results, per_case, strict=True):
        unit = f"  (throughput in {result.unit})" if "throughput" in keys and result.unit else ""
        out.append(_cut(result.name + ("" if result.error else unit), WIDTH))
        if result.error:
            out.append(_cut(f"{indent}ERROR: {rows[0]['ratio']}", WIDTH))
            continue
        out += [_cut(indent + next(aligned), WIDTH) for _ in rows]
        for note in _notes(result, wide=False):
            out += textwrap.wrap(note, WIDTH, initial_indent=indent, subsequent_indent=indent * 3)
    return out


def _wide(results: Sequence[Result]) -> list[str]:
    rows = []
    for result in results:
        for i, row in enumerate(_rows(result, wide=True)):
            rows.append({**row, "case": result.name if i == 0 else ""})
    notes = [f"{r.name}: {note}" for r in results for note in _notes(r, wide=True)]
    return [*_align(rows, _WIDE, rule=True), *notes]


def format_table(
    results: Sequence[Result], header: Sequence[str] = (), *, wide: bool = False
) -> str:
    """The table of ``results`` under the ``header`` lines, 80 columns wide unless ``wide``.

    For a peer the ``fastreg`` column is fastreg's speed-up (peer time / fastreg time); for the
    limit it is fastreg time / limit time; on fastreg's own line it is ``% of limit`` (limit time
    / fastreg time, which cannot honestly exceed 100%)."""
    if wide:
        return "\n".join([*header, "", *_wide(results), "", _summary(results)])
    top = [wrapped for line in header for wrapped in textwrap.wrap(line, WIDTH)]
    summary = textwrap.wrap(_summary(results), WIDTH, subsequent_indent="  ")
    return "\n".join([*top, "", *_narrow(results), "", *summary])
