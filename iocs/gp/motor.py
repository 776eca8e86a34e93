"""Simulated EPICS motor records ``{prefix}m1..m{count}`` (a soft "motorSim" axis).

Every field of the motor record is served with the type and enum strings of
caproto's own definition (:class:`caproto.server.records.MotorFields`), but a
field's channel is only created when a client first asks for it: one IOC can
then hold a thousand motors (~150 fields each) without building 150 000
channels up front.  The record keeps its state in a plain dict; a field channel,
once created, mirrors it.

Behaviour follows the motor record: a put to VAL (or DVAL, RVAL, RLV, TWF/TWR,
HOMF/HOMR, JOGF/JOGR) starts a move with a trapezoid velocity profile (VELO,
ACCL); RBV/DRBV/RRBV update at ``TICK_HZ`` while moving; DMOV goes 1→0→1 (even
for a zero-length or refused move) and the put to VAL completes only then.
Soft limits (HLM/LLM in user, DHLM/DLLM in dial, also VAL's control limits)
refuse a move with LVIO=1; hardware limit switches sit at ``±travel_steps``
raw steps (so, as on motorSim, a finer MRES shrinks the travel range).
Positions are whole steps of MRES = UREV/SREV.  Changing MRES keeps the dial
position (the raw step count is rescaled) -- a simplification of real hardware.
"""
from __future__ import annotations

import asyncio
import math
from typing import Any

from caproto import ChannelDouble
from caproto.server import PVGroup
from caproto.server.records import MotorFields

TICK_HZ = 20.0
# motor status (MSTA) bits, as in the motor record's documentation
MSTA_DIRECTION, MSTA_DONE, MSTA_PLUS_LS, MSTA_HOME = 0x1, 0x2, 0x4, 0x8
MSTA_MOVING, MSTA_GAIN_SUPPORT, MSTA_MINUS_LS, MSTA_HOMED = 0x400, 0x800, 0x2000, 0x4000

# field name (e.g. "RBV") -> caproto's PVSpec for it
FIELD_SPECS = {prop.pvspec.name: prop.pvspec for prop in MotorFields._pvs_.values()}
# fields holding a position or distance: they carry PREC and EGU as metadata
_POSITION_FIELDS = frozenset(
    "VAL DVAL RBV DRBV HLM LLM DHLM DLLM OFF TWV RLV DIFF BDST RDBD SPDB HOPR LOPR"
    " MRES ERES RRES UREV".split())
_COMMAND_FIELDS = ("STOP", "TWF", "TWR", "RLV")   # momentary: back to 0 once acted on

DEFAULTS: dict[str, Any] = {
    "RTYP": "motor", "DTYP": "Soft Channel", "EGU": "degrees", "PREC": 4,
    "VELO": 1.0, "ACCL": 0.2, "VBAS": 0.0, "VMAX": 0.0, "HVEL": 1.0, "JVEL": 1.0,
    "JAR": 0.0, "BVEL": 1.0, "BACC": 0.2, "BDST": 0.0, "SBAS": 0.0,
    "SREV": 200, "UREV": 2.0, "MRES": 0.01, "ERES": 0.01, "RRES": 1.0,
    "DHLM": 100.0, "DLLM": -100.0, "HLM": 100.0, "LLM": -100.0, "HOPR": 100.0, "LOPR": -100.0,
    "VAL": 0.0, "DVAL": 0.0, "RVAL": 0, "RBV": 0.0, "DRBV": 0.0, "RRBV": 0,
    "OFF": 0.0, "DIR": "Pos", "FOFF": "Variable", "SET": "Use",
    "DMOV": 1, "MOVN": 0, "LVIO": 0, "TDIR": 0, "CDIR": 0, "HLS": 0, "LLS": 0,
    "RHLS": 0, "RLLS": 0, "ATHM": 0, "MISS": 0, "DIFF": 0.0, "RDIF": 0,
    "STOP": 0, "SPMG": "Go", "TWV": 1.0, "TWF": 0, "TWR": 0, "HOMF": 0, "HOMR": 0,
    "JOGF": 0, "JOGR": 0, "RLV": 0.0, "CNEN": "Enable", "DLY": 0.0,
    "RDBD": 0.01, "SPDB": 0.0, "RTRY": 0, "NTM": "YES", "UEIP": "No", "URIP": "No",
    "MSTA": MSTA_DONE | MSTA_GAIN_SUPPORT, "STAT": "NO_ALARM", "SEVR": "NO_ALARM",
}


