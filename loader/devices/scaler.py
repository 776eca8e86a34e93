"""``ScalerCH`` whose channel names follow the IOC's NMn fields by monitor.

ophyd's ``ScalerChannel`` reads its name (``.NMn``) with a blocking get in its
constructor: 32 connections made one after the other, each waiting on a
channel search and on threads busy building the other devices (~2 s of a
cold start).  Here each channel takes its name when the NMn value arrives, so
the 32 connect together with everything else, and a name changed at the IOC
renames the channel (the TODO in ophyd's ``ScalerChannel``).  Everything else,
``select_channels`` and ``match_names`` included, is ophyd's.
"""
from __future__ import annotations

from collections import OrderedDict

from ophyd import DynamicDeviceComponent, Kind
from ophyd.scaler import ScalerCH as _OphydScalerCH
from ophyd.scaler import ScalerChannel

CHANNELS = range(1, 33)  # what ophyd's ScalerCH declares (the record serves 32)


class MonitoredNameChannel(ScalerChannel):
    """A scaler channel named from its NMn field whenever that value arrives."""

    def __init__(self, prefix: str, ch_num: int, **kwargs):
        super().__init__(prefix, ch_num, **kwargs)
        self.chname.subscribe(self._name_from_ioc, event_type=self.chname.SUB_VALUE, run=False)

    def match_name(self) -> None:
        """Read the name now if connected; before that the monitor names the channel."""
        if self.chname.connected:
            super().match_name()

    def _name_from_ioc(self, value: str = "", **kwargs) -> None:
        self.s.name = value


class ScalerCH(_OphydScalerCH):
    """``ophyd.scaler.ScalerCH`` with channels that do not block construction."""

    channels = DynamicDeviceComponent(OrderedDict(
        (f"chan{k:02d}", (MonitoredNameChannel, "", {"ch_num": k, "kind": Kind.normal}))
        for k in CHANNELS))
