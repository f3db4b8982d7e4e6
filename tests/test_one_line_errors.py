"""femb.errors.one_line: the one formatter behind every `error:` line."""

from femb.errors import one_line


def test_a_dataloader_workers_error_keeps_only_the_error_itself():
    wrapped = ValueError(
        "Caught ImageLoadError in DataLoader worker process 0.\n"
        "Original Traceback (most recent call last):\n"
        '  File "/x/torch/utils/data/_utils/worker.py", line 349, in _worker_loop\n'
        "    data = fetcher.fetch(index)\n"
        "femb.data.errors.ImageLoadError: faces/s1/broken.jpg: cannot identify image file\n"
    )
    assert one_line(wrapped) == "faces/s1/broken.jpg: cannot identify image file"


def test_os_errors_name_the_path_and_long_text_is_cut():
    assert one_line(PermissionError(13, "Permission denied", "runs/x")) == "runs/x: Permission denied"
    assert one_line(ValueError("a\n  b  c")) == "a b c"
    assert one_line(ValueError("x" * 50), limit=10) == "x" * 10 + "…"