def trapezoid(distance: float, velocity: float, accel_time: float):
    """Duration and position-vs-time of a move of ``distance`` (>= 0).

    Accelerates for ``accel_time`` to ``velocity``, cruises, decelerates; a
    short move never reaches full speed (triangle profile).
    """
    velocity = max(abs(velocity), 1e-9)
    accel_time = max(accel_time, 0.0)
    if accel_time == 0.0:
        total = distance / velocity
        return total, lambda t: min(distance, velocity * t)
    accel = velocity / accel_time
    if distance >= velocity * accel_time:          # reaches full speed
        ramp = accel_time
        peak = velocity
    else:                                           # triangle
        ramp = math.sqrt(distance / accel)
        peak = accel * ramp
    ramp_dist = 0.5 * accel * ramp * ramp
    cruise = (distance - 2 * ramp_dist) / peak if peak > 0 else 0.0
    total = 2 * ramp + cruise

    def position(t: float) -> float:
        if t <= 0:
            return 0.0
        if t < ramp:
            return 0.5 * accel * t * t
        if t < ramp + cruise:
            return ramp_dist + peak * (t - ramp)
        if t < total:
            left = total - t
            return distance - 0.5 * accel * left * left
        return distance

    return total, position


class MotorRecord(ChannelDouble):
    """One motor record: this channel is VAL; other fields are made on demand."""

    def __init__(self, name: str, travel_steps: int = 32000, **overrides: Any):
        self.v: dict[str, Any] = dict(DEFAULTS, NAME=name, **overrides)
        if "MRES" not in overrides:
            self.v["MRES"] = self.v["UREV"] / self.v["SREV"]
        super().__init__(value=float(self.v["VAL"]), precision=self.v["PREC"],
                         units=self.v["EGU"], reported_record_type="motor")
        self.name = name
        self.travel_steps = travel_steps
        self._fields: dict[str, Any] = {}
        self._task: asyncio.Task | None = None
        self._idle: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._goal: tuple[float, float] | None = None   # (dial target, velocity)
        self._goal_changed = False
        self._halt = False
        self._keep_target = False
        self._finishing = False      # the motion task is past its last look at the goal
        self._pending_redefine = False
        if "S" not in overrides and self.v["UREV"]:
            self.v["S"] = self.v["VELO"] / self.v["UREV"]
        self._sync_limits_metadata()

    # ----------------------------------------------------------- fields
    def get_field(self, field: str):
        """The channel of ``field`` (created on first use); KeyError if unknown."""
        if not field or field == "VAL":
            return self
        channel = self._fields.get(field)
        if channel is None:
            channel = self._fields[field] = self._make_field(field)
        return channel

    def _make_field(self, field: str):
        spec = FIELD_SPECS[field]          # KeyError: not a motor field
        enum_strings = (spec.cls_kwargs or {}).get("enum_strings")
        value = self.v.get(field, spec.value)
        if enum_strings is not None and not isinstance(value, str):
            value = enum_strings[int(value or 0)]
        # caproto's own hooks (e.g. DESC/PREC linked to a parent PVGroup) are
        # replaced by this record's behaviour
        spec = spec._replace(name=f"{self.name}.{field}", value=value, get=None,
                             startup=None, shutdown=None, scan=None,
                             put=None if spec.read_only else self._on_field_put)
        if value is None:
            spec = spec._replace(value=spec.get_data_class().default_value)
        cls, kwargs = spec.get_instantiation_info(None)
        if issubclass(cls, ChannelDouble) and field in _POSITION_FIELDS:
            kwargs.update(precision=self.v["PREC"], units=self.v["EGU"])
        channel = cls(**kwargs)
        channel.__doc__ = spec.doc
        return channel

    async def _post(self, **changes: Any) -> None:
        """Change state and publish to any field channel a client has opened."""
        for field, value in changes.items():
            self.v[field] = value
            channel = self._fields.get(field)
            if channel is not None and channel.value != value:
                await channel.write(value, verify_value=False)

    def _events(self):
        if self._idle is None:
            self._idle, self._wake = asyncio.Event(), asyncio.Event()
            self._idle.set()
        return self._idle, self._wake

    # ------------------------------------------------------ coordinates
    @property
    def _sign(self) -> int:
        return -1 if self.v["DIR"] == "Neg" else 1

    def _user(self, dial: float) -> float:
        return round(dial * self._sign + self.v["OFF"], 12)

    def _dial(self, user: float) -> float:
        return round((user - self.v["OFF"]) * self._sign, 12)

    def _steps(self, dial: float) -> int:
        return int(round(dial / self.v["MRES"]))

    def _quantised(self, dial: float) -> float:
        return round(self._steps(dial) * self.v["MRES"], 12)

    def _hw_range(self) -> tuple[float, float]:
        span = abs(self.travel_steps * self.v["MRES"])
        return -span, span

    def _user_limits(self) -> tuple[float, float]:
        hi, lo = self.v["DHLM"], self.v["DLLM"]
        if self._sign > 0:
            return self._user(lo), self._user(hi)
        return self._user(hi), self._user(lo)

    def _sync_limits_metadata(self) -> None:
        low, high = self.v["LLM"], self.v["HLM"]
        self._data.update(upper_ctrl_limit=high, lower_ctrl_limit=low,
                          upper_disp_limit=high, lower_disp_limit=low)

    async def _publish_user_coordinates(self) -> None:
        """After OFF/DIR/dial-limit changes: recompute every user-coordinate field."""
        # Order matters to ophyd: a VAL monitor carries the client's cached
        # control limits, so VAL goes first; the HLM/LLM monitors that follow
        # make ophyd re-read VAL's (already updated) control limits.
        low, high = self._user_limits()
        self.v.update(LLM=low, HLM=high)
        self._sync_limits_metadata()
        await self.write(self._user(self.v["DVAL"]), verify_value=False)
        await self._post(RBV=self._user(self.v["DRBV"]), LLM=low, HLM=high, LOPR=low, HOPR=high)
        await self._update_switches()

    # --------------------------------------------------- CA put: VAL
    async def verify_value(self, value):
        """A client put VAL: redefine (SET mode) or move; refused moves keep VAL."""
        value = float(value)
        if self.v["SET"] == "Set":
            self._pending_redefine = True      # done once VAL is stored (ordering)
            return value
        accepted = await self._command(value)
        return value if accepted else self.value

    async def write_from_dbr(self, *args, **kwargs):
        """Put-completion: the put returns once the motor is done moving."""
        self._pending_redefine = False
        result = await super().write_from_dbr(*args, **kwargs)
        if self._pending_redefine:
            self._pending_redefine = False
            await self._redefine(self.value)
        idle, _ = self._events()
        await idle.wait()
        return result

    # ------------------------------------------------ CA put: fields
    async def _on_field_put(self, channel, value):
        """caproto putter of every writable field: apply the record's behaviour."""
        field = channel.pvname.rsplit(".", 1)[1]
        old = self.v.get(field)
        self.v[field] = value
        handler = getattr(self, f"_put_{field}", None)
        if handler is not None:
            value = await handler(value, old)      # may refuse: returns ``old``
            self.v[field] = value
        if field in _COMMAND_FIELDS and value:
            asyncio.get_running_loop().create_task(self._rearm(field))
        return value

    async def _rearm(self, field: str) -> None:
        """Reset a momentary command field once its own put has been stored."""
        await asyncio.sleep(0.01)
        self.v[field] = 0
        await self._fields[field].write(0, verify_value=False)

    async def _put_DVAL(self, value, old):
        if self.v["SET"] == "Set":
            await self._redefine(self._user(value))
        elif not await self._command(self._user(value), from_val=False):
            return old
        return value

    async def _put_RVAL(self, value, old):
        dial = value * self.v["MRES"]
        if not await self._command(self._user(dial), from_val=False):
            return old
        return value

    async def _put_RLV(self, value, old):
        await self._command(self.value + value, from_val=False)
        return value

    async def _put_TWF(self, value, old):
        if value:
            await self._command(self.value + self.v["TWV"], from_val=False)
        return value

    async def _put_TWR(self, value, old):
        if value:
            await self._command(self.value - self.v["TWV"], from_val=False)
        return value

    async def _put_HOMF(self, value, old):
        if value:
            await self._command(self._user(0.0), from_val=False, homing=True)
        return value

    _put_HOMR = _put_HOMF

    async def _put_JOGF(self, value, old):
        await self._jog(+1 if value else 0)
        return value

    async def _put_JOGR(self, value, old):
        await self._jog(-1 if value else 0)
        return value

    async def _put_STOP(self, value, old):
        if value:
            await self._stop(keep_target=False)
        return value

    async def _put_SPMG(self, value, old):
        if value in ("Stop", "Pause"):
            await self._stop(keep_target=(value == "Pause"))
        elif old in ("Pause", "Stop") and value in ("Move", "Go"):
            dial = self.v["DVAL"]
            if self._quantised(dial) != self.v["DRBV"]:
                self._start_motion(self._quantised(dial), self.v["VELO"])
        return value

    async def _put_OFF(self, value, old):
        self.v["OFF"] = float(value)
        await self._publish_user_coordinates()
        return value

    async def _put_DIR(self, value, old):
        self.v["DIR"] = value
        await self._publish_user_coordinates()
        return value

    async def _put_HLM(self, value, old):
        return await self._put_user_limit("HLM", value)

    async def _put_LLM(self, value, old):
        return await self._put_user_limit("LLM", value)

    async def _put_user_limit(self, field: str, value: float) -> float:
        dial = self._dial(value)
        high_in_dial = (field == "HLM") == (self._sign > 0)
        await self._post(**{"DHLM" if high_in_dial else "DLLM": dial})
        await self._publish_user_coordinates()
        return value

    async def _put_DHLM(self, value, old):
        self.v["DHLM"] = value
        await self._publish_user_coordinates()
        return value

    _put_DLLM = _put_DHLM

    async def _put_SREV(self, value, old):
        if value > 0:
            await self._set_resolution(self.v["UREV"] / value)
        return value

    async def _put_UREV(self, value, old):
        if self.v["SREV"] > 0:
            await self._set_resolution(value / self.v["SREV"])
        await self._post(S=self.v["VELO"] / value if value else 0.0)
        return value

    async def _put_MRES(self, value, old):
        if value == 0:
            return old
        await self._set_resolution(value)
        return value

    async def _put_VELO(self, value, old):
        urev = self.v["UREV"]
        await self._post(S=value / urev if urev else 0.0)
        return value

    async def _put_S(self, value, old):
        await self._post(VELO=value * self.v["UREV"])
        return value

    async def _put_PREC(self, value, old):
        await self._set_display(precision=int(value))
        return value

    async def _put_EGU(self, value, old):
        await self._set_display(units=value)
        return value

    async def _set_display(self, **metadata) -> None:
        await self.write_metadata(**metadata)
        for field, channel in self._fields.items():
            if field in _POSITION_FIELDS and isinstance(channel, ChannelDouble):
                await channel.write_metadata(**metadata)

    async def _set_resolution(self, mres: float) -> None:
        """New MRES (and UREV = MRES*SREV): dial position kept, raw steps rescaled."""
        self.v["MRES"] = mres
        await self._post(MRES=mres, UREV=round(mres * self.v["SREV"], 12),
                         ERES=mres, RVAL=self._steps(self.v["DVAL"]))
        await self._set_readback(self.v["DRBV"])

    # ----------------------------------------------------- behaviour
    async def _redefine(self, user: float) -> None:
        """SET mode: make the current position read ``user`` without moving."""
        if self.v["FOFF"] == "Variable":
            self.v["OFF"] = round(user - self.v["DRBV"] * self._sign, 12)
            await self._post(OFF=self.v["OFF"])
        else:
            dial = self._quantised(self._dial(user))
            await self._post(DVAL=dial, RVAL=self._steps(dial))
            await self._set_readback(dial)
        await self._post(DVAL=self.v["DRBV"])
        await self._publish_user_coordinates()

    async def _command(self, user: float, from_val: bool = True, homing: bool = False) -> bool:
        """Request a move to ``user``; False (LVIO=1) if beyond the soft limits."""
        dial = self._dial(user)
        low, high = self.v["DLLM"], self.v["DHLM"]
        if not homing and low != high and not (low <= dial <= high):
            await self._post(LVIO=1)
            await self._pulse_done()
            return False
        await self._post(LVIO=0, DVAL=dial, RVAL=self._steps(dial), DIFF=dial - self.v["DRBV"])
        if not from_val:
            await self.write(user, verify_value=False)
        if self.v["SPMG"] in ("Stop", "Pause"):
            await self._pulse_done()
            return True
        velocity = self.v["HVEL"] if homing else self.v["VELO"]
        self._start_motion(self._quantised(dial), velocity)
        return True

    async def _jog(self, direction: int) -> None:
        if direction == 0:
            await self._stop(keep_target=False)
            return
        low, high = self._hw_range()
        target = high if direction * self._sign > 0 else low
        self._start_motion(target, self.v["JVEL"])

    async def _stop(self, keep_target: bool) -> None:
        if self._task is not None and not self._task.done():
            self._halt = True
            self._keep_target = keep_target
            self._events()[1].set()

    async def _pulse_done(self) -> None:
        """DMOV 1→0→1 without motion (refused or deferred request)."""
        if self._task is None or self._task.done() or self._finishing:
            await self._post(DMOV=0)
            await self._post(DMOV=1)

    def _start_motion(self, dial_target: float, velocity: float) -> None:
        idle, wake = self._events()
        self._goal = (dial_target, velocity)
        self._goal_changed = True
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            idle.clear()
            self._halt = False
            self._task = loop.create_task(self._motion())
        elif self._finishing:
            # DMOV=1 is out: a client told "done" may already be asking for the
            # next move, which the ending task would never see.  Move again after it.
            self._finishing = False
            self._task = loop.create_task(self._motion(after=self._task))
        else:
            wake.set()

    async def _motion(self, after: asyncio.Task | None = None) -> None:
        """Move (DMOV 0) until the goal, a stop or a switch, then DMOV 1; a new
        goal while finishing (DLY) keeps DMOV at 0 and moves on."""
        idle, _ = self._events()
        if after is not None:
            await asyncio.wait([after])
        try:
            await self._post(DMOV=0)
            while True:
                hit = await self._drive()
                if await self._finish(stopped=self._halt, hit=hit):
                    break
        finally:
            if self._task is asyncio.current_task():      # else a successor took over
                self._halt = False
                self._finishing = False
                self._task = None
                if self.v["DMOV"] != 1:
                    await self._post(DMOV=1)
                idle.set()

    async def _drive(self) -> bool:
        """Drive the readback along the profile; True if a limit switch stopped it."""
        _, wake = self._events()
        loop = asyncio.get_running_loop()
        hit = False
        while True:
            wake.clear()
            if self._goal_changed:
                self._goal_changed = False
                target, velocity = self._goal
                start = self.v["DRBV"]
                hw_low, hw_high = self._hw_range()
                direction = 1 if target >= start else -1
                duration, profile = trapezoid(abs(target - start), velocity, self.v["ACCL"])
                t0 = loop.time()
                tdir = int(direction * self._sign > 0)
                await self._post(TDIR=tdir, CDIR=int(direction > 0), MOVN=1, ATHM=0)
                await self._post_status()
            if self._halt:
                return hit
            elapsed = loop.time() - t0
            dial = start + direction * profile(elapsed)
            if (direction > 0 and dial >= hw_high) or (direction < 0 and dial <= hw_low):
                dial = min(max(dial, hw_low), hw_high)
                hit = True
            await self._set_readback(self._quantised(dial))
            if (hit or elapsed >= duration) and not self._goal_changed:
                return hit
            if self._halt or self._goal_changed:
                continue
            tick = max(0.0, min(1.0 / TICK_HZ, duration - elapsed))
            try:
                await asyncio.wait_for(wake.wait(), tick)    # a stop or new goal wakes us
            except asyncio.TimeoutError:
                pass

    async def _finish(self, stopped: bool, hit: bool) -> bool:
        """End the move; False (DMOV still 0) if a new goal came meanwhile."""
        await self._post(MOVN=0)
        if (stopped and not self._keep_target) or hit or self.v["JOGF"] or self.v["JOGR"]:
            dial = self.v["DRBV"]
            await self._post(DVAL=dial, RVAL=self._steps(dial), DIFF=0.0)
            await self.write(self._user(dial), verify_value=False)
        self._keep_target = False
        if self.v["HOMF"] or self.v["HOMR"]:
            await self._post(ATHM=int(self.v["DRBV"] == 0.0), HOMF=0, HOMR=0)
        if self.v["SPMG"] == "Move":
            await self._post(SPMG="Pause")
        if self.v["DLY"] > 0:
            await asyncio.sleep(self.v["DLY"])
        if self._goal_changed and not self._halt:
            return False
        self._finishing = True
        await self._post(DMOV=1)
        await self._post_status()
        return True

    async def _set_readback(self, dial: float) -> None:
        steps = self._steps(dial)
        dial = round(steps * self.v["MRES"], 12)
        await self._post(DRBV=dial, RRBV=steps, RBV=self._user(dial),
                         DIFF=round(self.v["DVAL"] - dial, 12),
                         RDIF=self._steps(self.v["DVAL"] - dial))
        await self._update_switches()

    async def _update_switches(self) -> None:
        low, high = self._hw_range()
        dial = self.v["DRBV"]
        rhls, rlls = int(dial >= high), int(dial <= low)
        if self._sign > 0:
            hls, lls = rhls, rlls
        else:
            hls, lls = rlls, rhls
        if (rhls, rlls, hls, lls) != (self.v["RHLS"], self.v["RLLS"], self.v["HLS"], self.v["LLS"]):
            await self._post(RHLS=rhls, RLLS=rlls, HLS=hls, LLS=lls)
            await self._post_status()

    async def _post_status(self) -> None:
        v = self.v
        msta = MSTA_GAIN_SUPPORT
        msta |= MSTA_DIRECTION if v["CDIR"] else 0
        msta |= MSTA_DONE if v["DMOV"] else MSTA_MOVING
        msta |= MSTA_PLUS_LS if v["RHLS"] else 0
        msta |= MSTA_MINUS_LS if v["RLLS"] else 0
        msta |= (MSTA_HOME | MSTA_HOMED) if v["ATHM"] else 0
        await self._post(MSTA=msta)


class MotorGroup(PVGroup):
    """The motor records of one IOC, as a caproto ``PVGroup`` (for ``run_ioc``)."""

    def __init__(self, prefix: str, count: int, **options: Any):
        super().__init__(prefix=prefix)
        self.motors: dict[str, MotorRecord] = {}
        for index in range(1, count + 1):
            name = f"{prefix}m{index}"
            record = MotorRecord(name, DESC=f"motor {index}", **options)
            self.motors[name] = self.pvdb[name] = record


def build(prefix: str, count: int = 16, **options: Any) -> list[PVGroup]:
    """``{prefix}m1..m{count}``; ``options`` override field defaults (e.g. VELO=5)."""
    return [MotorGroup(prefix, count, **options)]
