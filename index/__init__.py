"""styleaxis.index: style and content similarity indexes over an embed run, and their queries."""

from .build import IndexConfig, add_videos, build_from_vectors, build_indexes
from .calibrate import CALIBRATIONS
from .factory import FactoryChoice, choose_factory
from .integrity import IndexIntegrityError
from .manifest import IndexManifest
from .search import MODES, Result, SearchConfig, Searcher, UnknownVideoError
from .transform import SearchTransform

__all__ = [
    "CALIBRATIONS",
    "FactoryChoice",
    "IndexConfig",
    "IndexIntegrityError",
    "IndexManifest",
    "MODES",
    "Result",
    "SearchConfig",
    "SearchTransform",
    "Searcher",
    "UnknownVideoError",
    "add_videos",
    "build_from_vectors",
    "build_indexes",
    "choose_factory",
]
