"""The synApps "xxx" general-purpose soft PVs: ``{prefix}gp:int1..20``, ``float``, ``text``, ``bit``.

As the APS training IOC loads ``general_purpose.db`` (with ``R=gp:``): each
number N gives an ``ao`` (``floatN``), a ``bo`` (``bitN``, ``off``/``on``), a
``longout`` (``intN``), a ``stringout`` (``textN``) and a 1024-character
``waveform`` (``longtextN``).  They are scratch PVs that hold what a client
writes; the records' fields (``.EGU``, ``.DESC``, ...) are served too.
"""
from __future__ import annotations

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

COUNT = 20
BIT_STRINGS = ("off", "on")


def _soft_pv_group(count: int) -> type[PVGroup]:
    """A PVGroup class with ``count`` PVs of each kind (names relative to ``gp:``)."""
    body = {}
    for n in range(1, count + 1):
        body[f"float{n}"] = pvproperty(name=f"float{n}", value=0.0, record="ao", precision=3,
                                       doc="general purpose float")
        body[f"bit{n}"] = pvproperty(name=f"bit{n}", value="off", dtype=ChannelType.ENUM,
                                     enum_strings=BIT_STRINGS, record="bo",
                                     doc="general purpose bit")
        body[f"int{n}"] = pvproperty(name=f"int{n}", value=0, dtype=ChannelType.LONG,
                                     record="longout", doc="general purpose integer")
        body[f"text{n}"] = pvproperty(name=f"text{n}", value="", dtype=ChannelType.STRING,
                                      record="stringout", doc="general purpose text")
        body[f"longtext{n}"] = pvproperty(name=f"longtext{n}", value="", dtype=ChannelType.CHAR,
                                          max_length=1024,
                                          record="waveform", doc="general purpose long text")
    return type("GeneralPurposePVs", (PVGroup,), body)


def build(prefix: str, count: int = COUNT, **options) -> list[PVGroup]:
    """``{prefix}gp:float1..{count}`` and the other kinds."""
    return [_soft_pv_group(count)(prefix=f"{prefix}gp:")]
