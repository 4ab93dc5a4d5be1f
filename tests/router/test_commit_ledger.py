"""The ledger behind tsrouter_records_committed: records count as committed only once a
commit covers their offsets, and only records that were acknowledged ever count."""

from tsrouter.batch import CommitLedger, record_counts
from tsrouter.chunks import ListChunk


def test_a_commit_counts_the_acknowledged_records_its_offsets_cover():
    ledger = CommitLedger()
    ledger.acknowledged({"p0": 3, "p1": 2}, {"p0": 13, "p1": 7})
    ledger.acknowledged({"p0": 4}, {"p0": 20})
    assert ledger.committed("p0", 12) == 0  # the batch ends at 13: not covered yet
    assert ledger.committed("p0", 13) == 3
    assert ledger.committed("p0", 13) == 0  # counted once
    assert ledger.committed("p0", 25) == 4
    assert ledger.committed("p1", 7) == 2
    assert ledger.committed("p2", 100) == 0  # nothing acknowledged there


def test_partitions_lost_to_another_member_never_count():
    ledger = CommitLedger()
    ledger.acknowledged({"p0": 5, "p1": 5}, {"p0": 5, "p1": 5})
    ledger.forget(["p1"])
    assert ledger.committed("p1", 5) == 0
    assert ledger.committed("p0", 5) == 5
    ledger.acknowledged({"p0": 1}, {"p0": 6})
    ledger.forget()
    assert ledger.committed("p0", 6) == 0


def test_records_not_offsets_are_counted():
    # A transactional input's commit markers take offsets but are no records.
    # Offsets 10 and 12 are records, 11 a marker; a poll hands them out in chunks.
    batch = {
        "p0": [ListChunk([(10, 0, None, b"1", ())]), ListChunk([(12, 0, None, b"2", ())])],
        "p1": [],
        "p2": [ListChunk([(3, 0, None, b"3", ())])],
    }
    assert record_counts(batch) == {"p0": 2, "p2": 1}
