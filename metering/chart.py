"""A server-side SVG bar chart of an instance's hourly usage (admin; no JavaScript, no CDN).

One bar per UTC hour, coloured by the record's state, a tooltip (`<title>`) per bar, a scale
on the left and a tick per day. The markup is built with `format_html`, so every value that
reaches it is escaped.
"""

from datetime import datetime
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .models import RecordState
from .selectors import ChartHour

WIDTH, HEIGHT = 1000, 240
LEFT, RIGHT, TOP, BOTTOM = 70, 10, 12, 34
COLOURS = {
    RecordState.OPEN: "#5b8def",
    RecordState.PENDING: "#e0a800",
    RecordState.PUSHED: "#f0c36d",
    RecordState.ACCEPTED: "#2e9d57",
    RecordState.FAILED: "#d64541",
    RecordState.DROPPED: "#9a9a9a",
}


def _number(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.0001")).normalize(), "f")


def _hour(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:00Z")


def usage_chart(hours: list[ChartHour]) -> SafeString:
    """The SVG for `hours` (oldest first, one per hour, e.g. selectors.hourly_usage)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    peak = max((h.value for h in hours), default=Decimal(0))
    slot = plot_w / max(len(hours), 1)
    bars = []
    for index, hour in enumerate(hours):
        if hour.value <= 0 or peak <= 0:
            continue
        height = max(float(hour.value / peak) * plot_h, 1.0)
        state = RecordState(hour.state)
        bars.append(
            (
                f"{LEFT + index * slot:.2f}",
                f"{TOP + plot_h - height:.2f}",
                f"{max(slot - 0.3, 0.5):.2f}",
                f"{height:.2f}",
                COLOURS[state],
                f"{_hour(hour.hour_start)}: {_number(hour.value)}, {state.label}",
            )
        )
    ticks = []
    for index, hour in enumerate(hours):
        if hour.hour_start.hour == 0:
            x = f"{LEFT + index * slot:.2f}"
            label = hour.hour_start.strftime("%m-%d") if hour.hour_start.day % 5 == 0 else ""
            ticks.append((x, TOP + plot_h, x, TOP + plot_h + 4, x, label))
    legend = [
        (LEFT + n * 160, colour, state.label.split(" (")[0])
        for n, (state, colour) in enumerate(COLOURS.items())
    ]
    total = sum((h.value for h in hours), Decimal(0))
    first = _hour(hours[0].hour_start) if hours else "-"
    last = _hour(hours[-1].hour_start) if hours else "-"
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h_all}" width="100%" '
        'role="img" aria-label="{aria}" style="max-width:{w}px;font:11px sans-serif">'
        "<title>{aria}</title>"
        '<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ddd"/>'
        '<text x="{lx}" y="{ty}" text-anchor="end">{peak}</text>'
        '<text x="{lx}" y="{by}" text-anchor="end">0</text>'
        "{bars}{ticks}{legend}</svg>",
        w=WIDTH,
        h_all=HEIGHT + 16,
        aria=f"hourly usage {first} to {last}: total {_number(total)}",
        left=LEFT,
        top=TOP,
        pw=plot_w,
        ph=plot_h,
        lx=LEFT - 6,
        ty=TOP + 10,
        by=TOP + plot_h,
        peak=_number(peak),
        bars=format_html_join(
            "",
            '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
            bars,
        ),
        ticks=format_html_join(
            "",
            '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999"/>'
            '<text x="{}" y="' + str(TOP + plot_h + 16) + '" text-anchor="middle">{}</text>',
            ticks,
        ),
        legend=format_html_join(
            "",
            '<rect x="{0}" y="' + str(HEIGHT) + '" width="10" height="10" fill="{1}"/>'
            '<text x="{0}" dx="14" y="' + str(HEIGHT + 9) + '">{2}</text>',
            legend,
        ),
    )
