"""``adsimdet``: an ADSimDetector with an HDF5 file writer and an image plugin.

Built from stock ophyd/apstools parts (``SingleTrigger_V34``, ``SimDetectorCam_V34``,
``HDF5Plugin_V34`` + ``FileStoreHDF5IterativeWrite``, ``ImagePlugin``), so it works
against a real areaDetector IOC as well as the simulated one in :mod:`iocs.ad`.

Happi entry (``loader.devices.area_detector.SimDetectorV34``)::

    args:   ["{{prefix}}"]          # "ad:"
    kwargs: {"name": "{{name}}",
             "write_path_template": "/tmp/ad_sim_data/%Y/%m/%d/",
             "read_path_template":  "/tmp/ad_sim_data/%Y/%m/%d/"}

The write path is where the IOC writes, the read path where this process reads
the same files (equal when IOC and session share a file system).  Both may hold
``strftime`` codes; the IOC creates up to three missing levels (CreateDirectory=-3).
"""
from __future__ import annotations

import logging
import threading
import time

from apstools.devices import AD_plugin_primed, SimDetectorCam_V34, SingleTrigger_V34
from ophyd import ADComponent, EpicsSignalWithRBV, SimDetector, Staged
from ophyd.areadetector.filestore_mixins import FileStoreHDF5IterativeWrite
from ophyd.areadetector.plugins import HDF5Plugin_V34, ImagePlugin_V34, PluginBase

from ..lazy_signals import created_together
from .monitored import monitored

logger = logging.getLogger(__name__)

DEFAULT_PATH_TEMPLATE = "/tmp/ad_sim_data/%Y/%m/%d/"


def prime_plugin(plugin, timeout: float = 10.0) -> None:
    """Push one short frame through ``plugin`` so it knows the array size.

    A file writer refuses to stage (ophyd's ``UnprimedPlugin``) until it has seen
    one frame.  Unlike ``AD_prime_plugin2`` this waits for Acquire's
    put-completion instead of fixed sleeps; settings are restored afterwards.
    """
    cam = plugin.parent.cam
    settings = [(plugin.enable, 1), (cam.array_callbacks, 1), (cam.image_mode, 0),
                (cam.trigger_mode, 0), (cam.acquire_time, 0.001), (cam.acquire_period, 0)]
    original = [(sig, sig.get()) for sig, _ in settings]
    try:
        for sig, value in settings:
            sig.set(value).wait(timeout)
        done = threading.Event()
        cam.acquire.put(1, use_complete=True, callback=lambda *a, **k: done.set())
        if not done.wait(timeout):
            raise TimeoutError(f"{cam.acquire.pvname}: acquisition did not finish in {timeout} s")
        deadline = time.monotonic() + timeout
        while not AD_plugin_primed(plugin):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{plugin.name} did not receive the priming frame")
            time.sleep(0.02)
    finally:
        for sig, value in reversed(original):
            sig.set(value).wait(timeout)


class PluginTypeMonitored(PluginBase):
    """A plugin whose type check reads the monitored ``PluginType_RBV``.

    Why: ophyd checks that a plugin is of its class's type when ``plugin_type``
    connects (``PluginBase._plugin_type_connected``), with ``plugin_type.get()``
    on ophyd's monitor thread: unmonitored, a blocking Channel Access read there
    at every load and every reconnection of the IOC, holding up every monitor
    update meanwhile.  Monitored, the value is already in hand (the loader
    completes a monitored PV's metadata after its first update); the check and
    its warning are ophyd's.
    """

    plugin_type = monitored(PluginBase.plugin_type)

    @plugin_type.sub_meta
    def _plugin_type_connected(self, connected, **kwargs):
        super()._plugin_type_connected(connected=connected, **kwargs)


class SimDetectorCam(SimDetectorCam_V34):
    """apstools' cam, with the four signals every trigger reads monitored.

    Why: ophyd's ``ADTriggerStatus`` reads ``array_counter`` and ``num_images``
    when each trigger starts, and :meth:`SimDetectorV34.frame_timeout` the
    exposure settings; unmonitored, each was a blocking Channel Access read (a
    busy-polled round trip, ~3-4 ms) in every frame of a scan."""

    array_counter = monitored(SimDetectorCam_V34.array_counter)
    num_images = monitored(SimDetectorCam_V34.num_images)
    # and the two the trigger's time limit is computed from (SimDetectorV34.frame_timeout)
    acquire_time = monitored(SimDetectorCam_V34.acquire_time)
    acquire_period = monitored(SimDetectorCam_V34.acquire_period)


class ImagePlugin(PluginTypeMonitored, ImagePlugin_V34):
    """ophyd's image plugin, type-checked without a blocking read."""


