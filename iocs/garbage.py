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
left, at most every ``sweep_every`` seconds.

Young collections wait for a quiet moment too.  In a burst they find nothing either:
a 300-motor load leaves ~130,000 new objects in the IOC (channels, subscriptions)
and none of them in a cycle, yet Python's young passes (every 700 new objects)
scanned them during the load, ~0.06-0.1 s of an IOC that the load waits for.
Now they run once nothing has been asked for ``quiet`` seconds, or once
``young_bound`` new objects have piled up, or ``max_defer`` seconds after they
fell due, whichever comes first: garbage in cycles made during a burst still
goes within bounded time and memory.  After a burst (``burst_objects`` new
objects) the quiet moment's collection is a full one, and what survived is
frozen, as before.
"""
from __future__ import annotations

import asyncio
import gc
import time

NO_AUTOMATIC_FULL = 1 << 30     # gc's third threshold: young passes before a full one
YOUNG_BOUND = 200_000           # gc's first threshold: new objects before Python collects them, busy or not


class QuietCollector:
    """Garbage collections of one process, deferred to moments without requests.

    ``busy()`` is called for every request; ``client_left()`` when a circuit closes.
    A full collection is due after a client left, after a burst (``burst_objects``
    new objects, or so many that Python's own young pass ran) or after
    ``young_passes`` young collections (Python's own trigger); a young one once
    ``young_due`` new objects exist.  Either runs once nothing has been asked for
    ``quiet`` seconds, and at the latest ``max_defer`` seconds after it fell due.
    """

    def __init__(self, quiet: float = 0.5, max_defer: float = 30.0, young_passes: int = 10,
                 sweep_every: float = 600.0, check_every: float = 0.25,
                 young_due: int = 700, burst_objects: int = 20_000, young_bound: int = YOUNG_BOUND):
        self.quiet = quiet
        self.max_defer = max_defer
        self.young_passes = young_passes
        self.sweep_every = sweep_every
        self.check_every = check_every
        self.young_due = young_due
        self.burst_objects = burst_objects
        self.young_bound = young_bound
        self.last_request = self._last_sweep = time.monotonic()
        self._client_left = False
        self._due_since: float | None = None
        self._young_due_since: float | None = None

    def install(self) -> None:
        """Freeze what exists (the PV database) and stop Python's own full collections;
        its young ones run only after ``young_bound`` new objects."""
        gc.collect()
        gc.freeze()
        _, middle, _ = gc.get_threshold()
        gc.set_threshold(self.young_bound, middle, NO_AUTOMATIC_FULL)

    def busy(self) -> None:
        self.last_request = time.monotonic()

    def client_left(self) -> None:
        self._client_left = True

    def due(self) -> bool:
        """A full collection is due."""
        young, middle, old = gc.get_count()
        return (self._client_left or young >= self.burst_objects or middle > 0
                or old >= self.young_passes)

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
        self._due_since = self._young_due_since = None

    def collect_young(self) -> None:
        """The young generations only (what Python's own young passes look at)."""
        gc.collect(1)
        self._young_due_since = None

    def poll(self) -> bool:
        """Collect what is due if the clients are quiet, or it waited too long."""
        now = time.monotonic()
        full = self.due()
        young = not full and gc.get_count()[0] >= self.young_due
        self._due_since = (self._due_since or now) if full else None
        self._young_due_since = (self._young_due_since or now) if young else None
        since = self._due_since if full else self._young_due_since
        if since is None:
            return False
        if now - self.last_request < self.quiet and now - since < self.max_defer:
            return False
        if full:
            self.collect()
        else:
            self.collect_young()
        return True

    async def run(self) -> None:
        """Poll for ever (an IOC's background task)."""
        while True:
            await asyncio.sleep(self.check_every)
            self.poll()


collector = QuietCollector()     # this process's: one garbage collector per process
