"""A plan shipped by another distribution (installed by tests/test_plans_plugin.py)."""
from bluesky import plans as bp


def extra_count(detectors, num: int = 1, md=None):
    """``count`` tagged as coming from the plugin."""
    return (yield from bp.count(detectors, num=num, md=dict(md or {}, plugin="extra_plans")))
