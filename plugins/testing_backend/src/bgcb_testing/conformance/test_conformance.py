"""The by-name entry of the conformance kit::

    pytest --pyargs bgcb_testing.conformance --bgcb-backend=NAME

The backend comes from ``--bgcb-backend``, else ``$BGCB_CONFORMANCE_BACKEND``,
else ``$BGCB_BACKEND``, else ``testing``; the rest of the configuration from
``BGCB_CONFORMANCE_*`` variables (see :meth:`KitConfig.from_env`) and the
backend's own ``BGCB_<NAME>_<OPTION>`` variables.
"""

from __future__ import annotations

import pytest

from bgcb_testing.conformance.config import KitConfig
from bgcb_testing.conformance.suite import BackendConformance


class TestBackendConformance(BackendConformance):
    def conformance_config(self, pytestconfig: pytest.Config) -> KitConfig:
        try:
            name = pytestconfig.getoption("--bgcb-backend")
        except ValueError:  # the bgcb pytest plugin is disabled
            name = None
        return KitConfig.from_env(name)
