"""The harness's two ways to fail: a scenario's check, and the guest image's build."""


class ScenarioFailure(Exception):
    """A scenario's check did not hold; the message says which and why."""


class ImageError(Exception):
    """The guest image could not be built: a package, a kernel module or a tool is missing."""
