"""Fetch ophyd's initial PV metadata in bulk, at the speed of Channel Access.

Why: when a PV connects, ophyd's pyepics shim (``PyepicsShimPV.
get_all_metadata_callback``) queues a *blocking* TIME get and then a blocking
CTRL get on a few utility threads; each one busy-polls pyepics until its reply
arrives.  Thousands of signals are therefore fetched nearly one round trip at a
time (about 160 signals/s against our IOCs), although libca can have all of the
requests in flight at once.

A second serialisation hides behind it: ophyd subscribes each signal from its
connection callback, and pyepics' ``PV.add_callback`` then does a blocking CTRL
get (and a blocking value get for ``run_now``) on ophyd's one dispatcher thread.

How: :class:`BulkMetadataPV` replaces those two methods.  Requests are handed to a
single :class:`MetadataBatcher` thread which issues the CTRL get of every pending
PV (and a TIME get where no monitor brings the timestamp) at once, flushes once,
and completes them as the replies come in (``ca.get_complete_with_metadata``
returns the reply that arrived, without a new request).  The batcher's get
callback runs pyepics' own handler, then notes the channel: between two sweeps
over everything pending, it looks only at requests with an answer.  ophyd then
receives the same metadata dictionary, through the same callback, in its own
utility thread (limits, precision, units and enum strings are all kept).

It also mends three pyepics races: a get tried while the IOC was away stays
"pending" for ever, so the device never comes back after its IOC restarts (see
``BulkMetadataPV._resend_lost_gets``); a signal that joins a PV another
signal already holds, while that PV is connecting, can miss the connection for
good (see :func:`get_pv`); and a PV that connects while it is being made can be
left asking for a type pyepics cannot read (see ``BulkMetadataPV._mend_request_type``).
And a PV released on a channel held open elsewhere (a ``load: lazy`` device's, see
:func:`keep_channel_open`) lets go of the channel instead of clearing it.

The hooks are ``epics.pv.default_pv_class`` (the PV class ``epics.get_pv`` builds,
which ophyd's shim itself sets in ``setup()``) and ``ophyd.cl.get_pv`` (which
ophyd's own ``pv_telemetry`` option wraps the same way); :func:`install` swaps in
ours and :func:`uninstall` restores ophyd's.  ``tests/test_bulk_metadata.py``
fails if a future ophyd stops calling ``get_all_metadata_callback`` on connect or
stops building its PVs through ``cl.get_pv``.
"""
from __future__ import annotations

import collections
import ctypes
import logging
import queue
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterator

import epics
from epics import ca, dbr
from ophyd import _pyepics_shim as shim
from ophyd.utils import DestroyedError

from .callback_threads import keep_thread_state
from .pyepics_gil import opening_poll_skipped, polls_skipped

logger = logging.getLogger(__name__)

MetadataCallback = Callable[[str, dict], None]
RELEASE_WAIT = 5.0      # seconds a release waits for a read, write or metadata fetch on that PV


@dataclass
class _Request:
    pv: "BulkMetadataPV"
    callback: MetadataCallback
    deadline: float
    ftypes: tuple[int, ...] = field(default=())
    cache: object = None        # pyepics' cache entry of the channel, where replies land
    chid: int = 0
    awaits_monitor: bool = False   # no TIME get: the monitor's first update brings the timestamp
    noted: bool = True          # every reply it waits for notes its channel (see MetadataBatcher._run)


def _on_get_reply(args) -> None:
    """libca's get callback for the batcher's gets: pyepics' own handler stores the
    reply, then the channel is noted so the batcher looks at its requests only."""
    keep_thread_state()
    ca._onGetEvent(args)
    _replied.append(args.chid)


_replied: "collections.deque[int]" = collections.deque()   # chids with a reply (thread-safe appends)
_FLUSH = object()       # in the batcher's queue: wake up, someone wants a flush (flush_soon)
_CB_GET_NOTIFY = dbr.make_callback(_on_get_reply, dbr.event_handler_args)


