"""The engine: the only part that joins the encoder side to index/ (sync, search, identify, calibrate,
duplicates, encoder-index compatibility). Importing it loads faiss but not torch; the encoder loads
when a command needs one."""

from index.errors import IndexStoreError
from simsearch.engine.calibrate import Calibration, calibrate
from simsearch.engine.compat import encoder_record
from simsearch.engine.decision import DEFAULT_FPIR, DEFAULT_THRESHOLD, OperatingPoint, Threshold, resolve_threshold
from simsearch.engine.duplicates import (
    Duplicate,
    duplicate_rows,
    duplicate_threshold,
    find_duplicates,
    index_duplicate_threshold,
)
from simsearch.engine.exchange import Exported, export_embeddings, import_embeddings, read_embeddings
from simsearch.engine.search import Hit, Identification, QueryResult, Searcher, expand_queries
from simsearch.engine.sync import (
    BuildReport,
    StrictModeError,
    add_files,
    build_index,
    check_index,
    index_info,
    open_index,
    remove_entries,
)
from simsearch.engine.verify import Verdict, verify

__all__ = [
    "DEFAULT_FPIR",
    "DEFAULT_THRESHOLD",
    "BuildReport",
    "Calibration",
    "Duplicate",
    "Exported",
    "Hit",
    "Identification",
    "IndexStoreError",
    "OperatingPoint",
    "QueryResult",
    "Searcher",
    "StrictModeError",
    "Threshold",
    "Verdict",
    "add_files",
    "build_index",
    "calibrate",
    "check_index",
    "duplicate_rows",
    "duplicate_threshold",
    "encoder_record",
    "expand_queries",
    "export_embeddings",
    "find_duplicates",
    "import_embeddings",
    "index_duplicate_threshold",
    "index_info",
    "open_index",
    "read_embeddings",
    "remove_entries",
    "resolve_threshold",
    "verify",
]
