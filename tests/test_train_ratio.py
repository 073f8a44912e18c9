"""The train ratio owes updates from the two persisted counters alone."""

from daydream.runtime.train_ratio import TrainRatio


def test_no_updates_before_start_then_ratio():
    ratio = TrainRatio(ratio=512, batch_steps=1024, start=100)
    assert ratio.owed(99, 0) == 0
    assert ratio.owed(100, 0) == 0
    assert ratio.owed(101, 0) == 1          # (2 * 512) // 1024
    assert ratio.owed(1101, 1) == 500       # 1001 * 0.5 - 1 done


def test_resume_does_not_flood():
    ratio = TrainRatio(ratio=64, batch_steps=512, start=1000)
    done = ratio.owed(5000, 0)
    assert ratio.owed(5000, done) == 0      # restored counters: nothing owed
    assert ratio.owed(5008, done) == 1