class MetadataBatcher:
    """One thread that keeps every pending metadata request in flight at once."""

    def __init__(self, poll_interval: float = 0.001, sweep_interval: float = 1.0):
        self._queue: "queue.Queue[_Request]" = queue.Queue()
        self._poll_interval = poll_interval
        # every pending request is looked at this often, for its deadline (and as a
        # safety net); between sweeps only the channels with a reply, and those whose
        # replies come to someone else's get (see _run)
        self._sweep_interval = sweep_interval
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.completed = 0          # requests answered in bulk (tests read this)
        self.fell_back = 0          # requests handed back to ophyd's own path
        self._flush_wanted = False  # someone queued a libca request for this thread to send

    def submit(self, pv: "BulkMetadataPV", callback: MetadataCallback, timeout: float) -> None:
        self._ensure_thread()
        pv._bulk_requested()
        self._queue.put(_Request(pv, callback, time.monotonic() + timeout))

    def flush_soon(self) -> None:
        """Have libca's queued requests sent within a poll interval, by this thread.

        Why: a monitor subscription waits in libca's queue until someone flushes
        (see ``BulkMetadataPV._check_auto_monitor``), and pyepics subscribes from
        the connection handler on libca's receive thread.  A flush there for each
        new monitor woke libca's send thread every time (17,000 times for 1000
        motors): each wake took the CPU from the receive thread, which handles
        every reply of the load.  Requests made while a flush is already wanted
        go out with it: they were queued before the flag was found set, and the
        flag is cleared before the flush.  The thread is made sure of at every call:
        a flag left set by a thread that ended would otherwise never be served."""
        self._ensure_thread()
        if not self._flush_wanted:
            self._flush_wanted = True
            self._queue.put(_FLUSH)         # wakes the thread if it waits for work

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = ca.CAThread(target=self._run, name="bulk-metadata", daemon=True)
                self._thread.start()

    # -- the thread -------------------------------------------------------
    def _run(self) -> None:
        """Each pass looks at the channels with news: a reply to one of this thread's
        gets, or a monitor's first update (both note the channel), and the few
        requests whose reply comes to a get someone else made (not noted).  A sweep
        over everything pending, for deadlines, runs once a second: every 0.1 s it
        had looked at 180,000-340,000 requests in a 1000-motor load to complete
        20,000, and this thread's CPU there halved (1.8 -> 0.9 s, median of five)."""
        ca.use_initial_context()
        pending: dict[int, list[_Request]] = {}     # by chid
        unnoted: set[int] = set()                   # chids with a request no reply notes
        next_sweep = 0.0
        while True:
            new = self._drain(block=not pending)
            unnoted.update(request.chid for request in self._issue_all(new, pending) if not request.noted)
            del new        # else held while waiting for the next: a dropped device stays alive
            now = time.monotonic()
            if now >= next_sweep:
                chids, next_sweep = list(pending), now + self._sweep_interval
            else:
                chids = self._replied_chids() | unnoted
            for chid in chids:
                still = self._complete_ready(pending.get(chid, ()), now)
                if still:
                    pending[chid] = still
                else:
                    pending.pop(chid, None)
                    unnoted.discard(chid)

    def _issue_all(self, requests: list[_Request], pending: dict[int, list[_Request]]) -> list[_Request]:
        """Issue ``requests`` and flush once (also for :meth:`flush_soon`); the ones
        now pending.  A method of its own so that no loop variable of ``_run`` keeps
        the last request (its signal, its device) alive while the thread waits: a
        device dropped by a reload was never freed."""
        issued = [request for request in requests if self._issue(request)]
        for request in issued:
            pending.setdefault(request.chid, []).append(request)
        if requests or self._flush_wanted:
            self._flush_wanted = False      # (before the flush: see flush_soon)
            ca.flush_io()
        return issued

    @staticmethod
    def _replied_chids() -> set[int]:
        chids = set()
        while _replied:
            chids.add(_replied.popleft())
        return chids

    def _drain(self, block: bool) -> list[_Request]:
        """Everything queued; waits for the first one (at most a poll interval
        while requests are in flight, which is also how replies are awaited)."""
        requests: list = []
        try:
            requests.append(self._queue.get(timeout=None if block else self._poll_interval))
            while True:
                requests.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return [request for request in requests if request is not _FLUSH]

    def _issue(self, request: _Request) -> bool:
        with request.pv._release_lock:
            if request.pv._released:
                request.pv._bulk_answered(delivered=False)
                return False
            return self._issue_locked(request)

    def _issue_locked(self, request: _Request) -> bool:
        # As pyepics' get_with_metadata(wait=False), without its checks that call
        # libca: every libca call gives the GIL away, and while devices are built
        # each hand-off kept this thread waiting (issuing and unpacking a PV's two
        # gets took 19 calls, now 3).
        pv = request.pv
        chid = pv.chid
        try:
            request.chid = ca._chid_to_int(chid) if chid is not None else 0
            # pyepics' channel entry: marked connected before any connection callback runs
            request.cache = entry = ca.get_cache(pv.pvname)
            if chid is None or entry is None or not entry.conn:
                raise ca.ChannelAccessException("not connected")
            native = ca.field_type(chid)
            ctrl = ca.promote_fieldtype(native, use_ctrl=True)
            request.awaits_monitor = _monitor_brings_time(pv)
            request.ftypes = ((ctrl,) if request.awaits_monitor
                              else (ca.promote_fieldtype(native, use_time=True), ctrl))
            for ftype in request.ftypes:
                with entry.lock:
                    if entry.get_results[ftype][0] is ca.GET_PENDING:
                        request.noted = False       # one is on its way, maybe not ours
                        continue
                    entry.get_results[ftype] = [ca.GET_PENDING]
                    status = ca.libca.ca_array_get_callback(
                        ftype, 1, chid, _CB_GET_NOTIFY, ctypes.py_object(ftype))
                    ca.PySEVCHK("get", status)
            return True
        except Exception as exc:  # disconnected meanwhile: ophyd retries on reconnect
            logger.debug("bulk metadata for %s not issued (%r)", request.pv.pvname, exc)
            self._fall_back(request)
            return False

    def _complete_ready(self, pending: list[_Request], now: float) -> list[_Request]:
        still: list[_Request] = []
        for request in pending:
            state = self._state(request)
            if state == "ready":
                self._deliver(request)
            elif state == "pending" and now < request.deadline:
                still.append(request)
            else:
                self._fall_back(request)
        return still

    @staticmethod
    def _state(request: _Request) -> str:
        # plain attribute reads: this runs for every pending request each poll
        entry = request.cache
        if entry is None:
            return "gone"
        for ftype in request.ftypes:
            result = entry.get_results[ftype][0]
            if result is ca.GET_PENDING:
                return "pending"
            if result is None:
                return "gone"
        if request.awaits_monitor and request.pv._args["timestamp"] is None:
            return "pending"        # the CTRL reply came first: see _monitor_brings_time
        return "ready"

    def _deliver(self, request: _Request) -> None:
        pv = request.pv
        with pv._release_lock:      # ophyd must not clear the channel under libca's feet
            if pv._released or pv.chid is None:
                pv._bulk_answered(delivered=False)
                return
            self._deliver_locked(request)

    def _deliver_locked(self, request: _Request) -> None:
        pv = request.pv
        try:
            for ftype in request.ftypes:       # replies _state found: unpacked as pyepics does
                result = request.cache.get_results[ftype][0]
                if isinstance(result, Exception):
                    raise result
                pv._args.update(ca._unpack_metadata(ftype=ftype, dbr_value=result[0]))
            if pv._args["read_access"] is None:
                # pyepics' get_ctrlvars reads them again here; they were read when the
                # channel connected and libca's access-rights event keeps them (4 calls a PV)
                pv.force_read_access_rights()
        except Exception as exc:
            logger.debug("bulk metadata for %s failed (%s)", pv.pvname, exc)
            self._fall_back(request)
            return
        self.completed += 1
        pv._bulk_answered(delivered=True)
        shim.get_dispatcher().schedule_utility_task(request.callback, pv.pvname, pv._metadata())

    def _fall_back(self, request: _Request) -> None:
        request.pv._bulk_answered(delivered=False)     # (before ophyd's path asks for it again)
        if request.pv._released:    # destroyed meanwhile: nobody waits, and its channel is gone
            return
        self.fell_back += 1
        shim.PyepicsShimPV.get_all_metadata_callback(
            request.pv, request.callback, timeout=max(0.1, request.deadline - time.monotonic()))


