"""Catalog reload without restart: on SIGHUP and when the file changes.

A catalog edit is an operational change that must not cost a restart (and a
rebalance); a bad edit must not take monitoring down either. So a new catalog is
validated completely first; if it is refused the old one stays in force, the reason
is logged, and ``slawatch_catalog_reload_errors_total`` counts it so an alert can
fire on it. The file is polled (mtime, size, content hash) rather than watched with
inotify: it works the same on every platform and with ConfigMap symlink swaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
from pathlib import Path

from agents.process import gcpolicy
from agents.worker.runtime import Runtime

log = logging.getLogger("slawatch.reload")


def _fingerprint(path: Path) -> bytes | None:
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=16).digest()
    except OSError:
        return None


class CatalogReloader:
    """Reloads ``rt.settings.catalog`` into ``rt`` when asked or when it changes."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.path = rt.settings.catalog
        self._seen = _fingerprint(self.path)
        self._wake = asyncio.Event()

    def reload(self, why: str) -> bool:
        """Load and swap in the catalog; False (old one kept) when it is refused."""
        from streams.catalog import CatalogError, load_catalog

        self._seen = _fingerprint(self.path)
        try:
            catalog = load_catalog(self.path)
        except CatalogError as exc:
            self.rt.counters.catalog_reload_errors += 1
            log.error("catalog reload (%s) refused, the previous catalog stays in force: %s",
                      why, exc)
            return False
        except (OSError, ValueError) as exc:
            self.rt.counters.catalog_reload_errors += 1
            log.error("catalog reload (%s) refused, the previous catalog stays in force: "
                      "%s: %s", why, self.path, exc)
            return False
        self.rt.set_catalog(catalog)
        gcpolicy.thaw()  # the old catalog was frozen with the start-up objects (gcpolicy)
        log.info("catalog reloaded (%s) from %s: %d services, %d components", why, self.path,
                 len(catalog.services), len(catalog.components))
        return True

    def install_signal_handler(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.add_signal_handler(signal.SIGHUP, self._wake.set)
        except (NotImplementedError, RuntimeError, AttributeError):  # pragma: no cover
            log.warning("SIGHUP reload is not available on this platform; polling only")

    async def run(self, interval: float) -> None:
        """Forever: reload on SIGHUP, or when the file's content changed."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
            if self._wake.is_set():
                self._wake.clear()
                self.reload("SIGHUP")
                continue
            fp = _fingerprint(self.path)
            if fp != self._seen:
                # A deleted or unreadable file is reported (and counted) once, like any
                # refused catalog; the last good catalog stays in force.
                self.reload("file changed" if fp is not None else "file missing or unreadable")
