import gc

from etcdx.server.gc_tuning import freeze_boot_objects


def test_objects_alive_at_boot_leave_the_collectors_generations():
    booted = [object()]  # a tracked container, alive "at boot"
    try:
        assert freeze_boot_objects() > 0
        assert not any(o is booted for o in gc.get_objects())
        later = [object()]
        assert any(o is later for o in gc.get_objects())  # objects made afterwards are collected as usual
    finally:
        gc.unfreeze()
