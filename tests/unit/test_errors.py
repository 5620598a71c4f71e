"""One hierarchy: every exception wgpy defines is a WgpyError, and wgpy.errors lists it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess

import pytest

import wgpy
from wgpy import errors
from wgpy.errors import WgpyError
from wgpy.io.vnet.segment import OffloadError
from wgpy.lab.netns import CommandFailed


def defined_exceptions() -> list[type[BaseException]]:
    """The public exception classes of every wgpy module (a leading _ marks a private signal)."""
    found = {}
    for module_info in pkgutil.walk_packages(wgpy.__path__, "wgpy."):
        if module_info.name.endswith(".__main__"):  # importing it would run it
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[value.__qualname__] = value
    return sorted(found.values(), key=lambda error: error.__qualname__)


EXCEPTIONS = defined_exceptions()


def test_wgpy_defines_the_exceptions_the_hierarchy_names() -> None:
    assert {"CaptureError", "CommandError", "OffloadError", "QuickError"} <= {
        error.__name__ for error in EXCEPTIONS
    }


# What stops wgpy-quick on a signal is a KeyboardInterrupt, so that no `except Exception` takes
# it: an interruption, not an error.
INTERRUPTIONS = [error for error in EXCEPTIONS if not issubclass(error, Exception)]


def test_an_interruption_is_a_keyboard_interrupt() -> None:
    assert [error.__name__ for error in INTERRUPTIONS] == ["Interrupted"]
    assert all(issubclass(error, KeyboardInterrupt) for error in INTERRUPTIONS)


@pytest.mark.parametrize(
    "error", [e for e in EXCEPTIONS if e not in INTERRUPTIONS], ids=lambda error: error.__name__
)
def test_every_exception_wgpy_defines_is_a_wgpy_error(error: type[BaseException]) -> None:
    assert issubclass(error, WgpyError)


@pytest.mark.parametrize("error", EXCEPTIONS, ids=lambda error: error.__name__)
def test_the_errors_module_lists_every_exception(error: type[BaseException]) -> None:
    assert errors.__doc__ is not None
    assert error.__name__ in errors.__doc__


def test_an_offload_error_is_still_a_value_error() -> None:
    assert issubclass(OffloadError, ValueError)


def test_a_failed_lab_command_is_still_a_called_process_error() -> None:
    failed = CommandFailed(1, ["false"], "", "why")
    assert isinstance(failed, subprocess.CalledProcessError)
    assert "why" in str(failed)
