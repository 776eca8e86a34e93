"""Placeholder until the session (RunEngine, catalog, callbacks, plans) lands."""


def build_session(beamline, config: dict) -> None:
    return None
