"""synApps swait records ``{prefix}userCalc1..10`` with their enable switches.

Fields, types and menus follow the calc module's ``swaitRecord.dbd``.  CALC is
compiled by EPICS's own engine (:mod:`iocs.calc_engine`) when it is written;
the inputs A..L follow any PV through INAN..INLN (:mod:`iocs.links`), and a
changed input processes the record when INxP is Yes and SCAN is I/O Intr, as on
a real IOC.  Processing is skipped while ``userCalcEnable`` or the record's own
``userCalcNEnable`` is Disable.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Optional

from ..calc_engine import CalcError, CalcExpression
from ..links import InputLink, LinkStatus, LinkTarget, OutputLink
from ..records import YES_NO, Record, Scanner

logger = logging.getLogger(__name__)

LETTERS = "ABCDEFGHIJKL"
COUNT = 10
ENABLE_MENU = ("Disable", "Enable")
OOPT_MENU = ("Every Time", "On Change", "When Zero", "When Non-zero", "Transition To Zero",
             "Transition To Non-zero", "Never")
SWAIT_DOPT_MENU = ("Use VAL", "Use DOL")
SWAIT_LINK_MENU = ("PV OK", "PV BAD", "No PV")
SEVERITIES = ("NO_ALARM", "MINOR", "MAJOR", "INVALID")


def enable_record(name: str) -> Record:
    """A ``bo`` record switching a group of calcs (Disable/Enable), enabled at boot."""
    record = Record(name, "bo")
    record.add("VAL", "enum", "Enable", enum_strings=ENABLE_MENU)
    record.add("ZNAM", "string", ENABLE_MENU[0])
    record.add("ONAM", "string", ENABLE_MENU[1])
    return record


def output_allowed(option: str, old: float, new: float) -> bool:
    """The OOPT rule shared by swait and calcout: should this processing write out?"""
    return {
        "Every Time": True,
        "On Change": new != old,
        "When Zero": new == 0,
        "When Non-zero": new != 0,
        "Transition To Zero": old != 0 and new == 0,
        "Transition To Non-zero": old == 0 and new != 0,
    }.get(option, False)


class CalcRecordLogic:
    """What swait and calcout share: compiled CALC, input links, enables, processing lock."""

    def __init__(self, record: Record, enables: list[Record]):
        self.record = record
        self.enables = enables
        self.expression: Optional[CalcExpression] = None
        self.inputs: dict[str, InputLink] = {}
        self.flnk = OutputLink()
        self._lock = asyncio.Lock()

    def enabled(self) -> bool:
        return all(enable["VAL"] == "Enable" for enable in self.enables)

    async def expression_invalid(self) -> bool:
        """True (and the record in CALC/INVALID alarm) when CALC did not compile."""
        if self.expression is not None:
            return False
        await self.record.set("STAT", "CALC")
        await self.record.set("SEVR", "INVALID")
        return True

    def args(self) -> list[float]:
        return [float(self.record[letter]) for letter in LETTERS]

    def compile(self, text: str) -> int:
        """Compile CALC; the record's CLCV-style status (0 good, 1 bad)."""
        try:
            self.expression = CalcExpression(text)
            return 0
        except CalcError as exc:
            logger.warning("%s: %s", self.record.name, exc)
            self.expression = None
            return 1

    def status_choice(self, status: LinkStatus) -> str:
        """Map a link status onto this record type's link-status menu."""
        ok, bad, none = SWAIT_LINK_MENU
        return {LinkStatus.CONNECTED: ok, LinkStatus.LOCAL: ok, LinkStatus.CONSTANT: none,
                LinkStatus.NONE: none}.get(status, bad)

    def make_input(self, letter: str, status_field: str,
                   triggers: Callable[[], bool]) -> InputLink:
        async def on_value(value: float) -> None:
            await self.record.set(letter, value)
            if triggers():
                await self.process()

        async def on_status(status: LinkStatus) -> None:
            await self.record.set(status_field, self.status_choice(status))

        link = InputLink(on_value, on_status)
        self.inputs[letter] = link
        return link

    async def process(self) -> None:
        if not self.enabled():
            return
        async with self._lock:
            await self.record.set("PACT", 1)
            try:
                await self.compute()
            finally:
                await self.record.set("PACT", 0)
        if self.flnk.target.pvname:
            self.flnk.put(1)

    async def compute(self) -> None:   # pragma: no cover - each record type defines it
        raise NotImplementedError

    async def forward_link_changed(self, value) -> None:
        target = LinkTarget.parse(value)
        name = target.pvname.split(".")[0] + ".PROC" if target.pvname else ""
        await self.flnk.set_target(name)

    async def process_put(self, value) -> None:
        await self.process()


