"""The synApps scaler record ``{prefix}scaler1``: a 16-channel counter with a 10 MHz clock.

Channel 1 counts the timebase (FREQ x T); channels 2..NCH count at steady,
slightly noisy rates.  Channels 1..32 are served because ``ophyd.scaler.ScalerCH``
connects all 32.  CNT=Count counts for TP seconds (after DLY) and the put
completes only when counting ends and CNT is back to Done; a gated channel
(Gn=Y) reaching its preset PRn ends the count early; CNT=Done stops it.
CONT=AutoCount counts TP1 seconds repeatedly (DLY1 apart) between user counts.
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Optional

from ..records import Record

logger = logging.getLogger(__name__)

CHANNELS = 32          # served, as ophyd expects
NCH = 16               # present in the "hardware"
FREQ = 1e7
CNT_MENU = ("Done", "Count")
CONT_MENU = ("OneShot", "AutoCount")
GATE_MENU = ("N", "Y")
DIR_MENU = ("Up", "Dn")


class Scaler:
    """Counting behaviour of one scaler record."""

    def __init__(self, name: str, seed: Optional[int] = None):
        self.record = record = Record(name, "scaler")
        rng = random.Random(seed)
        #: counts per second of channels 2..NCH (channel 1 is the clock)
        self.rates = {n: rng.uniform(2e3, 2e5) for n in range(2, NCH + 1)}
        self._noise = rng
        self._stop = asyncio.Event()
        self._user_count: Optional[asyncio.Task] = None
        self._auto: Optional[asyncio.Task] = None

        record.add("VAL", "double", 0.0)
        record.add("FREQ", "double", FREQ, precision=3, on_put=self._freq_changed)
        record.add("CNT", "enum", "Done", enum_strings=CNT_MENU, on_put=self._cnt_put)
        record.add("PCNT", "enum", "Done", enum_strings=CNT_MENU, read_only=True)
        record.add("SS", "short", 0, read_only=True)
        record.add("US", "short", 0, read_only=True)
        record.add("CONT", "enum", "OneShot", enum_strings=CONT_MENU, on_put=self._cont_put)
        record.add("DLY", "float", 0.0, precision=3)
        record.add("DLY1", "float", 0.0, precision=3)
        record.add("T", "double", 0.0, precision=3, units="sec")
        record.add("TP", "double", 1.0, precision=3, units="sec", on_put=self._tp_put)
        record.add("TP1", "double", 1.0, precision=3, units="sec")
        record.add("RATE", "float", 10.0, precision=1)
        record.add("RAT1", "float", 10.0, precision=1)
        record.add("EGU", "string", "sec")
        record.add("PREC", "short", 3)
        record.add("NCH", "short", NCH, read_only=True)
        record.add("COUT", "string", "")
        record.add("COUTP", "string", "")
        for n in range(1, CHANNELS + 1):
            record.add(f"S{n}", "long", 0, read_only=True)
            record.add(f"NM{n}", "string", "")
            record.add(f"PR{n}", "long", int(FREQ) if n == 1 else 0,
                       on_put=self._pr1_put if n == 1 else None)
            record.add(f"G{n}", "enum", "Y" if n == 1 else "N", enum_strings=GATE_MENU)
            record.add(f"D{n}", "enum", "Up", enum_strings=DIR_MENU)
        record.startup_callbacks.append(self._startup)

    # --- field hooks -----------------------------------------------------------------
    async def _startup(self) -> None:
        await self._cont_put(self.record["CONT"])

    async def _tp_put(self, value) -> None:
        await self.record.set("PR1", int(round(float(value) * float(self.record["FREQ"]))))
        await self.record.set("G1", "Y")

    async def _pr1_put(self, value) -> None:
        await self.record.set("TP", float(value) / float(self.record["FREQ"]))

    async def _freq_changed(self, value) -> None:
        await self._tp_put(self.record["TP"])

    async def _cnt_put(self, value) -> None:
        if value == "Done":
            self._stop.set()
            return
        if self._user_count is None or self._user_count.done():
            if self._auto is not None:
                self._auto.cancel()
            self._stop.clear()
            self._user_count = asyncio.get_running_loop().create_task(self._count_once())
        try:
            await asyncio.shield(self._user_count)     # put-completion: when counting ends
        except asyncio.CancelledError:
            pass

    async def _cont_put(self, value) -> None:
        if self._auto is not None:
            self._auto.cancel()
            self._auto = None
        if value == "AutoCount":
            self._auto = asyncio.get_running_loop().create_task(self._autocount())

    # --- counting --------------------------------------------------------------------
    def counts(self, elapsed: float, factors: dict[int, float]) -> dict[int, int]:
        """Channel values after ``elapsed`` seconds of counting."""
        values = {1: int(round(float(self.record["FREQ"]) * elapsed))}
        for n, rate in self.rates.items():
            values[n] = int(rate * factors[n] * elapsed)
        return values

    async def _publish(self, values: dict[int, int], elapsed: float) -> None:
        for n, value in values.items():
            await self.record.set(f"S{n}", value)
        await self.record.set("T", elapsed)

    async def _run(self, preset_time: float, rate_field: str, stop: asyncio.Event,
                   gated: bool) -> None:
        """Count until the time preset (or, if ``gated``, a channel preset) or ``stop``."""
        record, loop = self.record, asyncio.get_running_loop()
        factors = {n: 1.0 + self._noise.gauss(0.0, 0.02) for n in self.rates}
        time_gated = not gated or record["G1"] == "Y"
        await self._publish({n: 0 for n in range(1, NCH + 1)}, 0.0)
        start = loop.time()
        while True:
            rate = float(record[rate_field])
            wait = min(0.1, 1.0 / rate) if rate > 0 else 0.05
            if time_gated:
                wait = min(wait, max(0.0, start + preset_time - loop.time()))
            stopped = await _wait(stop, wait)
            elapsed = loop.time() - start
            if time_gated:
                elapsed = min(elapsed, preset_time)
            values = self.counts(elapsed, factors)
            reached = time_gated and elapsed >= preset_time
            if gated:
                for n in range(2, NCH + 1):      # a gated channel stops the count at its preset
                    preset = int(record[f"PR{n}"])
                    if record[f"G{n}"] == "Y" and preset > 0 and values[n] >= preset:
                        values[n], reached = preset, True
            done = stopped or reached
            if done or rate > 0:
                await self._publish(values, elapsed)
            if done:
                return

    async def _count_once(self) -> None:
        record = self.record
        try:
            if not await _wait(self._stop, float(record["DLY"])):
                await record.set("SS", 1)
                await self._run(float(record["TP"]), "RATE", self._stop, gated=True)
        except Exception:
            logger.exception("scaler count failed")
        finally:
            await record.set("SS", 0)
            await record.set("CNT", "Done")
            await record.set("PCNT", "Done")
            if record["CONT"] == "AutoCount":
                await self._cont_put("AutoCount")

    async def _autocount(self) -> None:
        """Background counting (AutoCount) between user counts."""
        record = self.record
        while True:
            await asyncio.sleep(max(float(record["DLY1"]), 0.0) or 0.1)
            if record["CNT"] == "Count":
                return
            await self._run(max(float(record["TP1"]), 0.01), "RAT1", asyncio.Event(), gated=False)


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """True if ``event`` is set within ``timeout`` seconds."""
    if event.is_set():
        return True
    if timeout <= 0:
        return False
    try:
        await asyncio.wait_for(event.wait(), timeout)
        return True
    except asyncio.TimeoutError:
        return False


def build(prefix: str, **options) -> list:
    """``{prefix}scaler1``."""
    return [Scaler(f"{prefix}scaler1").record]
