"""A local web page for choosing references: ``exemplar-color app`` (needs the ``app`` extra).

Upload a black-and-white photo, see the gallery's recommended references as thumbnails (or add your own),
select one or several, and compare the result with the input, its confidence and label maps; download the
full-resolution PNG. Served by Starlette on uvicorn, bound to 127.0.0.1 by default; the page's files are in
the package, so it works offline.
"""

from __future__ import annotations

__all__ = ["create_app"]


def create_app(*args, **kwargs):
    """See :func:`exemplar_color.app.server.create_app`."""
    from .server import create_app as make

    return make(*args, **kwargs)