class SwaitLogic(CalcRecordLogic):
    """Processing of one swait record."""

    def __init__(self, record: Record, enables: list[Record]):
        super().__init__(record, enables)
        self.output = OutputLink(self._output_status)
        self._pending_output: Optional[asyncio.Task] = None

    async def _output_status(self, status: LinkStatus) -> None:
        await self.record.set("OUTV", self.status_choice(status))

    async def compute(self) -> None:
        record = self.record
        if await self.expression_invalid():
            return
        new = self.expression.evaluate(self.args())
        old = float(record["VAL"])
        for letter in LETTERS:
            await record.set("L" + letter, record[letter])
        await record.set("OVAL", old)
        await record.set("VAL", new)
        await record.set("UDF", 0)
        if record["STAT"] != "NO_ALARM":
            await record.set("STAT", "NO_ALARM")
            await record.set("SEVR", "NO_ALARM")
        if record["OUTN"].strip() and output_allowed(record["OOPT"], old, new):
            data = new if record["DOPT"] == "Use VAL" else float(record["DOLD"])
            delay = float(record["ODLY"])
            if delay > 0:
                self._pending_output = asyncio.get_running_loop().create_task(
                    self._delayed_output(delay, data))
            else:
                self.output.put(data)

    async def _delayed_output(self, delay: float, data: float) -> None:
        await asyncio.sleep(delay)
        self.output.put(data)


def swait_record(name: str, enables: list[Record]) -> tuple[Record, SwaitLogic]:
    """One swait record with every field of ``swaitRecord.dbd`` a client may read."""
    record = Record(name, "swait")
    logic = SwaitLogic(record, enables)

    async def pp(value) -> None:       # pp(TRUE) fields process a Passive record
        if record["SCAN"] == "Passive":
            await logic.process()

    record.add("VAL", "double", 0.0, precision=5)
    record.add("OVAL", "double", 0.0, precision=5)
    record.add("VERS", "float", 1.0, read_only=True)
    record.add("HOPR", "float", 0.0)
    record.add("LOPR", "float", 0.0)
    record.add("INIT", "short", 1, read_only=True)
    record.add("PREC", "short", 5, on_put=_precision_hook(record, ("VAL", "OVAL")))

    async def calc_changed(value) -> None:
        await record.set("CLCV", logic.compile(value))

    record.add("CALC", "string", "0", on_put=calc_changed)
    record.add("CLCV", "long", 0)
    logic.compile("0")
    for letter in LETTERS:
        record.add(letter, "double", 0.0, on_put=pp, precision=5)
        record.add("L" + letter, "double", 0.0, read_only=True)
        status_field = f"IN{letter}V"
        record.add(status_field, "enum", "No PV", enum_strings=SWAIT_LINK_MENU, read_only=True)
        trigger_field = f"IN{letter}P"
        record.add(trigger_field, "enum", "Yes", enum_strings=YES_NO)
        link = logic.make_input(
            letter, status_field,
            lambda f=trigger_field: record["SCAN"] == "I/O Intr" and record[f] == "Yes")
        record.add(f"IN{letter}N", "string", "", on_put=link.set_target)
    record.add("DOLD", "double", 0.0)
    record.add("DOLV", "enum", "No PV", enum_strings=SWAIT_LINK_MENU, read_only=True)
    dol = logic.make_input("DOLD", "DOLV", lambda: False)   # DOL PV -> DOLD, no processing
    record.add("DOLN", "string", "", on_put=dol.set_target)
    record.add("OUTN", "string", "", on_put=logic.output.set_target)
    record.add("OUTV", "enum", "No PV", enum_strings=SWAIT_LINK_MENU, read_only=True)
    record.add("OOPT", "enum", "Every Time", enum_strings=OOPT_MENU)
    record.add("ODLY", "float", 0.0)
    record.add("DOPT", "enum", "Use VAL", enum_strings=SWAIT_DOPT_MENU)
    record.add("OEVT", "short", 0)
    for field in ("ADEL", "MDEL", "ALST", "MLST", "SVAL"):
        record.add(field, "double", 0.0)
    record.add("SIOL", "string", "")
    record.add("SIML", "string", "")
    record.add("SIMM", "enum", "NO", enum_strings=("NO", "YES"))
    record.add("SIMS", "enum", "NO_ALARM", enum_strings=SEVERITIES)
    record.fields["PROC"].on_put = logic.process_put
    record.fields["FLNK"].on_put = logic.forward_link_changed
    Scanner(record, logic.process)
    return record, logic


def _precision_hook(record: Record, fields: tuple):
    async def hook(value) -> None:
        for field in fields:
            await record.fields[field].write_metadata(precision=int(value))
    return hook


def enabled_records(prefix: str, stem: str, count: int, make_record: Callable) -> list:
    """``{prefix}{stem}Enable`` plus ``{stem}1..N`` with their own ``{stem}NEnable``:
    the synApps layout of userCalc and userCalcOut records, each processing only
    while both its group's and its own enable are on."""
    group_enable = enable_record(f"{prefix}{stem}Enable")
    records = [group_enable]
    for n in range(1, count + 1):
        own_enable = enable_record(f"{prefix}{stem}{n}Enable")
        record, _ = make_record(f"{prefix}{stem}{n}", [group_enable, own_enable])
        record.initial("DESC", f"{stem}{n}")
        records += [own_enable, record]
    return records


def build(prefix: str, count: int = COUNT, **options) -> list:
    """``{prefix}userCalcEnable``, ``userCalc1..N`` and ``userCalc1Enable..NEnable``."""
    return enabled_records(prefix, "userCalc", count, swait_record)
