"""Post-connect setup actions, registered under the ``loader.setups`` entry points.

An action is ``action(device, **options) -> exports | None``; the YAML's
``setup`` section names it with its options.  An action may declare
``options_schema`` (JSON Schema of its options, checked by ``beamline validate``)
and may take a keyword ``context`` (:class:`loader.setup_runner.SetupContext`)
when it needs more than its device (e.g. the data directory).  It returns a
mapping of extra objects to export into the session (e.g. scaler channels), or None.
"""
