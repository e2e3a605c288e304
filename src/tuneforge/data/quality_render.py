"""Write a quality report (:mod:`tuneforge.data.quality`) as ``report.json``, ``report.md`` and PNG histograms."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tuneforge.errors import MissingDependencyError
from tuneforge.storage.files import atomic_write_text

SHOWN = 10  # records listed per issue in the Markdown (the JSON lists them all)


def render_markdown(report: dict[str, Any], *, title: str = "data quality report") -> str:
    """The report as Markdown: summary, issues with their first records, then each section's figures."""
    summary, tokens = report["summary"], report["tokens"]
    lines = [f"# {title}", "", f"**score: {report['score']} / 100** · {summary['records']} records · "
             f"format `{summary['format']}` · tokens: {summary['tokenizer']}", "", "## Issues", ""]
    if not report["issues"]:
        lines.append("none found")
    for issue in report["issues"]:
        shown = ", ".join(map(str, issue["records"][:SHOWN])) + (" ..." if len(issue["records"]) > SHOWN else "")
        lines.append(f"- **{issue['severity']}** {issue['message']}: records {shown}")
    lines += ["", "## Tokens", "", "| total | min | p50 | mean | p95 | max | over max_seq_length |",
              "|---|---|---|---|---|---|---|",
              f"| {tokens['total']} | {tokens['min']} | {tokens['p50']} | {tokens['mean']} | {tokens['p95']} | "
              f"{tokens['max']} | {tokens['over_max_seq_length']['count']} (> {tokens['max_seq_length']}) |"]
    lines += _counts("Roles", report["fields"]["roles"]) + _counts("Turns per record", report["fields"]["turns"])
    lines += _counts("Labels", (report["labels"] or {}).get("counts", {}))
    languages = report["languages"]
    scope = f"{languages['detected']} records" + (" (seeded sample)" if languages["sampled"] else "")
    lines += _counts(f"Languages ({scope})", languages["counts"])
    dup = report["duplicates"]
    lines += ["", "## Duplicates", "", f"- exact: {len(dup['exact_clusters'])} clusters, "
              f"{dup['exact_removable']} records removable",
              f"- near (Jaccard >= {dup['threshold']}): {len(dup['near_clusters'])} clusters, "
              f"{dup['near_removable']} records removable"]
    if report["leakage"] is not None:
        lines += ["", "## Leakage", "", f"{report['leakage']['records']} records also occur in the other version"]
    lines += _counts("Personal data", report["personal_data"]["counts"])
    lines += ["", f"Person names: {report['personal_data']['names']}.", ""]
    return "\n".join(lines)


def _counts(title: str, counts: dict[str, int]) -> list[str]:
    if not counts:
        return []
    return ["", f"## {title}", "", "| value | count |", "|---|---|", *(f"| {k} | {v} |" for k, v in counts.items())]


def write_report(report: dict[str, Any], folder: str | Path, *, title: str = "data quality report") -> list[Path]:
    """Write ``report.json``, ``report.md``, ``tokens.png`` and (for conversations) ``turns.png`` to ``folder``.

    Each file is written to a temporary name and renamed. Returns the paths written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "report.json", json.dumps(report, indent=1, ensure_ascii=False))
    atomic_write_text(folder / "report.md", render_markdown(report, title=title))
    written = [folder / "report.json", folder / "report.md"]
    histogram = report["tokens"]["histogram"]
    written.append(_bar_png(folder / "tokens.png", histogram["edges"][:-1], histogram["counts"],
                            xlabel=f"tokens per record ({report['summary']['tokenizer']})",
                            width=histogram["edges"][1] - histogram["edges"][0]))
    turns = report["fields"]["turns"]
    if turns:
        written.append(_bar_png(folder / "turns.png", [int(k) for k in turns], list(turns.values()),
                                xlabel="messages per record", width=0.8))
    return written


def _bar_png(path: Path, xs: list[float], heights: list[int], *, xlabel: str, width: float) -> Path:
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("matplotlib", extra="data", purpose="the report's histograms") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.bar(xs, heights, width=width or 1, align="edge" if width != 0.8 else "center", color="#4472c4")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("records")
    figure.tight_layout()
    fd, staged = tempfile.mkstemp(prefix=".plot-", suffix=".png", dir=path.parent)
    os.close(fd)
    figure.savefig(staged, dpi=100)
    plt.close(figure)
    os.replace(staged, path)
    return path

