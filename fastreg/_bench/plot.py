"""``python -m fastreg bench --plot out.png``: the benchmark results as a picture.

Left: fastreg's speed-up over each peer per case (peer time / fastreg time, log scale; right
of 1 is faster), with the project's speed goals marked. Right: fastreg's % of the machine's limit
per case (limit time / fastreg time; 100% means as fast as copying the same bytes or the bare GEMM).
Drawn from the runner's JSON report (the one ``--json`` writes), so a saved run can be drawn
again with :func:`plot_results`. A case that ran beyond the machine limit (a measurement problem,
see ``table.py``) is labelled ``(!)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOT_HINT = 'bench --plot needs matplotlib: pip install "fastreg-kernels[plot]"'

#: One colour per peer label, so a peer keeps its colour across cases.
_PEER_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink")


def plot_results(report: dict[str, Any], path: str | Path) -> Path:
    """Draw the runner's JSON ``report`` (``to_json``) to the PNG ``path``; returns the path.

    Cases that failed are listed as such; peers that were missing or failed have no bar.

    Raises
    ------
    ImportError: matplotlib is missing (the message says how to install it).
    ValueError: the report holds no result.
    """
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(PLOT_HINT) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report.get("results") or []
    if not results:
        raise ValueError("the benchmark report holds no result to draw")
    names = [
        r["name"] + (" (ERROR)" if r.get("error") else " (!)" if r.get("beyond_limit") else "")
        for r in results
    ]
    peers: list[str] = []
    for r in results:
        for peer in r.get("speedups", {}):
            if peer not in peers:
                peers.append(peer)
    height = max(3.0, 0.42 * len(results) * max(1, len(peers)) ** 0.5 + 1.6)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(14, height), sharey=True, gridspec_kw={"width_ratios": (3, 2)}
    )
    rows = range(len(results))
    bar = 0.8 / max(1, len(peers))
    for j, peer in enumerate(peers):
        color = _PEER_COLORS[j % len(_PEER_COLORS)]
        ys, xs = [], []
        for i, r in enumerate(results):
            if peer in r.get("speedups", {}):
                ys.append(i - 0.4 + bar * (j + 0.5))
                xs.append(r["speedups"][peer])
        # Bars grow from 1x (parity): right when fastreg is faster, left when it is slower.
        widths = [x - 1.0 for x in xs]
        left.barh(ys, widths, left=1.0, height=bar * 0.9, color=color, label=f"vs {peer}")
        for y, x in zip(ys, xs, strict=True):
            left.annotate(
                f"{x:.2g}x",
                (x, y),
                xytext=(3 if x >= 1.0 else -3, 0),
                textcoords="offset points",
                ha="left" if x >= 1.0 else "right",
                va="center",
                fontsize=7,
            )
        for i, r in enumerate(results):
            for goal in r.get("goals", []):
                if goal["key"] == peer and goal["kind"] == "speedup":
                    y = i - 0.4 + bar * (j + 0.5)
                    met = goal["status"] == "met"
                    left.plot(
                        [goal["target"]] * 2,
                        [y - bar / 2, y + bar / 2],
                        color="green" if met else "red",
                        linewidth=2,
                    )
    left.axvline(1.0, color="black", linewidth=0.8)
    left.set_xscale("log")
    ratios = [x for r in results for x in r.get("speedups", {}).values()] or [1.0]
    targets = [g["target"] for r in results for g in r.get("goals", []) if g["kind"] == "speedup"]
    left.set_xlim(min([0.5, *ratios]) * 0.8, max([2.0, *ratios, *targets]) * 1.6)
    left.set_xlabel("fastreg speed-up (peer time / fastreg time; >1 is faster)")
    left.set_title("Speed-up vs peers (ticks: goals, green met / red missed)", fontsize=10)
    if peers:
        left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=len(peers))
    left.grid(True, axis="x", which="both", alpha=0.3)

    percents = [r.get("percent_of_limit") for r in results]
    for i, (r, value) in enumerate(zip(results, percents, strict=True)):
        if value is None:
            right.annotate("n/a", (1, i), va="center", fontsize=8, color="grey")
            continue
        right.barh(i, value, height=0.6, color="tab:cyan")
        right.annotate(
            f"{value:.0f}% of {r['limit']}",
            (value, i),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )
        for goal in r.get("goals", []):
            if goal["kind"] == "limit" and goal["target"] > 0:
                floor = 100.0 / goal["target"]
                color = "green" if goal["status"] == "met" else "red"
                right.plot([floor, floor], [i - 0.35, i + 0.35], color=color, linewidth=2)
    top = max([p for p in percents if p is not None] + [100.0])
    right.set_xlim(0, top * 1.3)
    right.axvline(100.0, color="black", linewidth=0.8)
    right.set_xlabel(
        "limit time / fastreg time, %\n(limit: a copy of the same bytes, or the bare GEMM)"
    )
    right.set_title("% of the machine limit (ticks: goals)", fontsize=10)
    right.grid(True, axis="x", alpha=0.3)
    left.set_yticks(list(rows), names, fontsize=8)
    left.invert_yaxis()
    machine = report.get("machine", {})
    fig.suptitle(
        f"fastreg bench, backend {report.get('backend', '?')}: "
        f"{machine.get('cpu_model', '?')}, {machine.get('cpus_usable', '?')} CPUs "
        "(medians, ratios taken in the same run)",
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
