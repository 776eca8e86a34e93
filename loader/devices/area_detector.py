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

    cam = ADComponent(SimDetectorCam_V34, "cam1:")
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

    def trigger(self):
        """Start one acquisition; the status finishes when AcquireBusy returns to Done.

        Same as ``SingleTrigger.trigger`` but returns the status it created: a fast
        detector can finish (and clear ``self._status``) before that method returns.
        """
        if self._staged != Staged.yes:
            raise RuntimeError("This detector is not ready to trigger. "
                               "Call the stage() method before triggering.")
        status = self._status_type(self)
        self._status = status
        self._acquisition_signal.put(1, wait=False)
        self.generate_datum(self._image_name, time.time(), {})
        return status