def _monitor_brings_time(pv: "BulkMetadataPV") -> bool:
    """A PV monitored in TIME form needs no TIME get: the monitor's first update
    brings value, alarm and timestamp.  pyepics subscribes at the end of its
    connection handler, normally before ophyd's request reaches the batcher, so that
    update is ahead of the CTRL get on the same circuit.  ophyd's own fetch skips the
    TIME get too once an update has come (``get_all_metadata_blocking``).  The IOC may
    still answer the CTRL get first: such a request is completed only once the
    update has come (``BulkMetadataPV._PV__on_changes`` notes it), or else ophyd,
    given metadata without a timestamp, would stamp the signal with the local time
    after the update, until the next one."""
    return pv.form == "time" and (pv._monref is not None or bool(pv.auto_monitor))


_batcher = MetadataBatcher()


class BulkMetadataPV(shim.PyepicsShimPV):
    """ophyd's PV class, but its initial metadata comes from :data:`_batcher`."""

    def __init__(self, *args, **kwargs):
        # held for each libca call the batcher makes on this PV, and while a read, a
        # write or ophyd's own blocking fetch is counted in or out (see clear_callbacks)
        self._release_lock = threading.Condition()
        self._released = False
        self._uses = 0
        # held while pyepics runs this PV's connection / access-rights handlers, and
        # while get_pv adds a subscriber: the two never interleave
        self._subscribers_lock = threading.RLock()
        # batcher requests in flight and answers so far (see get_all_metadata_blocking)
        self._bulk_state = threading.Condition()
        self._bulk_in_flight = 0
        self._bulk_delivered = 0
        super().__init__(*args, **kwargs)
        self._mend_request_type()
        self.connection_callbacks.append(self._resend_lost_gets)

    def _mend_request_type(self) -> None:
        """pyepics' constructor works out ``ftype`` (the type every get asks for) from
        the channel's field type before the channel has connected, and stores it last.
        A channel whose connection handler ran in between had the handler's right type
        overwritten with a wrong one (-1 promoted: a TIME double became 13, which
        pyepics cannot read), and every get asking for the PV's own type (pyepics'
        ``get()`` without a form: ``epics.caget`` in the session) failed until it
        reconnected.  ophyd names the type it asks for, so its reads were not hit.
        Once the constructor is done, the type is worked out again if the handler has run."""
        with self._subscribers_lock:        # (the handler holds it)
            if not self.connected or self.chid is None:
                return                      # the handler, still to come, sets it
            native = ca.field_type(self.chid)
            if native >= 0:
                self.ftype = ca.promote_fieldtype(native, use_ctrl=self.form == "ctrl",
                                                  use_time=self.form == "time")
                self._args["type"] = dbr.Name(self.ftype).lower()

    def _PV__on_connect(self, *args, **kwargs):
        """pyepics' connection handler (``PV.__on_connect``), under the subscribers lock;
        on a connection, without the ``poll`` it opens with (``loader.pyepics_gil``)."""
        keep_thread_state()     # libca's receive thread: see loader/callback_threads.py
        connected = kwargs.get("conn", args[2] if len(args) > 2 else True)
        with self._subscribers_lock, (opening_poll_skipped() if connected else nullcontext()):
            return super()._PV__on_connect(*args, **kwargs)

    def _PV__on_changes(self, *args, **kwargs):
        """pyepics' monitor handler; while the batcher has a request in flight it may be
        waiting for this first update (see ``_monitor_brings_time``): the channel is
        noted, so that the request is completed now rather than at the next sweep."""
        result = super()._PV__on_changes(*args, **kwargs)
        if self._bulk_in_flight and self.chid is not None:
            _replied.append(ca._chid_to_int(self.chid))
        return result

    def _check_auto_monitor(self):
        """pyepics' (subscribe once connected), then have the subscription sent soon.

        libca queues a request until someone flushes, and pyepics does not flush
        after ``ca_create_subscription``: on an otherwise idle client a new monitor
        (a lazy component touched after the load, a device rebuilt by a reload) sat
        unsent, so its first update never came and the batcher, waiting for it,
        held the signal unconnected.  One in four to six such monitors in a row
        against EPICS's own softIoc; a flush delivered them in 10 ms.  The flush is
        the batcher's, within a millisecond, for all the monitors made meanwhile
        (:meth:`MetadataBatcher.flush_soon`).  So the two ``poll`` calls pyepics makes
        around the subscription (a sleep in libca and a flush each, per monitor) are
        skipped (``loader.pyepics_gil.polls_skipped``); not with a monitor deadband
        (``_monitor_delta``, which ophyd never sets), where pyepics waits for a
        channel of its own."""
        before = self._monref
        with (polls_skipped() if self._args.get("_monitor_delta") is None else nullcontext()):
            result = super()._check_auto_monitor()
        if self._monref is not None and self._monref is not before:
            _batcher.flush_soon()
        return result

    def _PV__on_access_rights_event(self, *args, **kwargs):
        """pyepics' access-rights handler, under the subscribers lock."""
        with self._subscribers_lock:
            return super()._PV__on_access_rights_event(*args, **kwargs)

    def subscribe_connection(self, connection_callback=None, access_callback=None) -> None:
        """Add a subscriber's connection and access callbacks, as ophyd's shim does
        for a new PV (on ophyd's dispatcher thread), and tell it at once if the PV
        is already connected.  Atomic with the handlers: it is told exactly once."""
        dispatcher = shim.get_dispatcher()
        connection_callback = shim.wrap_callback(dispatcher, "metadata", connection_callback)
        access_callback = shim.wrap_callback(dispatcher, "metadata", access_callback)
        with self._subscribers_lock:
            if connection_callback is not None:
                self.connection_callbacks.append(connection_callback)
            if access_callback is not None:
                self.access_callbacks.append(access_callback)
            connected = self.connected
        if connected:
            if connection_callback is not None:
                connection_callback(pvname=self.pvname, conn=True, pv=self)
            if access_callback is not None:
                access_callback(self.read_access, self.write_access, pv=self)

    def _resend_lost_gets(self, pvname=None, conn=None, **kwargs) -> None:
        """pyepics marks a get as pending *before* libca accepts it: a get tried
        while the IOC was away stays "pending" for ever, and every later get of
        that type waits on it and times out, so the device never comes back.
        When the channel reconnects, such gets are sent again."""
        if not conn or self.chid is None or self._released:
            return
        entry = ca.get_cache(self.pvname)
        if entry is None:
            return
        resent = False
        for ftype, result in list(entry.get_results.items()):
            if result[0] is ca.GET_PENDING:
                ca.libca.ca_array_get_callback(ftype, 0, self.chid, ca._CB_GET, ctypes.py_object(ftype))
                resent = True
        if resent:
            ca.flush_io()

    def clear_callbacks(self, *args, **kwargs):
        """ophyd's ``release_pvs`` calls this just before it clears the channel:
        from here on the batcher leaves this PV alone (a libca call on a cleared
        channel crashes the process).  A channel held open outside ophyd as well
        (:func:`keep_channel_open`) is let go of, not cleared."""
        with self._release_lock:
            self._released = True
            # a read, a write or ophyd's own metadata fetch in another thread must be
            # over before the channel goes (see _channel_in_use): bounded, they have timeouts
            if not self._release_lock.wait_for(lambda: not self._uses, RELEASE_WAIT):
                logger.warning("%s: released while a read, write or metadata fetch was still running",
                               self.pvname)
        super().clear_callbacks(*args, **kwargs)
        if self.pvname in _kept_open and self.chid is not None:
            self._leave_channel_open()

    @epics.pv._ensure_context     # its channel entry is found in the PV's own context
    def _leave_channel_open(self) -> None:
        """Let go of the channel without clearing it, as pyepics' ``disconnect`` does
        (ophyd's ``clear_callbacks`` signature keeps that from running on ophyd's
        PVs): this PV's handlers come off the channel, else a later connection runs
        the released PV's handler; and its monitor is cancelled, which a cleared
        channel did by itself (``clear_auto_monitor`` only flags it): left, the
        IOC's next update called into the freed PV and crashed the process.
        Without a ``chid`` then, ``release_pvs`` does not clear the channel."""
        entry = ca.get_cache(self.pvname)
        if entry is not None:
            for handlers, handler in ((entry.callbacks, self._PV__on_connect),
                                      (entry.access_event_callback, self._PV__on_access_rights_event)):
                while handler in handlers:
                    handlers.remove(handler)
        self._clear_auto_monitor_subscription()
        self.chid = None

    def get_all_metadata_callback(self, callback: MetadataCallback, *, timeout: float) -> None:
        _batcher.submit(self, callback, timeout)

    def _bulk_requested(self) -> None:
        with self._bulk_state:
            self._bulk_in_flight += 1

    def _bulk_answered(self, delivered: bool) -> None:
        with self._bulk_state:
            self._bulk_in_flight -= 1
            self._bulk_delivered += delivered
            self._bulk_state.notify_all()

    def get_all_metadata_blocking(self, timeout: float) -> dict:
        """ophyd fetches the metadata itself, busy-polling two gets, when a signal is
        read before its metadata has come (a monitor callback that reads a sibling
        signal during the load: the temperature's done-check, apstools' IocStats).
        With the batcher's request already in flight, wait for its answer instead
        (bounded by ``timeout``); ophyd's own fetch is the fall-back.  That fetch is
        counted (:meth:`_channel_in_use`); a released PV is not fetched."""
        with self._bulk_state:
            if self._bulk_in_flight:
                before = self._bulk_delivered
                self._bulk_state.wait_for(
                    lambda: self._bulk_delivered > before or not self._bulk_in_flight, timeout)
                if self._bulk_delivered > before:
                    return self._metadata()
        try:
            with self._channel_in_use("metadata fetch"):
                return super().get_all_metadata_blocking(timeout)
        except DestroyedError:          # released: its channel is cleared, or about to be
            return self._metadata()

    @contextmanager
    def _channel_in_use(self, what: str) -> Iterator[None]:
        """A release (ophyd's ``release_pvs``, a device destroyed by a reload) waits,
        bounded, until the reads, writes and metadata fetches other threads are making
        on this PV are over, and none starts after it: ophyd clears the channel right
        after, and libca on a cleared channel crashed the process (a monitor callback
        reading a sibling, a plan's read, while a reload destroyed the device).  After
        the release such a call raises ophyd's ``DestroyedError``."""
        with self._release_lock:
            if self._released:
                raise DestroyedError(f"{self.pvname}: no {what} once its signal is destroyed")
            self._uses += 1
        try:
            yield
        finally:
            with self._release_lock:
                self._uses -= 1
                self._release_lock.notify_all()

    def get_with_metadata(self, *args, **kwargs):
        """pyepics' read (ophyd's ``get``, pyepics' ``get``), counted: see :meth:`_channel_in_use`."""
        with self._channel_in_use("read"):
            return super().get_with_metadata(*args, **kwargs)

    def put(self, *args, **kwargs):
        """ophyd's shim write, counted: see :meth:`_channel_in_use`."""
        with self._channel_in_use("write"):
            return super().put(*args, **kwargs)

    def get_ctrlvars(self, *args, **kwargs):
        """pyepics' blocking read of the control fields, counted: see :meth:`_channel_in_use`.
        ophyd's own ``EpicsMotor`` makes it from a limit's monitor callback: with a
        plain motor destroyed meanwhile, the process crashed (5 of 8 runs of 100
        motors built and destroyed in turn)."""
        with self._channel_in_use("control fields read"):
            return super().get_ctrlvars(*args, **kwargs)

    def get_timevars(self, *args, **kwargs):
        """pyepics' blocking read of the time fields, counted: see :meth:`_channel_in_use`."""
        with self._channel_in_use("time fields read"):
            return super().get_timevars(*args, **kwargs)

    def _metadata(self) -> dict:
        """What the batcher fetched, as ophyd's metadata callback takes it (no value)."""
        metadata = self._args.copy()
        metadata.pop("value", None)
        return metadata

    def add_callback(self, callback=None, index=None, run_now=False, with_ctrlvars=True, **kw):
        """ophyd subscribes every monitored signal from its connection callback, on
        its single dispatcher thread; pyepics would then make a blocking CTRL get
        and, for ``run_now``, a blocking value get (plus another CTRL get for the
        string form), one PV at a time.  The CTRL fields arrive through the
        batcher instead; ``run_now`` runs the callback on the monitored value
        when there is one, else the monitor's first update runs it.

        Under the release lock, and not at all once released (nor ``run_now``,
        which needs the CA context a release takes away): ophyd's dispatcher
        subscribes from its connection callback (``_pv_connected``), which checks
        that the signal is not destroyed only once, at its top.  A destroy right
        then cleared the channel while the subscription went on to it (ophyd's
        ``add_callback`` turns the monitor back on, pyepics then asks libca about
        the freed channel): the process crashed (test_bulk_metadata's resubscribe
        test, once in CI, twice in ~130 reruns on a loaded machine)."""
        with self._release_lock:
            if self._released:          # its channel is cleared, or about to be
                return None
            index = super().add_callback(callback=callback, index=index, run_now=False,
                                         with_ctrlvars=False, **kw)
            # (ophyd's callback is wrapped: this only hands the value to its dispatcher)
            if run_now and self.connected and self._args.get("value") is not None:
                self.run_callback(index)
        return index


