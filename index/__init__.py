"""styleaxis.index: style and content similarity indexes over an embed run, and their queries."""

from .build import IndexConfig, build_indexes, choose_factory
from .manifest import IndexManifest
from .search import IndexIntegrityError, Result, SearchConfig, Searcher, UnknownVideoError
from .transform import SearchTransform

__all__ = [
    "IndexConfig",
    "IndexIntegrityError",
    "IndexManifest",
    "Result",
    "SearchConfig",
    "SearchTransform",
    "Searcher",
    "UnknownVideoError",
    "build_indexes",
    "choose_factory",
]
