"""``ScalerCH`` whose channel names follow the IOC's NMn fields by monitor.

ophyd's ``ScalerChannel`` reads its name (``.NMn``) with a blocking get in its
constructor: 32 connections made one after the other, each waiting on a
channel search and on threads busy building the other devices (~2 s of a
cold start).  Here each channel takes its name when the NMn value arrives, so
the 32 connect together with everything else, and a name changed at the IOC
renames the channel (the TODO in ophyd's ``ScalerChannel``), a name cleared
there too.  But an IOC that comes back without its names (restarted, no
autosave) does not un-name a channel mid-session: its readings would have no
name and every scan would be refused; ``match_names()`` (``select_channels``)
still reads the names as they are.
Everything else is ophyd's.
"""
from __future__ import annotations

import logging
from collections import OrderedDict

from ophyd import DynamicDeviceComponent, Kind
from ophyd.scaler import ScalerCH as _OphydScalerCH
from ophyd.scaler import ScalerChannel

logger = logging.getLogger(__name__)

CHANNELS = range(1, 33)  # what ophyd's ScalerCH declares (the record serves 32)


class MonitoredNameChannel(ScalerChannel):
    """A scaler channel named from its NMn field whenever that value arrives."""

    def __init__(self, prefix: str, ch_num: int, **kwargs):
        self._named = False          # the IOC has given this channel a name
        self._came_back = False      # NMn was disconnected: its next value is a restarted IOC's
        super().__init__(prefix, ch_num, **kwargs)
        self.chname.subscribe(self._name_from_ioc, event_type=self.chname.SUB_VALUE, run=False)
        self.chname.subscribe(self._name_connection, event_type=self.chname.SUB_META, run=False)

    def match_name(self) -> None:
        """Read the name now if connected; before that the monitor names the channel."""
        if self.chname.connected:
            super().match_name()
            self._named = bool(self.s.name)

    def _name_connection(self, connected=None, **kwargs) -> None:
        if connected is False:
            self._came_back = True

    def _name_from_ioc(self, value: str = "", **kwargs) -> None:
        came_back, self._came_back = self._came_back, False
        if not value and self._named and came_back:
            logger.warning("%s: the restarted IOC has no name for %s; the channel keeps "
                           "it (bl.setup_again() writes the names again)",
                           self.chname.pvname, self.s.name)
            return
        self.s.name = value
        self._named = bool(value)


class ScalerCH(_OphydScalerCH):
    """``ophyd.scaler.ScalerCH`` with channels that do not block construction."""

    channels = DynamicDeviceComponent(OrderedDict(
        (f"chan{k:02d}", (MonitoredNameChannel, "", {"ch_num": k, "kind": Kind.normal}))
        for k in CHANNELS))
