"""The curation store against SQLite and a real PostgreSQL: decisions, tags, notes, revisions,
audit; two writers at once; a bulk action killed halfway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import sqlalchemy as sa

from core.curation.store import SCHEMA_VERSION, Store
from core.errors import GlowAIError
from tests.conftest import ROOT


def test_decisions_tags_notes_and_audit(db_url, tmp_path):
    with Store(db_url, tmp_path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.decide(["a-1", "a-2", "a-3"], "accepted", "ana") == 3
        store.decide(["a-2"], "rejected", "ben")  # the later decision wins, the earlier is kept
        statuses = dict(zip(*store.statuses()[["sample_id", "status"]].to_numpy().T, strict=True))
        assert statuses == {"a-1": "accepted", "a-2": "rejected", "a-3": "accepted"}
        assert store.decision_count() == 4
        store.add_tags(["a-1", "a-2"], ["blurry", " blurry ", "odd", ""], "ana")
        store.add_tags(["a-1"], ["blurry"], "ben")  # already there: no duplicate
        assert sorted(map(tuple, store.tags().to_numpy())) == [("a-1", "blurry"), ("a-1", "odd"), ("a-2", "blurry"),
                                                                ("a-2", "odd")]
        store.remove_tag("a-1", "odd", "ana")
        store.add_note("a-3", "mask misses the chin spot", "ben")
        assert store.notes("a-3")["text"].tolist() == ["mask misses the chin spot"]
        store.tag_failure("model@acne", "levle1_2.jpg", ["glasses", "lighting"], "ana")
        store.tag_failure("model@acne", "levle1_2.jpg", ["glasses"], "ana")  # replaces the earlier tags
        assert store.failure_tags("model@acne")["tag"].tolist() == ["glasses"]
        log = store.audit_log()
        assert log["action"].tolist()[:3] == ["failure_tag", "failure_tag", "note"]
        assert set(log["who"]) == {"ana", "ben"} and log["count"].iloc[-1] == 3
    with Store(db_url, tmp_path) as again:  # reopening keeps everything
        assert again.decision_count() == 4


def test_revisions_keep_the_original_and_stay_in_the_dataset(db_url, tmp_path):
    original = tmp_path / "masks" / "s1.png"
    original.parent.mkdir()
    original.write_bytes(b"original")
    with Store(db_url, tmp_path) as store:
        assert store.add_revision("s1", b"first", "delete acne #2", "ana") == 1
        assert store.add_revision("s1", b"second", "grow redness 2 px", "ana") == 2
        latest = store.latest_revisions()["s1"]
        assert latest == tmp_path / "revisions" / "s1" / "r002.png" and latest.read_bytes() == b"second"
        assert original.read_bytes() == b"original"
        assert store.revisions("s1")["operation"].tolist() == ["delete acne #2", "grow redness 2 px"]
        with pytest.raises(GlowAIError, match="outside the dataset"):
            store.resolve("../../etc/passwd")


@pytest.mark.parametrize("bad", ["../escape", "/abs/path", "a/b", "", "x" * 200])
def test_sample_ids_are_plain_names(tmp_path, bad):
    with Store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path) as store, pytest.raises(GlowAIError, match="invalid sample id"):
        store.decide([bad], "accepted")


def test_bad_status_and_bad_url_are_refused(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path) as store, pytest.raises(GlowAIError, match="valid:"):
        store.decide(["a"], "maybe")
    with pytest.raises(GlowAIError, match="curation database|--db"):
        Store(f"sqlite:///{tmp_path / 'missing-folder' / 'c.db'}", tmp_path)


def _script(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


def test_two_curators_at_once_lose_nothing(db_url, tmp_path):
    Store(db_url, tmp_path).close()  # schema first, so both writers start on an existing database
    writer = """
        import sys
        from core.curation.store import Store
        url, root, who = sys.argv[1:4]
        store = Store(url, root)
        print("ready", flush=True)
        sys.stdin.readline()  # both start together
        for i in range(1000):
            store.decide([f"{who}-{i:04d}"], "accepted" if i % 2 else "flagged", who)
        """
    processes = [subprocess.Popen([*_script(writer), db_url, str(tmp_path), who], cwd=ROOT, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True) for who in ("ana", "ben")]
    for process in processes:
        assert process.stdout.readline().strip() == "ready"
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    for process in processes:
        assert process.wait(timeout=300) == 0
    with Store(db_url, tmp_path) as store:
        assert store.decision_count() == 2000
        assert len(store.statuses()) == 2000


def test_a_bulk_action_killed_halfway_leaves_all_or_nothing(db_url, tmp_path):
    Store(db_url, tmp_path).close()
    count = 300_000
    bulk = f"""
        import sys
        from core.curation.store import Store
        store = Store(sys.argv[1], sys.argv[2])
        ids = [f"s{{i:06d}}" for i in range({count})]
        print("begin", flush=True)
        store.decide(ids, "accepted", "ana")
        print("committed", flush=True)
        """
    process = subprocess.Popen([*_script(bulk), db_url, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "begin"
    time.sleep(0.4)
    killed_mid_write = process.poll() is None
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    with Store(db_url, tmp_path) as store:
        recorded = store.decision_count()
        audits = len(store.audit_log())
    assert killed_mid_write, "the bulk write finished before the kill: raise `count`"
    assert (recorded, audits) in ((0, 0), (count, 1))


def test_sqlite_runs_in_wal_mode(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path) as store, store.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
