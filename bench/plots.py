"""PNG plots of a report (matplotlib, from the optional ``bench`` extra)."""

from __future__ import annotations

from pathlib import Path

from bench._harness import Report, percentile


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
            "Event to client latency at ~100 events/s, by stream batch interval",
            {
                key.removeprefix("streaming_latency_"): values
                for key, values in report.samples.items()
                if key.startswith("streaming_latency_")
            },
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
    written += _curves(report, directory)
    return written


def _curves(report: Report, directory: Path) -> list[Path]:
    """Stop time against tree size, and event latency against events per second."""
    import matplotlib.pyplot as pyplot

    plots = {
        "stop.png": (
            "Stop to all closed, by tree size (p50)",
            "runs in the tree",
            "s",
            {"agentrun": "stop_", "baseline (plain Temporal)": "stop_baseline_"},
            1.0,
        ),
        "streaming_rate.png": (
            "Event to client latency, by event rate (default batch)",
            "events per second",
            "ms",
            {"agentrun": "streaming_rate_"},
            1000.0,
        ),
    }
    written = []
    for name, (title, xlabel, unit, series, scale) in plots.items():
        figure, axes = pyplot.subplots(figsize=(7, 4))
        drawn = False
        for label, prefix in series.items():
            points = sorted(
                (float(key.removeprefix(prefix)), values)
                for key, values in report.samples.items()
                if key.startswith(prefix) and key.removeprefix(prefix).isdigit() and values
            )
            for pct in (50, 95) if unit == "ms" else (50,):
                ys = [percentile(values, pct) * scale for _, values in points]
                if ys:
                    axes.plot([x for x, _ in points], ys, marker="o", label=f"{label} p{pct}")
                    drawn = True
        if drawn:
            axes.set(title=title, xlabel=xlabel, ylabel=unit)
            axes.grid(alpha=0.3)
            axes.legend()
            figure.tight_layout()
            figure.savefig(directory / name, dpi=100)
            written.append(directory / name)
        pyplot.close(figure)
    return written


def _bars(report: Report, directory: Path) -> list[Path]:
    """Throughput and memory figures as bar charts, one panel each."""
    import matplotlib.pyplot as pyplot

    panels = [
        ("throughput", "deleg/s", "Background delegations per second"),
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
