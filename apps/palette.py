"""One colour and one label per emotion, used by every chart and face box of the dashboard.

Altair's default colour scheme assigns colours in the order emotions first appear in each chart's
data, so "sad" could be blue in the timeline and orange in the bars beside it; and an axis too short
for its labels silently drops every second one. Here each canonical emotion has a fixed colour, every
chart uses :func:`scale` (the same domain and range wherever an emotion appears), and bar charts get
enough height per bar for all their labels (:func:`bars`: a height step per bar, which Streamlit's
container fitting cannot shrink).
"""

from __future__ import annotations

from collections.abc import Sequence

from emotion_keras.labels import CANONICAL

COLORS = {
    "angry": "#d62828",
    "disgust": "#6a994e",
    "fear": "#7b2cbf",
    "happy": "#f4a300",
    "sad": "#1d70b8",
    "surprise": "#f77f00",
    "neutral": "#8d99ae",
    "contempt": "#9c6644",
    "calm": "#2a9d8f",
    "boredom": "#b5838d",
}
OTHER = "#444444"
ROW_PX = 24  # bar height per emotion: enough for every label at the default font size
assert set(COLORS) == set(CANONICAL)


def label(emotion: str) -> str:
    """The one way an emotion is written in the app (its canonical name)."""
    return str(emotion)


def ordered(emotions: Sequence[str]) -> list[str]:
    """Emotions in canonical order (unknown names last, as given)."""
    emotions = list(dict.fromkeys(emotions))
    known = [e for e in CANONICAL if e in emotions]
    return known + [e for e in emotions if e not in CANONICAL]


def color(emotion: str) -> str:
    return COLORS.get(emotion, OTHER)


def rgb(emotion: str) -> tuple[int, int, int]:
    """The emotion's colour as an (r, g, b) tuple, for boxes drawn with PIL."""
    h = color(emotion).lstrip("#")
    return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))


def scale(emotions: Sequence[str] | None = None):
    """The Altair colour scale: every canonical emotion (plus ``emotions``) at its fixed colour."""
    import altair as alt

    domain = ordered([*CANONICAL, *(emotions or [])])
    return alt.Scale(domain=domain, range=[color(e) for e in domain])


def encoding(emotions: Sequence[str], legend: bool = True):
    """``color=`` for a chart whose ``emotion`` field holds these emotions; the legend lists only them."""
    import altair as alt

    shown = ordered(emotions)
    return alt.Color("emotion:N", scale=scale(shown), title="emotion",
                     legend=alt.Legend(values=shown) if legend else None)


def bars(df, emotions: Sequence[str], top: str | None = None, row: str | None = None,
         row_sort: Sequence[str] | None = None):
    """Horizontal probability bars, one per emotion, every bar labelled and coloured by its emotion;
    ``top`` (the predicted emotion) drawn opaque, the others lighter; ``row`` facets (modalities)."""
    import altair as alt

    order = ordered(emotions)
    enc = dict(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), title="probability"),
        y=alt.Y("emotion:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=0)),
        color=encoding(order, legend=False),
        tooltip=["emotion", alt.Tooltip("probability:Q", format=".3f")])
    if top is not None:
        enc["opacity"] = alt.condition(alt.datum.emotion == top, alt.value(1.0), alt.value(0.55))
    if row is not None:
        enc["row"] = alt.Row(f"{row}:N", sort=list(row_sort or []), title=None)
    # the height as a step per bar: Streamlit refits a fixed height to its container, squeezing bars
    return alt.Chart(df).mark_bar().encode(**enc).properties(height=alt.Step(ROW_PX))