def get_pv(pvname: str, *args, connection_callback=None, access_callback=None, **kwargs):
    """ophyd's ``cl.get_pv`` (``epics.get_pv``), without its lost-connection race.

    For a PV already in its cache, pyepics calls a new subscriber's callbacks at
    once if the PV is connected, else appends them; a PV whose connection handler
    has run its callbacks but not yet set ``connected`` gets the new subscriber
    too late, and that signal stays "not connected" until the IOC restarts.
    Here a cached :class:`BulkMetadataPV` takes its subscribers under the lock its
    handlers hold.  New PVs get their callbacks in the constructor, as before.
    Looking in the cache and creating the PV happen under one lock per PV name:
    two devices built at once on one PV (``calcs`` and ``temperature`` share
    ``gp:userCalc8``) could both find nothing, and the second then met pyepics'
    race after all.
    """
    if ca.current_context() is None:        # as epics.get_pv: a new thread joins the context
        ca.use_initial_context()
    cache_key = (pvname, kwargs.get("form", "time"), ca.current_context())
    with _creation_locks.setdefault(cache_key, threading.RLock()):
        if not isinstance(_cached_pv(cache_key), BulkMetadataPV):
            return _ophyd_get_pv(pvname, *args, connection_callback=connection_callback,
                                 access_callback=access_callback, **kwargs)
    # the cached PV, or (released meanwhile) a new one of our class: either way one
    # reference for this signal, and its subscribers taken under the handlers' lock
    pv = _ophyd_get_pv(pvname, *args, **kwargs)
    pv.subscribe_connection(connection_callback, access_callback)
    return pv


