"""The launcher's one line names the rank that failed first, never one it took down."""

from types import SimpleNamespace

from femb_cli.errors import PEER_LOST_EXIT
from femb_cli.launch import describe_failure


def failures(**ranks):
    return SimpleNamespace(
        failures={
            int(rank[1:]): SimpleNamespace(exitcode=code, timestamp=stamp, pid=1000 + int(rank[1:]))
            for rank, (code, stamp) in ranks.items()
        }
    )


def test_a_killed_rank_is_named_even_when_its_casualty_was_seen_first():
    line = describe_failure(failures(r0=(PEER_LOST_EXIT, 10), r1=(-9, 11)))
    assert line.startswith("rank 1 (pid 1001) ended with signal SIGKILL")


def test_the_first_real_failure_is_named():
    line = describe_failure(failures(r0=(1, 12), r1=(2, 11), r2=(PEER_LOST_EXIT, 10)))
    assert line.startswith("rank 1 (pid 1001) ended with exit code 2; 2 other rank(s)")


def test_when_every_rank_only_lost_its_peers_the_first_is_named():
    line = describe_failure(failures(r0=(PEER_LOST_EXIT, 11), r1=(PEER_LOST_EXIT, 10)))
    assert line.startswith(f"rank 1 (pid 1001) ended with exit code {PEER_LOST_EXIT}")
