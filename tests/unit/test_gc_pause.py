"""The collector is held off for one environment's migration and given back
as it was, whatever the migration raised."""

from __future__ import annotations

import gc

import pytest

from conda_migrate_plugin.gc_pause import collector_paused


@pytest.fixture
def collector():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_the_collector_runs_again_after_the_migration(collector):
    gc.enable()
    with pytest.raises(KeyboardInterrupt), collector_paused():
        assert not gc.isenabled()
        raise KeyboardInterrupt
    assert gc.isenabled()


def test_a_collector_the_caller_turned_off_stays_off(collector):
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()