def _cached_pv(cache_key: tuple):
    """pyepics' PV object for ``cache_key``, or None."""
    return epics.pv._PVcache_.get(cache_key)


_creation_locks: dict[tuple, threading.RLock] = {}    # one per PV ever asked for (small)
_ophyd_get_pv = shim.get_pv


_kept_open: set[str] = set()


def keep_channel_open(pvname: str) -> None:
    """``pvname``'s channel is also held outside ophyd (a ``load: lazy`` device's
    planned channel, ``loader.lazy_signals``): no released PV may clear it.

    Why: pyepics keeps one channel per PV name, and ophyd's ``release_pvs`` clears
    the channel of every PV it releases.  A device destroyed on the same PVs (a
    setup's own swait record while ``calcs`` was not connected) took the lazy
    device's channels with it, and the device never connected again."""
    _kept_open.add(pvname)


def batcher() -> MetadataBatcher:
    return _batcher


def install() -> None:
    """Make PVs built from now on (by ophyd's pyepics control layer) use bulk metadata."""
    import ophyd  # (ophyd.setup_ophyd has run: the shim's dispatcher exists)
    if shim.get_dispatcher() is None:
        raise RuntimeError("ophyd's pyepics control layer is not set up")
    epics.pv.default_pv_class = BulkMetadataPV
    ophyd.cl.get_pv = get_pv


def uninstall() -> None:
    """Back to ophyd's own PV class and ``get_pv``."""
    import ophyd
    epics.pv.default_pv_class = shim.PyepicsShimPV
    ophyd.cl.get_pv = _ophyd_get_pv


def installed() -> bool:
    return epics.pv.default_pv_class is BulkMetadataPV
