"""exemplar_color: exemplar-based image colorization with automatic reference retrieval.

The pipeline follows Deep Exemplar-based Colorization (He et al., SIGGRAPH 2018): VGG-19 features,
bidirectional deep correspondence and similarity maps (``correspondence``), a colorization head
(``colorization``), and a FAISS gallery that recommends references (``retrieval``).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
