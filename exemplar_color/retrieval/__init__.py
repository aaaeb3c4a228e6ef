"""Reference retrieval: "give me the best references for this photo" over a large colour gallery.

Two stages (design Part 2 §6): FAISS over L2-normalised global descriptors of the gray image (exact inner
product by default; IVF, HNSW, IVF-PQ or any factory string for large galleries), then the published local
re-ranking (7x7 grid features + luminance histograms, ``dist0 + 0.25 dist1``) of the top candidates.

    >>> from exemplar_color.retrieval import GalleryIndex  # doctest: +SKIP
    >>> index = GalleryIndex.build("gallery/", "gallery.index")  # doctest: +SKIP
    >>> for r in GalleryIndex.open("gallery.index").search("old_photo.jpg", k=5):  # doctest: +SKIP
    ...     print(r.path, r.score)
"""

from .descriptors import DescriptorConfig, DescriptorExtractor, Descriptors, prepare_gray
from .errors import (EmptyGalleryError, GalleryIndexError, IndexMismatchError, IndexNotFoundError,
                     PartialBuildError)
from ..artifacts import BuildReport
from .gallery import GalleryIndex
from .index import KINDS, resolve_kind
from .search import RankWeights, Recommendation, rerank_scores

__all__ = [
    "GalleryIndex", "BuildReport", "Recommendation", "RankWeights", "DescriptorConfig", "DescriptorExtractor",
    "Descriptors", "prepare_gray", "rerank_scores", "resolve_kind", "KINDS", "GalleryIndexError",
    "EmptyGalleryError", "IndexMismatchError", "IndexNotFoundError", "PartialBuildError",
]
