"""The HTML building blocks of the run report, written with the standard library only.

Every text that comes from a file (class names, paths, config values) goes through ``text`` (``html.escape``
with quotes), so a class named ``<script>`` renders as those characters. The page also carries a Content
Security Policy that allows no script and no network request at all: images are data URIs or files
beside the page, styles are inline. That keeps the page safe to open from anyone's run directory even
if a value were ever left unescaped.

Images are embedded by default (one file to send; figures are PNG as written, photographs (the worst-image
gallery, the sample grid) are re-encoded as JPEG at most ``PHOTO_EMBED_SIDE`` pixels wide, which keeps the
page a few MB), or linked by a
path relative to the page (``embed=False``: a small page that needs the run directory beside it).
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import cv2
import numpy as np

PHOTO_EMBED_SIDE = 800
PHOTO_JPEG_QUALITY = 85
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data: file: 'self'; style-src 'unsafe-inline'"
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222; background: #fafafa; }
header { background: #1f3b57; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header p { margin: 0; opacity: 0.85; font-size: 13px; }
nav { padding: 8px 32px; background: #e8edf2; font-size: 13px; }
nav a { margin-right: 14px; color: #1f3b57; }
main { padding: 0 32px 40px 32px; max-width: 1400px; }
section { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 18px 0; padding: 12px 20px; }
h2 { font-size: 18px; margin: 6px 0 12px 0; color: #1f3b57; }
h3 { font-size: 15px; margin: 14px 0 8px 0; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px 0; }
th, td { border: 1px solid #ddd; padding: 3px 10px; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f3f6; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: 4px 0; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.figures figure { margin: 0; max-width: 48%; }
.figures figure.wide { max-width: 100%; }
.figures.thumbnails figure { max-width: 24%; }
figcaption { font-size: 12px; color: #555; }
.missing { color: #8a5a00; background: #fff6e0; border-left: 4px solid #e0a800; padding: 6px 10px; }
pre { background: #f5f5f5; padding: 10px; overflow-x: auto; font-size: 12px; max-height: 480px; }
code { word-break: break-all; }
"""


@attrs.frozen
class ImageSource:
    """Where a page's images come from: embedded, or linked relative to the page's folder."""

    page_folder: Path
    embed: bool = True

    def url(self, path: Path, photo: bool = False) -> str:
        """The ``src`` of ``path``: a data URI when embedding, else the path relative to the page."""
        if not self.embed:
            relative = os.path.relpath(Path(path).resolve(), self.page_folder.resolve())
            return Path(relative).as_posix()
        if photo:
            jpeg = _photo_jpeg(path)
            if jpeg is not None:
                return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _photo_jpeg(path: Path) -> bytes | None:
    """A photograph as a JPEG at most ``PHOTO_EMBED_SIDE`` wide, ``None`` when OpenCV cannot read it."""
    image = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    if image.shape[1] > PHOTO_EMBED_SIDE:
        height = round(image.shape[0] * PHOTO_EMBED_SIDE / image.shape[1])
        image = cv2.resize(image, (PHOTO_EMBED_SIDE, max(1, height)), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, PHOTO_JPEG_QUALITY])
    return encoded.tobytes() if ok else None


def text(value: Any) -> str:
    """``value`` as HTML text: every ``<``, ``>``, ``&`` and quote escaped."""
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int = 3) -> str:
    """A number as table text: ``n/a`` for ``None``, NaN or anything not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; cells are escaped, columns listed in ``numeric`` are right-aligned."""
    head = "".join(f"<th>{text(header)}</th>" for header in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="number">{text(cell)}</td>' if index in numeric else f"<td>{text(cell)}</td>"
            for index, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def missing(message: str) -> str:
    """A plain statement that a section's input is missing."""
    return f'<p class="missing">{text(message)}</p>'


def figure(source: ImageSource, path: Path, caption: str, wide: bool = False, photo: bool = False) -> str:
    """One image with its caption."""
    css = ' class="wide"' if wide else ""
    return (
        f'<figure{css}><img src="{text(source.url(path, photo))}" alt="{text(caption)}">'
        f"<figcaption>{text(caption)}</figcaption></figure>"
    )


def figures(items: Iterable[str], thumbnails: bool = False) -> str:
    """Figures side by side, wrapping; ``thumbnails`` puts four in a row (the gallery)."""
    css = "figures thumbnails" if thumbnails else "figures"
    return f'<div class="{css}">{"".join(items)}</div>'


@attrs.frozen
class Section:
    """A section of the page: its anchor, title and (already escaped) HTML body."""

    anchor: str
    title: str
    body: str


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole document: head with the CSP and style, a header, a table of contents, the sections."""
    links = "".join(f'<a href="#{text(s.anchor)}">{text(s.title)}</a>' for s in sections)
    parts = "".join(
        f'<section id="{text(s.anchor)}"><h2>{text(s.title)}</h2>{s.body}</section>' for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text(title)}</title><style>{STYLE}</style></head>\n"
        f"<body><header><h1>{text(title)}</h1><p>{text(subtitle)}</p></header>"
        f"<nav>{links}</nav><main>{parts}</main></body></html>\n"
    )
