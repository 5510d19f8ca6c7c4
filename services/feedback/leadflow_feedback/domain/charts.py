"""Small inline SVG charts for the review page: bars against a target line, and curves over a
threshold axis. Pure functions of plain numbers; every label is escaped."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 380, 170
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 12, 28
COLOURS = ("#2f6db5", "#d9822b", "#3c9a5f", "#8a4fb3")


def _num(value: float) -> str:
    return f"{value:.1f}"


def bars(
    points: Sequence[tuple[str, float | None]],
    *,
    line: float | None = None,
    line_label: str = "",
    label: str,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
) -> Markup:
    """One bar per point (None: no bar, shown as '–'), and a dashed line at `line` (a plan or
    an SLA limit). Bars over the line are drawn in the warning colour."""
    values = [v for _, v in points if v is not None]
    top = max([*values, line or 0, 1e-9]) * 1.15
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(points), 1)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" '
        'stroke="#999"/>',
    ]
    for index, (name, value) in enumerate(points):
        x = LEFT + index * slot + slot * 0.15
        w = slot * 0.7
        if value is not None:
            over = line is not None and value > line
            colour = "#c0392b" if over and line_label.startswith("SLA") else COLOURS[0]
            parts.append(
                f'<rect x="{_num(x)}" y="{_num(y(value))}" width="{_num(w)}" '
                f'height="{_num(TOP + plot_h - y(value))}" fill="{colour}">'
                f"<title>{escape(name)}: {escape(fmt(value))}</title></rect>"
            )
        shown = fmt(value) if value is not None else "–"
        text_y = y(value) - 3 if value is not None else TOP + plot_h - 3
        parts.append(
            f'<text x="{_num(x + w / 2)}" y="{_num(text_y)}" text-anchor="middle" '
            f'font-size="10">{escape(shown)}</text>'
        )
        parts.append(
            f'<text x="{_num(x + w / 2)}" y="{HEIGHT - 10}" text-anchor="middle" '
            f'font-size="10" fill="#555">{escape(name)}</text>'
        )
    if line is not None:
        parts.append(
            f'<line x1="{LEFT}" y1="{_num(y(line))}" x2="{WIDTH - RIGHT}" y2="{_num(y(line))}" '
            'stroke="#c0392b" stroke-dasharray="5 3"/>'
        )
        parts.append(
            f'<text x="{LEFT - 4}" y="{_num(y(line) + 3)}" text-anchor="end" font-size="10" '
            f'fill="#c0392b">{escape(line_label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def curves(
    series: dict[str, Sequence[tuple[float, float | None]]],
    *,
    x_max: float,
    label: str,
    markers: Sequence[tuple[float, str]] = (),
) -> Markup:
    """Lines of 0–1 values over 0..x_max (e.g. precision and recall per MQL threshold), with
    vertical markers (e.g. today's threshold and the recommended one)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(v: float) -> float:
        return LEFT + plot_w * (v / x_max if x_max else 0)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v)

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" '
        'stroke="#999"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#999"/>',
    ]
    for tick in (0.0, 0.5, 1.0):
        parts.append(
            f'<text x="{LEFT - 4}" y="{_num(y(tick) + 3)}" text-anchor="end" '
            f'font-size="10" fill="#555">{tick:g}</text>'
        )
    for tick in range(0, int(x_max) + 1, max(int(x_max) // 5, 1)):
        parts.append(
            f'<text x="{_num(x(tick))}" y="{HEIGHT - 10}" text-anchor="middle" '
            f'font-size="10" fill="#555">{tick}</text>'
        )
    for position, (value, name) in enumerate(markers):
        parts.append(
            f'<line x1="{_num(x(value))}" y1="{TOP}" x2="{_num(x(value))}" y2="{TOP + plot_h}" '
            f'stroke="#777" stroke-dasharray="3 3"><title>{escape(name)}</title></line>'
        )
        parts.append(
            f'<text x="{_num(x(value) + 3)}" y="{TOP + 10 + 11 * position}" font-size="10" '
            f'fill="#555">{escape(name)}</text>'
        )
    height = HEIGHT + 16  # a legend row under the axis
    parts[0] = parts[0].replace(f'0 0 {WIDTH} {HEIGHT}"', f'0 0 {WIDTH} {height}"').replace(
        f'height="{HEIGHT}"', f'height="{height}"'
    )
    for index, (name, points) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        path = " ".join(
            f"{_num(x(px))},{_num(y(py))}" for px, py in points if py is not None
        )
        if path:
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2">'
                f"<title>{escape(name)}</title></polyline>"
            )
        lx = LEFT + 90 * index
        parts.append(
            f'<rect x="{lx}" y="{height - 7}" width="10" height="3" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="{height - 3}" font-size="10">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
