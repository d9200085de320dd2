"""Small inline SVG charts: axes with round ticks, lines, points, bars, boxes, a Wright map.

Written out by hand rather than by a plotting library so that the page
stays small (coordinates to a tenth of a pixel, text as text), opens with
nothing to fetch, and renders a 20,000-item bank in well under a second.
Colours come from ``COLOURS``; every chart carries a ``<title>`` for
screen readers and a legend drawn above the plot.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np

COLOURS = {"blue": "#2a62a8", "orange": "#d1772a", "red": "#c0392b", "green": "#3b8a3e", "grey": "#8a8a8a",
           "purple": "#7b4fa0", "light": "#d6e2f0"}
_LEFT, _RIGHT, _TOP, _BOTTOM = 54, 14, 24, 40


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def tick_label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    text = f"{value:.4g}"
    return text.replace("-", "\u2212")


def _f(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


@dataclass
class Chart:
    """One plot in data coordinates; ``render()`` gives the ``<svg>`` element."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    x_label: str = ""
    y_label: str = ""
    description: str = ""
    width: int = 460
    height: int = 270
    x_ticks: list[tuple[float, str]] | None = None
    _marks: list[str] = field(default_factory=list)
    _legend: list[tuple[str, str, str]] = field(default_factory=list)

    def x(self, value) -> np.ndarray:
        low, high = self.x_range
        return _LEFT + (np.asarray(value, float) - low) / (high - low) * (self.width - _LEFT - _RIGHT)

    def y(self, value) -> np.ndarray:
        low, high = self.y_range
        return self.height - _BOTTOM - (np.asarray(value, float) - low) / (high - low) * (
            self.height - _TOP - _BOTTOM)

    def _legend_entry(self, label: str | None, colour: str, kind: str) -> None:
        if label:
            self._legend.append((label, colour, kind))

    def line(self, xs, ys, colour: str = COLOURS["blue"], width: float = 1.8, dash: str | None = None,
             label: str | None = None) -> "Chart":
        """A polyline through the finite points (a gap where a value is not finite)."""
        px, py = self.x(xs), self.y(ys)
        finite = np.isfinite(px) & np.isfinite(py)
        runs = np.split(np.arange(px.size), np.flatnonzero(np.diff(finite.astype(int)) != 0) + 1)
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        for run in runs:
            if run.size and finite[run[0]]:
                points = " ".join(f"{_f(px[i])},{_f(py[i])}" for i in run)
                self._marks.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                                   f'stroke-width="{width}"{dashes}/>')
        self._legend_entry(label, colour, "dash" if dash else "line")
        return self

    def points(self, xs, ys, colour: str = COLOURS["blue"], radius: float = 3.0, label: str | None = None,
               cross: bool = False, titles: list[str] | None = None, sizes=None) -> "Chart":
        """Markers (circles, or crosses), each with an optional hover title; ``sizes`` scales their area."""
        px, py = self.x(xs), self.y(ys)
        scale = np.ones(px.size) if sizes is None else np.sqrt(np.asarray(sizes, float) / max(np.max(sizes), 1e-12))
        for i in np.flatnonzero(np.isfinite(px) & np.isfinite(py)):
            r = max(radius * scale[i], 1.2)
            tip = f"<title>{_e(titles[i])}</title>" if titles else ""
            if cross:
                d = f"M{_f(px[i] - r)},{_f(py[i] - r)}l{_f(2 * r)},{_f(2 * r)}m0,{_f(-2 * r)}l{_f(-2 * r)},{_f(2 * r)}"
                self._marks.append(f'<path d="{d}" stroke="{colour}" stroke-width="2">{tip}</path>')
            else:
                self._marks.append(f'<circle cx="{_f(px[i])}" cy="{_f(py[i])}" r="{_f(r)}" fill="{colour}" '
                                   f'fill-opacity="0.75">{tip}</circle>')
        self._legend_entry(label, colour, "cross" if cross else "dot")
        return self

    def bars(self, edges, counts, colour: str = COLOURS["blue"], label: str | None = None) -> "Chart":
        """A histogram: one bar per bin between consecutive ``edges``."""
        edges, counts = np.asarray(edges, float), np.asarray(counts, float)
        left, right, top, base = self.x(edges[:-1]), self.x(edges[1:]), self.y(counts), self.y(0.0)
        for i in np.flatnonzero(counts > 0):
            self._marks.append(f'<rect x="{_f(left[i])}" y="{_f(top[i])}" width="{_f(max(right[i] - left[i] - 1, 1))}" '
                               f'height="{_f(base - top[i])}" fill="{colour}"/>')
        self._legend_entry(label, colour, "bar")
        return self

    def rule(self, x: float | None = None, y: float | None = None, colour: str = COLOURS["grey"],
             dash: str = "4,3", label: str | None = None) -> "Chart":
        """A vertical or horizontal reference line across the plot."""
        if y is not None:
            py = _f(self.y(y))
            self._marks.append(f'<line x1="{_LEFT}" x2="{self.width - _RIGHT}" y1="{py}" y2="{py}" '
                               f'stroke="{colour}" stroke-dasharray="{dash}"/>')
        if x is not None:
            px = _f(self.x(x))
            self._marks.append(f'<line x1="{px}" x2="{px}" y1="{_TOP}" y2="{self.height - _BOTTOM}" '
                               f'stroke="{colour}" stroke-dasharray="{dash}"/>')
        self._legend_entry(label, colour, "dash")
        return self

    def box(self, x: float, whiskers: tuple[float, float], quartiles: tuple[float, float], median: float,
            colour: str = COLOURS["blue"], half_width: float = 0.3, title: str = "") -> "Chart":
        """A box plot at ``x``: whiskers, the box between the quartiles, the median as a bar."""
        left, mid, right = (_f(v) for v in self.x([x - half_width, x, x + half_width]))
        low, high = (_f(v) for v in self.y(list(whiskers)))
        q1, q3, med = (_f(v) for v in self.y([quartiles[0], quartiles[1], median]))
        tip = f"<title>{_e(title)}</title>" if title else ""
        self._marks.append(
            f'<g>{tip}<line x1="{mid}" x2="{mid}" y1="{low}" y2="{high}" stroke="{colour}"/>'
            f'<rect x="{left}" y="{q3}" width="{_f(float(right) - float(left))}" height="{_f(float(q1) - float(q3))}" '
            f'fill="{COLOURS["light"]}" stroke="{colour}"/>'
            f'<line x1="{left}" x2="{right}" y1="{med}" y2="{med}" stroke="{colour}" stroke-width="2.5"/></g>')
        return self

    def render(self) -> str:
        w, h = self.width, self.height
        bottom, right = h - _BOTTOM, w - _RIGHT
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
                 f'role="img" font-size="11" font-family="system-ui, sans-serif">',
                 f"<title>{_e(self.description or self.y_label)}</title>"]
        x_ticks = self.x_ticks if self.x_ticks is not None else [(t, tick_label(t)) for t in nice_ticks(*self.x_range)]
        for value, text in x_ticks:
            px = _f(self.x(value))
            parts.append(f'<line x1="{px}" x2="{px}" y1="{_TOP}" y2="{bottom}" stroke="#eee"/>'
                         f'<text x="{px}" y="{bottom + 14}" text-anchor="middle">{_e(text)}</text>')
        for value in nice_ticks(*self.y_range):
            py = _f(self.y(value))
            parts.append(f'<line x1="{_LEFT}" x2="{right}" y1="{py}" y2="{py}" stroke="#eee"/>'
                         f'<text x="{_LEFT - 5}" y="{py}" dy="3.5" text-anchor="end">{tick_label(value)}</text>')
        parts.append(f'<rect x="{_LEFT}" y="{_TOP}" width="{right - _LEFT}" height="{bottom - _TOP}" '
                     'fill="none" stroke="#999"/>')
        parts.append(f'<svg x="{_LEFT}" y="{_TOP}" width="{right - _LEFT}" height="{bottom - _TOP}" '
                     f'viewBox="{_LEFT} {_TOP} {right - _LEFT} {bottom - _TOP}" overflow="hidden">')
        parts.extend(self._marks)
        parts.append("</svg>")
        parts.append(f'<text x="{(_LEFT + right) / 2:.0f}" y="{h - 6}" text-anchor="middle">{_e(self.x_label)}</text>')
        parts.append(f'<text transform="translate(13 {(_TOP + bottom) / 2:.0f}) rotate(-90)" '
                     f'text-anchor="middle">{_e(self.y_label)}</text>')
        parts.append(self._render_legend())
        parts.append("</svg>")
        return "".join(parts)

    def _render_legend(self) -> str:
        out, x = [], float(_LEFT)
        for label, colour, kind in self._legend:
            y = _TOP - 9
            if kind in ("line", "dash"):
                dash = ' stroke-dasharray="4,3"' if kind == "dash" else ""
                out.append(f'<line x1="{_f(x)}" x2="{_f(x + 16)}" y1="{y}" y2="{y}" stroke="{colour}" '
                           f'stroke-width="2"{dash}/>')
            elif kind == "cross":
                out.append(f'<path d="M{_f(x + 4)},{y - 4}l8,8m0,-8l-8,8" stroke="{colour}" stroke-width="2"/>')
            else:
                out.append(f'<rect x="{_f(x + 3)}" y="{y - 5}" width="10" height="10" fill="{colour}"/>')
            out.append(f'<text x="{_f(x + 20)}" y="{y}" dy="3.5">{_e(label)}</text>')
            x += 28 + 6.2 * len(label)
        return "".join(out)