class HDF5FileStorePlugin(FileStoreHDF5IterativeWrite, PluginTypeMonitored, HDF5Plugin_V34):
    """HDF5 writer that registers its files with databroker (resource ``AD_HDF5``).

    Primes itself when needed and starts capturing only after every other setting.
    When the IOC cannot open the file (bad path, full or read-only disk), Capture
    never reaches 1; staging then fails within ``CAPTURE_TIMEOUT`` with the IOC's
    WriteMessage instead of waiting forever.
    """

    CAPTURE_TIMEOUT = 10.0
    capture = ADComponent(EpicsSignalWithRBV, "Capture", write_timeout=CAPTURE_TIMEOUT)
    # read by ophyd's DetectorBase.generate_datum at every trigger (see SimDetectorCam)
    enable = monitored(HDF5Plugin_V34.enable)

    def stage(self):
        if not AD_plugin_primed(self):
            logger.info("priming %s", self.name)
            prime_plugin(self)
        self.stage_sigs.move_to_end("capture", last=True)
        try:
            super().stage()
        except TimeoutError as exc:
            message = self.write_message.get()
            raise OSError(f"{self.name}: the IOC did not start writing "
                          f"{self.file_path.get()!r}: {message or exc}") from exc


class SimDetectorV34(SingleTrigger_V34, SimDetector):
    """ADSimDetector as a bluesky detector: one frame per trigger, written to HDF5."""

    #: Lazy signals that staging reads or sets (stage_sigs, ophyd's asyn port check,
    #: the HDF5 writer's primed check and path check), priming sets and a trigger
    #: reads.  Made with the device, so that the load connects them with everything
    #: else; otherwise the first scan connected them one at a time (pyepics'
    #: busy-polled connect, ~25 ms each: 35 of these 61 channels, 0.5-1 s before its
    #: first frame).  ``test_the_first_frame_after_a_load_opens_no_channel``
    #: (tests/test_ad_device.py) fails if a first frame needs a channel not made here.
    MADE_WITH_DEVICE = (
        "cam.acquire", "cam.acquire_period", "cam.acquire_time", "cam.array_callbacks",
        "cam.array_counter", "cam.array_size.array_size_x", "cam.array_size.array_size_y",
        "cam.array_size.array_size_z", "cam.color_mode", "cam.data_type", "cam.image_mode",
        "cam.num_images", "cam.port_name", "cam.sim_mode", "cam.trigger_mode",
        "image.blocking_callbacks", "image.enable", "image.nd_array_port", "image.port_name",
        "hdf1.array_counter", "hdf1.array_size.depth", "hdf1.array_size.height",
        "hdf1.array_size.width", "hdf1.auto_increment", "hdf1.auto_save",
        "hdf1.blocking_callbacks", "hdf1.capture", "hdf1.color_mode", "hdf1.data_type",
        "hdf1.enable", "hdf1.file_name", "hdf1.file_number", "hdf1.file_path",
        "hdf1.file_path_exists", "hdf1.file_template", "hdf1.file_write_mode",
        "hdf1.nd_array_port", "hdf1.num_capture", "hdf1.port_name",
    )

    cam = ADComponent(SimDetectorCam, "cam1:")
    image = ADComponent(ImagePlugin, "image1:")
    hdf1 = ADComponent(HDF5FileStorePlugin, "HDF1:",
                       write_path_template=DEFAULT_PATH_TEMPLATE,
                       read_path_template=DEFAULT_PATH_TEMPLATE)

    def __init__(self, prefix: str, *, name: str,
                 write_path_template: str = DEFAULT_PATH_TEMPLATE,
                 read_path_template: str | None = None, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self.hdf1.write_path_template = write_path_template
        self.hdf1.read_path_template = read_path_template or write_path_template
        self.read_attrs = ["hdf1"]
        self.cam.stage_sigs["num_images"] = 1      # one frame per trigger, whatever the IOC had
        created_together(self, list(self.MADE_WITH_DEVICE))     # made now, connected by the load

    #: seconds a trigger may take beyond its exposures before it fails
    TRIGGER_MARGIN = 30.0

    def frame_timeout(self) -> float:
        """How long one trigger may take: its exposures, plus :attr:`TRIGGER_MARGIN`."""
        cam = self.cam
        per_image = max(cam.acquire_time.get() or 0.0, cam.acquire_period.get() or 0.0)
        return per_image * max(1, cam.num_images.get() or 1) + self.TRIGGER_MARGIN

    def trigger(self):
        """Start one acquisition; the status finishes when Acquire returns to 0.

        Same as ``SingleTrigger.trigger`` but returns the status it created (a fast
        detector can finish, and clear ``self._status``, before that method returns),
        and the status fails after :meth:`frame_timeout` (``StatusTimeoutError``)
        instead of waiting for ever: a scan stops with an error when the IOC never
        ends the acquisition (restarted, or left in Continuous mode).
        """
        if self._staged != Staged.yes:
            raise RuntimeError("This detector is not ready to trigger. "
                               "Call the stage() method before triggering.")
        status = self._status_type(self, timeout=self.frame_timeout())
        self._status = status
        self._acquisition_signal.put(1, wait=False)
        self.generate_datum(self._image_name, time.time(), {})
        return status

    def _acquire_changed(self, value=None, old_value=None, **kwargs):
        """Finish the trigger's status when Acquire falls from 1 to 0.

        ``SingleTrigger._acquire_changed`` finishes the status and only then clears
        ``self._status``, on ophyd's monitor thread.  Finishing it lets the scan go
        on to its next trigger, which can store its new status in between: the
        clear then erased it, and that frame's status never finished (the scan
        hung, 2 of 7 runs of 100 frames once ``trigger`` stopped making blocking
        reads).  The status is taken out first and finished after.
        """
        if old_value == 1 and value == 0:
            status, self._status = self._status, None
            if status is not None and not status.done:     # (done: it timed out)
                status.set_finished()
