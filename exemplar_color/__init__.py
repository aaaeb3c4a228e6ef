"""exemplar_color: exemplar-based image colorization with automatic reference retrieval.

The pipeline follows Deep Exemplar-based Colorization (He et al., SIGGRAPH 2018): VGG-19 features
(``backbone``), bidirectional deep correspondence and similarity maps (``correspondence``), a colorization
head (``colorization``), a FAISS gallery that recommends references (``retrieval``), training
(``training``), and the public API (:class:`Colorizer`) and command line (``cli``).
"""

from ._version import __version__

__all__ = ["__version__", "Colorizer", "ColorizationResult"]


def __getattr__(name: str):
    # Lazy: `import exemplar_color` stays light (no torch) for the CLI's --help and for scripts that only need
    # I/O. Modules of the package take the version from `._version`, never from here.
    if name in ("Colorizer", "ColorizationResult"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'exemplar_color' has no attribute {name!r}")
