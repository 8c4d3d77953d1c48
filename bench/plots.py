"""PNG plots of a report (matplotlib, from the optional ``bench`` extra)."""

from __future__ import annotations

from pathlib import Path

from bench._harness import Report


def draw(report: Report, directory: Path) -> list[Path]:
    """Draw what the report has samples for; no plots (and a note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing (pip install -e '.[bench]'): no plots drawn")
        return []
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    series = {
        "delegation.png": (
            "Foreground delegation latency (sequential runs)",
            {k: report.samples.get(f"delegation_{k}", []) for k in ("agentrun", "baseline")},
        ),
        "streaming.png": (
            "Event to client latency (~100 words/s requested)",
            {"agentrun": report.samples.get("streaming_latency", [])},
        ),
    }
    for name, (title, groups) in series.items():
        groups = {label: values for label, values in groups.items() if values}
        if not groups:
            continue
        figure, axes = plt.subplots(figsize=(7, 4))
        for label, values in groups.items():
            ordered = sorted(v * 1000 for v in values)
            axes.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)
        axes.set(title=title, xlabel="ms", ylabel="fraction of runs at or below")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(directory / name, dpi=100)
        plt.close(figure)
        written.append(directory / name)
    written += _bars(report, directory)
    return written


def _bars(report: Report, directory: Path) -> list[Path]:
    """Throughput, stop and memory figures as bar charts, one panel each."""
    import matplotlib.pyplot as pyplot

    panels = [
        ("throughput", "deleg/s", "Background delegations per second"),
        ("stop", "s", "Stop to all closed (p50, max, walk)"),
        ("memory", "MB", "Worker RSS"),
    ]
    panels = [
        p for p in panels if any(f.scenario == p[0] and f.unit == p[1] for f in report.figures)
    ]
    if not panels:
        return []
    figure, axes_list = pyplot.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)))
    axes_seq = axes_list if len(panels) > 1 else [axes_list]
    for axes, (scenario, unit, title) in zip(axes_seq, panels, strict=True):
        figures = [f for f in report.figures if f.scenario == scenario and f.unit == unit]
        axes.barh([f.name for f in figures], [f.value for f in figures])
        axes.set(title=title, xlabel=unit)
        axes.invert_yaxis()
    figure.tight_layout()
    path = directory / "summary.png"
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return [path]
