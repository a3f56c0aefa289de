from __future__ import annotations

import pytest

from .worlds import LocalWorld

DRIVERS = ["local", "kube"]


@pytest.fixture(params=DRIVERS)
def make_world(request, tmp_path):
    """A factory of worlds (spec fields as keyword arguments) for the driver under test."""
    made = []

    def make(**spec):
        if request.param == "kube":
            pytest.importorskip("kopf")
            pytest.importorskip("kubernetes")
            from .kube_world import KubeWorld

            world = KubeWorld(str(tmp_path / "backups"), **spec)
        else:
            world = LocalWorld(str(tmp_path / "backups"), **spec)
        made.append(world)
        return world

    yield make
    for world in made:
        world.close()
