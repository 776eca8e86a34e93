"""The project's own ophyd classes, importable from happi entries (``loader.devices.*``)."""
