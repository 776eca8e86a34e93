"""When a simulated IOC collects its garbage: once its clients are quiet, not in a burst.

A motor record's field channels are made on demand and live as long as the IOC:
after a 1000-motor load that is ~870,000 objects.  Python's own full collections,
set off by the objects a burst of requests leaves behind, scanned them all (three
to nine times in such a load, 0.5-0.7 s each, ~30 % of the IOC's CPU) and found
nothing to free.  So an IOC turns the automatic full collections off, runs one
itself once no client has sent anything for ``quiet`` seconds, and then freezes
what survived (``gc.freeze``), which later collections do not scan again.

Frozen objects are still freed when their last reference goes; only garbage in
reference cycles needs a collection that looks at them.  A departed client's
channels are such garbage (~270,000 objects after 1000 motors, ~0.4 s to
collect): the collection after a client leaves finds them among the unfrozen
objects, and in the loads measured those frozen while the client was connected
went with them.  For cycles a freeze did catch, a thorough sweep that unfreezes
everything first (0.6-1.2 s after a 1000-motor load) runs after a client has
left, at most every ``sweep_every`` seconds.  Young collections run as Python sets them.
"""
from __future__ import annotations

import asyncio
import gc
import time

NO_AUTOMATIC_FULL = 1 << 30     # gc's third threshold: young passes before a full one


class QuietCollector:
    """Full garbage collections of one process, deferred to moments without requests.

    ``busy()`` is called for every request; ``client_left()`` when a circuit closes.
    A collection is due after ``young_passes`` collections of the middle generation
    (Python's own trigger) or after a client left; it runs once nothing has been
    asked for ``quiet`` seconds, and at the latest ``max_defer`` seconds after it fell due.
    """

    def __init__(self, quiet: float = 0.5, max_defer: float = 30.0, young_passes: int = 10,
                 sweep_every: float = 600.0, check_every: float = 0.25):
        self.quiet = quiet
        self.max_defer = max_defer
        self.young_passes = young_passes
        self.sweep_every = sweep_every
        self.check_every = check_every
        self.last_request = self._last_sweep = time.monotonic()
        self._client_left = False
        self._due_since: float | None = None

    def install(self) -> None:
        """Freeze what exists (the PV database) and stop Python's own full collections."""
        gc.collect()
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, NO_AUTOMATIC_FULL)

    def busy(self) -> None:
        self.last_request = time.monotonic()

    def client_left(self) -> None:
        self._client_left = True

    def due(self) -> bool:
        return self._client_left or gc.get_count()[2] >= self.young_passes

    def collect(self) -> None:
        """One full collection, then freeze the survivors; after a client left, and
        ``sweep_every`` seconds since the last time, the frozen objects are looked at too."""
        sweep = self._client_left and time.monotonic() - self._last_sweep >= self.sweep_every
        if sweep:
            gc.unfreeze()
        self._client_left = False
        gc.collect()
        gc.freeze()
        if sweep:
            self._last_sweep = time.monotonic()
        self._due_since = None

    def poll(self) -> bool:
        """Collect if a collection is due and the clients are quiet, or it waited too long."""
        if not self.due():
            self._due_since = None
            return False
        now = time.monotonic()
        if self._due_since is None:
            self._due_since = now
        if now - self.last_request >= self.quiet or now - self._due_since >= self.max_defer:
            self.collect()
            return True
        return False

    async def run(self) -> None:
        """Poll for ever (an IOC's background task)."""
        while True:
            await asyncio.sleep(self.check_every)
            self.poll()


collector = QuietCollector()     # this process's: one garbage collector per process
