"""The shared base of the widgets: an ipywidgets box that also renders a static figure of its state.

Live (a kernel and JupyterLab/Colab), the frontend shows the interactive widget. Outside a live
kernel (GitHub, nbconvert HTML without widget state, a text console) the same display carries an
`image/png` and a `text/html` copy of the current figure and tables, so a reader sees the state the
notebook left, never a blank or "Error displaying widget".
"""
from __future__ import annotations

import base64
import html
import io
from typing import Any

import ipywidgets as w

from ..core import DsilabError


def figure_png(fig: Any, dpi: int = 90) -> bytes:
    """PNG bytes of a matplotlib Figure (built with `matplotlib.figure.Figure`: no pyplot, no global state)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def new_figure(width: float, height: float):
    """A matplotlib Figure that never shows itself (the widget decides where its PNG goes)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def esc(x: Any) -> str:
    """HTML-escaped text."""
    return html.escape(str(x))


def table(header: list[str], rows: list[list[Any]], raw: set[int] = frozenset()) -> str:
    """A small HTML table (cells escaped, except the column indices in `raw`, which hold markup)."""
    th = "".join(f"<th style='text-align:left;padding:1px 8px'>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:1px 8px'>{c if i in raw else esc(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table style='border-collapse:collapse;font-size:12px'><tr>{th}</tr>{body}</table>"


class StaticWidget(w.VBox):
    """A VBox whose state is drawn by `_draw() -> (png bytes, html)`; displays with a static fallback.

    Subclasses build their controls, then call `refresh()` whenever the state changes.
    """

    def __init__(self, controls: list[w.Widget], title: str, **kwargs):
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.info = w.HTML()
        self._title = title
        self._png = b""
        super().__init__(children=[*controls, self.image, self.info], **kwargs)
        self.add_class("dsilab-widget")

    # -- state -> figure ------------------------------------------------------------------------------------
    def _draw(self) -> tuple[bytes, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def refresh(self) -> None:
        """Redraw the figure and the tables from the current state."""
        png, info = self._draw()
        self._png = png
        self.image.value = png
        self.info.value = info

    @property
    def png(self) -> bytes:
        """The current figure as PNG bytes (what the widget and its static copy show)."""
        return self._png

    def save_png(self, path: str) -> None:
        """Write the current figure to `path` (e.g. for a report or the docs)."""
        with open(path, "wb") as f:
            f.write(self._png)

    def static_html(self) -> str:
        """The current state as self-contained HTML: the figure (data URI) and the tables."""
        if not self._png:
            raise DsilabError(f"{type(self).__name__} has not drawn anything yet; call refresh() first.")
        src = "data:image/png;base64," + base64.b64encode(self._png).decode()
        return (f"<div class='dsilab-static'><b>{esc(self._title)}</b> <i>(static view of the widget's current "
                f"state; run the notebook to interact)</i><br><img src='{src}' style='max-width:100%'/>"
                f"{self.info.value}</div>")

    def _repr_mimebundle_(self, **kwargs) -> dict[str, Any]:
        """The widget view for a live frontend plus static image/png and text/html copies for everything else."""
        bundle = dict(super()._repr_mimebundle_(**kwargs) or {})
        bundle["image/png"] = base64.b64encode(self._png).decode()
        bundle["text/html"] = self.static_html()
        bundle["text/plain"] = f"{type(self).__name__}: {self._title}"
        return bundle
