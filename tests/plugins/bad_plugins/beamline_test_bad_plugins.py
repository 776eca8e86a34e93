"""Entry points of the wrong kind: each must be reported and skipped, never fatal."""

NOT_A_PLAN = 42                                   # loader.plans wants a generator function
NOT_A_CALLBACK = {"name": "not a callback"}       # loader.callbacks wants a factory
NOT_AN_ACTION = "motor_srev"                      # loader.setups wants a callable


def wrong_return(device):
    """A setup action returning a list where a mapping of exports (or None) is expected."""
    return [device]


def returns_a_string(beamline, **options):
    """A callback factory returning something that is not a callback."""
    return "not a callback"
