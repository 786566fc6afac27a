"""Scrapes and prometheus-client's multiprocess mode (``--workers N``), the prometheus-client
way: every worker writes its samples to mmap files in one shared directory and a scrape merges
them (:func:`render` with no registry). prometheus-client decides *at import time* whether it
writes to files (``values.ValueClass``), so the composition root must:

1. in the supervisor, before starting any worker: ``prepare_multiprocess_dir(path)``, which empties
   stale ``*.db`` files and exports ``PROMETHEUS_MULTIPROC_DIR`` for the children;
2. start workers as fresh interpreters (``multiprocessing`` "spawn" context or re-exec). A worker
   forked from a supervisor that had already imported prometheus_client (any import of
   :mod:`gateway.metrics` does) would silently keep in-memory values; :class:`~gateway.metrics.
   Metrics` refuses to start then;
3. call ``mark_process_dead(pid)`` when a worker exits, so its ``live*`` gauges disappear;
4. in the workers, build ``Metrics`` as usual and serve ``metrics.render(accept_header)``.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client import multiprocess as _mp
from prometheus_client.exposition import choose_encoder

ENV_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def render(
    registry: CollectorRegistry | None,
    *,
    accept: str | None = None,
    multiprocess_dir: str | os.PathLike[str] | None = None,
) -> tuple[bytes, str]:
    """Body and content type of a scrape: ``registry``, or (None) a merge of the worker files.

    The merge uses a fresh registry per scrape, as prometheus-client requires; the directory is
    ``multiprocess_dir`` or ``$PROMETHEUS_MULTIPROC_DIR``. ``accept`` negotiates OpenMetrics.
    """
    if registry is None:
        path = multiprocess_dir or os.environ.get(ENV_MULTIPROC_DIR)
        if not path:
            raise ValueError(f"no registry and no {ENV_MULTIPROC_DIR}")
        registry = CollectorRegistry(auto_describe=False)
        # prometheus-client leaves these two unannotated.
        _mp.MultiProcessCollector(registry, path=os.fspath(path))  # type: ignore[no-untyped-call]
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def prepare_multiprocess_dir(path: str | os.PathLike[str]) -> None:
    """Create ``path``, delete the previous run's sample files, export it to child processes.

    Call in the supervisor before any worker starts: stale files would add the last run's
    counts to this one's.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[ENV_MULTIPROC_DIR] = str(directory)


def mark_process_dead(pid: int, path: str | os.PathLike[str] | None = None) -> None:
    """Forget an exited worker's ``live*`` gauges (its counters keep counting in the sum)."""
    directory = path or os.environ.get(ENV_MULTIPROC_DIR)
    if not directory:
        raise ValueError(f"no path and no {ENV_MULTIPROC_DIR}")
    _mp.mark_process_dead(pid, os.fspath(directory))  # type: ignore[no-untyped-call]
