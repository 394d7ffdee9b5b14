import logging

from benchmark.run.progress import Progress


def run(progress: Progress, hits: list) -> None:
    with progress:
        for hit in hits:
            progress.update(hit)


def test_without_a_terminal_it_logs_plain_lines(caplog, capsys):
    caplog.set_level(logging.INFO, logger="benchmark.run.progress")
    run(Progress(total=4, desc="x3d_xs", log_every_s=0, terminal=False), [True, False, True, True])
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("x3d_xs: 1/4 videos, ") and "videos/s, ETA " in lines[0]
    assert lines[0].endswith("top-1 100.0%")
    assert lines[-1].startswith("x3d_xs: 4/4 videos") and lines[-1].endswith("ETA 00:00, top-1 75.0%")
    assert sum("4/4 videos" in line for line in lines) == 1  # the closing line once
    assert "\r" not in capsys.readouterr().err  # no redrawn bar in a log


def test_failed_videos_count_as_done_but_not_in_the_top1(caplog):
    caplog.set_level(logging.INFO, logger="benchmark.run.progress")
    run(Progress(total=3, desc="m", terminal=False), [True, None, False])
    assert caplog.records[-1].getMessage().startswith("m: 3/3 videos")
    assert caplog.records[-1].getMessage().endswith("top-1 50.0%")


def test_sparse_by_default_without_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="benchmark.run.progress")
    run(Progress(total=50, desc="m", terminal=False), [True] * 50)
    # A fast loop under the default 60 s interval: only the closing line.
    assert len(caplog.records) == 1 and "50/50 videos" in caplog.records[0].getMessage()


def test_on_a_terminal_it_is_a_bar_with_the_running_top1(caplog, capsys):
    caplog.set_level(logging.INFO, logger="benchmark.run.progress")
    run(Progress(total=2, desc="slowfast_r50", terminal=True), [True, False])
    err = capsys.readouterr().err
    assert "slowfast_r50" in err and "2/2" in err and "video/s" in err and "top-1 50.0%" in err
    assert not caplog.records