def wright_map(edges: np.ndarray, students: np.ndarray, items: np.ndarray, description: str,
               width: int = 460, height: int = 380) -> str:
    """Students (left) and item difficulties (right) on one vertical theta axis, each side scaled to its largest bin."""
    top, bottom, middle = 28, height - 16, width / 2
    low, high = float(edges[0]), float(edges[-1])

    def y(value):
        return bottom - (np.asarray(value, float) - low) / (high - low) * (bottom - top)

    reach = middle - 50
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" font-size="11" font-family="system-ui, sans-serif">'
             f"<title>{_e(description)}</title>",
             f'<text x="{_f(middle - 30)}" y="14" text-anchor="end">students ({int(students.sum()):,})</text>'
             f'<text x="{_f(middle + 30)}" y="14">item difficulties b ({int(items.sum()):,})</text>']
    for counts, side, colour in ((students, -1, COLOURS["blue"]), (items, 1, COLOURS["orange"])):
        scale = reach / max(float(counts.max()), 1.0)
        for k in np.flatnonzero(counts > 0):
            y1, y0 = y(edges[k + 1]), y(edges[k])
            length = max(counts[k] * scale, 1.0)
            x = middle + 30 if side > 0 else middle - 6 - length
            parts.append(f'<rect x="{_f(x)}" y="{_f(y1 + 0.5)}" width="{_f(length)}" height="{_f(y0 - y1 - 1)}" '
                         f'fill="{colour}"><title>{int(counts[k]):,} between {tick_label(edges[k])} and '
                         f'{tick_label(edges[k + 1])}</title></rect>')
    for value in nice_ticks(low, high, 8):
        py = _f(y(value))
        parts.append(f'<line x1="{_f(middle - 4)}" x2="{_f(middle + 4)}" y1="{py}" y2="{py}" stroke="#555"/>'
                     f'<text x="{_f(middle + 7)}" y="{py}" dy="3.5" fill="#555">{tick_label(value)}</text>')
    parts.append(f'<line x1="{_f(middle)}" x2="{_f(middle)}" y1="{top}" y2="{bottom}" stroke="#555"/></svg>')
    return "".join(parts)
