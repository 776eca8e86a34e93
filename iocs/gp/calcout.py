"""EPICS base calcout records ``{prefix}userCalcOut1..10`` with their enable switches.

The field list, types and menus come from caproto's generated calcout
definition (itself from base's ``calcoutRecord.dbd``); CALC and OCAL are
compiled by EPICS's own engine.  Inputs follow any PV through INPA..INPL (a
``CP`` link processes the record on change); OUT is written, after ODLY, with
VAL or OCAL's result as DOPT says, when OOPT allows.
"""
from __future__ import annotations

import asyncio
from typing import Optional

from ..calc_engine import CalcExpression
from ..links import LinkStatus, LinkTarget, OutputLink
from ..records import Record, Scanner
from .swait import LETTERS, CalcRecordLogic, enabled_records, output_allowed

COUNT = 10
LINK_MENU = ("Ext PV NC", "Ext PV OK", "Local PV", "Constant")
_STATUS = {LinkStatus.NOT_CONNECTED: "Ext PV NC", LinkStatus.CONNECTED: "Ext PV OK",
           LinkStatus.LOCAL: "Local PV", LinkStatus.CONSTANT: "Constant",
           LinkStatus.NONE: "Constant"}
_STRING_FIELDS = {"CALC": "0", "OCAL": "0"}     # DBF_STRING over CA, as on an IOC


class CalcoutLogic(CalcRecordLogic):
    """Processing of one calcout record."""

    def __init__(self, record: Record, enables: list[Record]):
        super().__init__(record, enables)
        self.output_expression: Optional[CalcExpression] = None
        self.output = OutputLink(self._output_status)

    def status_choice(self, status: LinkStatus) -> str:
        return _STATUS[status]

    async def _output_status(self, status: LinkStatus) -> None:
        await self.record.set("OUTV", _STATUS[status])

    async def compute(self) -> None:
        record = self.record
        if await self.expression_invalid():
            return
        args = self.args()
        new = self.expression.evaluate(args)
        old = float(record["PVAL"])
        await record.set("VAL", new)
        await record.set("UDF", 0)
        if output_allowed(record["OOPT"], old, new):
            if record["DOPT"] == "Use OCAL":
                oval = self.output_expression.evaluate(args) if self.output_expression else 0.0
            else:
                oval = new
            await record.set("OVAL", oval)
            delay = float(record["ODLY"])
            if delay > 0:
                await record.set("DLYA", 1)
                asyncio.get_running_loop().create_task(self._delayed_output(delay, oval))
            else:
                self.output.put(oval)
            await record.set("POVL", oval)
        await record.set("PVAL", new)
        for letter in LETTERS:
            await record.set("L" + letter, record[letter])

    async def _delayed_output(self, delay: float, value: float) -> None:
        await asyncio.sleep(delay)
        self.output.put(value)
        await self.record.set("DLYA", 0)


def _spec_fields():
    """(name, kind, value, enum_strings, read_only) of the calcout-specific fields."""
    from caproto import ChannelType
    from caproto.server.records import base
    from caproto.server.records.records import RecordFieldGroup

    common = {getattr(p, "pvspec").name for k in RecordFieldGroup.__mro__
              for p in vars(k).values() if hasattr(p, "pvspec")}
    kinds = {"ChannelDouble": "double", "ChannelEnum": "enum", "ChannelString": "string",
             "ChannelChar": "char", "ChannelInteger": "long", "ChannelShort": "short",
             "ChannelFloat": "float", "ChannelByte": "uchar"}
    by_type = {ChannelType.DOUBLE: "double", ChannelType.ENUM: "enum"}
    for klass in reversed(base.CalcoutFields.__mro__):
        for prop in vars(klass).values():
            spec = getattr(prop, "pvspec", None)
            if spec is None or spec.name in common:
                continue
            dtype = spec.dtype
            kind = by_type[dtype] if isinstance(dtype, ChannelType) else kinds[next(
                c for c in dtype.__mro__ if c.__module__ == "caproto._data").__name__]
            yield (spec.name, kind, spec.value, (spec.cls_kwargs or {}).get("enum_strings", ()),
                   bool(spec.read_only), spec.max_length)


def calcout_record(name: str, enables: list[Record]) -> tuple[Record, CalcoutLogic]:
    """One calcout record with every field of base's calcout record."""
    record = Record(name, "calcout")
    logic = CalcoutLogic(record, enables)
    for field, kind, value, strings, read_only, max_length in _spec_fields():
        if field in _STRING_FIELDS:
            record.add(field, "string", _STRING_FIELDS[field])
        elif kind == "char":
            record.add(field, "char", value, max_length=max_length, read_only=read_only)
        else:
            if isinstance(value, bytes):
                value = int(value)
            record.add(field, kind, value, enum_strings=strings, read_only=read_only)
    record.add("PREC", "short", 5)
    record.add("VAL", "double", 0.0, precision=5)

    async def pp(value) -> None:
        if record["SCAN"] == "Passive":
            await logic.process()

    async def calc_changed(value) -> None:
        await record.set("CLCV", logic.compile(value))

    async def ocal_changed(value) -> None:
        try:
            logic.output_expression = CalcExpression(value)
            await record.set("OCLV", 0)
        except ValueError:
            logic.output_expression = None
            await record.set("OCLV", 1)

    record.fields["CALC"].on_put = calc_changed
    record.fields["OCAL"].on_put = ocal_changed
    logic.compile("0")
    logic.output_expression = CalcExpression("0")
    for letter in LETTERS:
        record.fields[letter].on_put = pp
        status_field = f"IN{letter}V"
        record.initial(status_field, "Constant")
        link_field = f"INP{letter}"
        link = logic.make_input(
            letter, status_field,
            lambda f=link_field: _process_on_change(record[f], record["SCAN"]))
        record.fields[link_field].on_put = link.set_target
    record.initial("OUTV", "Constant")
    record.fields["OUT"].on_put = logic.output.set_target
    record.fields["PROC"].on_put = logic.process_put
    record.fields["FLNK"].on_put = logic.forward_link_changed
    Scanner(record, logic.process)
    return record, logic


def _process_on_change(link_text: str, scan: str) -> bool:
    """CP: a new input value processes the record; CPP: only when it is Passive."""
    target = LinkTarget.parse(link_text)
    return "CP" in target.flags or ("CPP" in target.flags and scan == "Passive")


def build(prefix: str, count: int = COUNT, **options) -> list:
    """``{prefix}userCalcOutEnable``, ``userCalcOut1..N`` and their ``...Enable``."""
    return enabled_records(prefix, "userCalcOut", count, calcout_record)
