"""Server and governor processes collect cycles less often than Python's default."""
import gc

from rain.common.gc_tuning import GC_YOUNG_THRESHOLD, tune_gc


def test_tune_gc_raises_the_young_threshold_and_freezes_start_up():
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD,) + before[1:]
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
