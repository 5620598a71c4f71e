"""Moved to wgpy/netns.py; this alias stays only until the tests import it from there."""

import sys

from wgpy import netns

sys.modules[__name__] = netns
