"""The curation store: review decisions, tags, notes, mask revisions, failure tags and an audit
log, in a database through SQLAlchemy (SQLite in WAL mode next to the dataset by default,
PostgreSQL by URL for a team).

Decisions are appended, never updated: a sample's status is its latest decision, so two curators
working at once never overwrite each other's rows (the later decision wins, both are kept). Every
write is one transaction together with its audit row: a bulk action is all or nothing, even when
the process is killed halfway. Mask revisions are files under the dataset root (written
atomically before their row is committed); the original mask is never touched.
"""

from __future__ import annotations

import getpass
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from core.errors import GlowAIError
from core.files import write_atomic

SCHEMA_VERSION = 1
STATUSES = ("accepted", "rejected", "flagged")
DB_FILENAME = "curation.db"
_SAMPLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

metadata = sa.MetaData()
meta = sa.Table("meta", metadata, sa.Column("key", sa.String(64), primary_key=True),
                sa.Column("value", sa.String(256), nullable=False))
decisions = sa.Table(
    "decisions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sample_id", sa.String(128), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("curator", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)
tags = sa.Table(
    "tags", metadata,
    sa.Column("sample_id", sa.String(128), primary_key=True),
    sa.Column("tag", sa.String(64), primary_key=True),
    sa.Column("curator", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)
notes = sa.Table(
    "notes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sample_id", sa.String(128), nullable=False, index=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("curator", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)
revisions = sa.Table(
    "revisions", metadata,
    sa.Column("sample_id", sa.String(128), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("path", sa.String(256), nullable=False),  # relative to the dataset root
    sa.Column("operation", sa.Text, nullable=False),
    sa.Column("curator", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)
failure_tags = sa.Table(
    "failure_tags", metadata,
    sa.Column("run", sa.String(128), primary_key=True),  # which evaluation (model + data)
    sa.Column("sample_id", sa.String(256), primary_key=True),
    sa.Column("tag", sa.String(64), primary_key=True),
    sa.Column("curator", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)
# Labels of real photos (the Annotate page): one row per save of one curator's labels of one photo,
# appended; the latest row per (photo, curator) is that curator's current label.
photo_labels = sa.Table(
    "photo_labels", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("photo", sa.String(128), nullable=False, index=True),  # file name in the photo folder
    sa.Column("label", sa.Text, nullable=False),  # JSON: grades, points [[x, y, r]], note, suggestion
    sa.Column("curator", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)
audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("who", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # JSON: sample ids (first 50), values
)


def default_url(dataset_root: Path) -> str:
    return f"sqlite:///{(Path(dataset_root) / DB_FILENAME).resolve()}"


def current_user() -> str:
    try:
        return getpass.getuser()[:64]
    except (KeyError, OSError):  # no user name in a container
        return "curator"


def _now() -> datetime:
    return datetime.now(UTC)


def check_sample_ids(sample_ids: list[str]) -> list[str]:
    """Sample ids are plain names (they become file names): no paths, no traversal."""
    bad = [s for s in sample_ids if not isinstance(s, str) or not _SAMPLE_ID.match(s)]
    if bad:
        raise GlowAIError(f"invalid sample id {bad[0]!r}: letters, digits, '.', '_' and '-' only")
    return list(sample_ids)


class Store:
    """One dataset's curation database. Thread-safe (one engine, short transactions)."""

    def __init__(self, url: str, dataset_root: Path) -> None:
        self.root = Path(dataset_root).resolve()
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs = {"connect_args": {"timeout": 60}} if self.is_sqlite else {"pool_pre_ping": True}
        try:
            self.engine = sa.create_engine(url, **kwargs)
        except (sa.exc.ArgumentError, ImportError) as err:
            raise GlowAIError(f"--db {url!r}: {err}; use sqlite:///path.db or postgresql+psycopg://user@host/db") from None
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_connect)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        try:
            self._create_schema()
        except sa.exc.OperationalError as err:
            raise GlowAIError(f"cannot open the curation database {self.engine.url!r}: "
                              f"{str(err.orig).splitlines()[0]}") from None

    def _create_schema(self) -> None:
        with self.engine.begin() as conn:
            metadata.create_all(conn)
            found = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
            if found is None:
                conn.execute(sa.insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(found) > SCHEMA_VERSION:
                raise GlowAIError(f"the curation database has schema {found}, newer than this GlowAI "
                                  f"({SCHEMA_VERSION}); update GlowAI")

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar())

    def _audit(self, conn: sa.Connection, who: str, action: str, ids: list[str], **values) -> None:
        details = json.dumps({"samples": ids[:50], **values}, sort_keys=True)
        conn.execute(sa.insert(audit).values(at=_now(), who=who, action=action, count=len(ids), details=details))

    # -- decisions ------------------------------------------------------------------------
    def decide(self, sample_ids: list[str], status: str, curator: str | None = None) -> int:
        """Record `status` for every sample, all in one transaction; returns how many."""
        if status not in STATUSES:
            raise GlowAIError(f"status {status!r}; valid: {', '.join(STATUSES)}")
        ids, who, at = check_sample_ids(sample_ids), curator or current_user(), _now()
        if not ids:
            return 0
        with self.engine.begin() as conn:
            conn.execute(sa.insert(decisions), [{"sample_id": s, "status": status, "curator": who, "at": at}
                                                for s in ids])
            self._audit(conn, who, status, ids)
        return len(ids)

    def statuses(self) -> pd.DataFrame:
        """Latest decision per sample: columns sample_id, status, curator, at."""
        latest = sa.select(sa.func.max(decisions.c.id)).group_by(decisions.c.sample_id).scalar_subquery()
        query = sa.select(decisions.c.sample_id, decisions.c.status, decisions.c.curator, decisions.c.at).where(
            decisions.c.id.in_(latest))
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(query).fetchall(), columns=["sample_id", "status", "curator", "at"])

    def decision_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(decisions)).scalar())

    # -- tags and notes ---------------------------------------------------------------------
    def add_tags(self, sample_ids: list[str], new_tags: list[str], curator: str | None = None) -> None:
        ids, who, at = check_sample_ids(sample_ids), curator or current_user(), _now()
        clean = sorted({t.strip()[:64] for t in new_tags if t.strip()})
        if not ids or not clean:
            return
        with self.engine.begin() as conn:
            existing = set(conn.execute(sa.select(tags.c.sample_id, tags.c.tag).where(
                tags.c.sample_id.in_(ids), tags.c.tag.in_(clean))).fetchall())
            rows = [{"sample_id": s, "tag": t, "curator": who, "at": at} for s in ids for t in clean
                    if (s, t) not in existing]
            if rows:
                conn.execute(sa.insert(tags), rows)
            self._audit(conn, who, "tag", ids, tags=clean)

    def remove_tag(self, sample_id: str, tag: str, curator: str | None = None) -> None:
        check_sample_ids([sample_id])
        with self.engine.begin() as conn:
            conn.execute(sa.delete(tags).where(tags.c.sample_id == sample_id, tags.c.tag == tag))
            self._audit(conn, curator or current_user(), "untag", [sample_id], tags=[tag])

    def tags(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(sa.select(tags.c.sample_id, tags.c.tag)).fetchall(),
                                columns=["sample_id", "tag"])

    def add_note(self, sample_id: str, text: str, curator: str | None = None) -> None:
        check_sample_ids([sample_id])
        if not text.strip():
            return
        who = curator or current_user()
        with self.engine.begin() as conn:
            conn.execute(sa.insert(notes).values(sample_id=sample_id, text=text.strip(), curator=who, at=_now()))
            self._audit(conn, who, "note", [sample_id])

    def notes(self, sample_id: str) -> pd.DataFrame:
        query = sa.select(notes.c.text, notes.c.curator, notes.c.at).where(notes.c.sample_id == sample_id).order_by(
            notes.c.id)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(query).fetchall(), columns=["text", "curator", "at"])

    # -- mask revisions ---------------------------------------------------------------------
    def add_revision(self, sample_id: str, mask_png: bytes, operation: str, curator: str | None = None) -> int:
        """Save a touched-up mask as the sample's next revision (the original stays as it is)."""
        check_sample_ids([sample_id])
        who = curator or current_user()
        with self.engine.begin() as conn:
            last = conn.execute(sa.select(sa.func.max(revisions.c.revision)).where(
                revisions.c.sample_id == sample_id)).scalar() or 0
            number = last + 1
            relative = f"revisions/{sample_id}/r{number:03d}.png"
            write_atomic(self.resolve(relative), mask_png)  # before the commit: a row never points at nothing
            conn.execute(sa.insert(revisions).values(sample_id=sample_id, revision=number, path=relative,
                                                     operation=operation, curator=who, at=_now()))
            self._audit(conn, who, "revise", [sample_id], revision=number, operation=operation)
        return number

    def revisions(self, sample_id: str) -> pd.DataFrame:
        query = sa.select(revisions.c.revision, revisions.c.path, revisions.c.operation, revisions.c.curator,
                          revisions.c.at).where(revisions.c.sample_id == sample_id).order_by(revisions.c.revision)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(query).fetchall(), columns=["revision", "path", "operation", "curator", "at"])

    def latest_revisions(self) -> dict[str, Path]:
        """sample id -> absolute path of its newest mask revision (samples without one are absent)."""
        latest = sa.select(revisions.c.sample_id, sa.func.max(revisions.c.revision).label("revision")).group_by(
            revisions.c.sample_id).subquery()
        query = sa.select(revisions.c.sample_id, revisions.c.path).join(
            latest, (revisions.c.sample_id == latest.c.sample_id) & (revisions.c.revision == latest.c.revision))
        with self.engine.connect() as conn:
            return {sample: self.resolve(path) for sample, path in conn.execute(query).fetchall()}

    def resolve(self, relative: str) -> Path:
        """A path stored in the database, made absolute; anything outside the dataset root is refused."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise GlowAIError(f"{relative!r} points outside the dataset folder; refusing to use it")
        return path

    # -- failure tags (error analysis) -------------------------------------------------------
    def tag_failure(self, run: str, sample_id: str, new_tags: list[str], curator: str | None = None) -> None:
        who, at = curator or current_user(), _now()
        clean = sorted({t.strip()[:64] for t in new_tags if t.strip()})
        with self.engine.begin() as conn:
            conn.execute(sa.delete(failure_tags).where(failure_tags.c.run == run,
                                                       failure_tags.c.sample_id == sample_id))
            if clean:
                conn.execute(sa.insert(failure_tags), [{"run": run, "sample_id": sample_id, "tag": t, "curator": who,
                                                        "at": at} for t in clean])
            self._audit(conn, who, "failure_tag", [sample_id], run=run, tags=clean)

    def failure_tags(self, run: str) -> pd.DataFrame:
        query = sa.select(failure_tags.c.sample_id, failure_tags.c.tag).where(failure_tags.c.run == run)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(query).fetchall(), columns=["sample_id", "tag"])

    # -- labels of real photos ----------------------------------------------------------------
    def save_photo_label(self, photo: str, label: dict, curator: str | None = None) -> None:
        """Append one curator's label of one real photo (see `core.curation.annotate.check_label`)."""
        from core.curation.annotate import check_label

        check_sample_ids([photo])
        clean, who = check_label(label), curator or current_user()
        with self.engine.begin() as conn:
            conn.execute(sa.insert(photo_labels).values(photo=photo, label=json.dumps(clean, sort_keys=True),
                                                        curator=who, at=_now()))
            self._audit(conn, who, "photo_label", [photo], points=len(clean["points"]), grades=clean["grades"])

    def photo_labels(self, curator: str | None = None) -> pd.DataFrame:
        """The current label per (photo, curator), or of one curator: columns photo, curator, at,
        grades (condition -> 0-3, -1 can't tell), points (list of [x, y, r]), note, suggestion (dict or None)."""
        latest = sa.select(sa.func.max(photo_labels.c.id)).group_by(photo_labels.c.photo, photo_labels.c.curator)
        query = sa.select(photo_labels.c.photo, photo_labels.c.curator, photo_labels.c.at, photo_labels.c.label).where(
            photo_labels.c.id.in_(latest.scalar_subquery()))
        if curator is not None:
            query = query.where(photo_labels.c.curator == curator)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(photo_labels.c.photo, photo_labels.c.curator)).fetchall()
        records = [{"photo": photo, "curator": who, "at": at, **json.loads(label)} for photo, who, at, label in rows]
        return pd.DataFrame(records, columns=["photo", "curator", "at", "grades", "points", "note", "suggestion"])

    # -- audit --------------------------------------------------------------------------------
    def audit_log(self, limit: int = 200) -> pd.DataFrame:
        query = sa.select(audit.c.at, audit.c.who, audit.c.action, audit.c.count, audit.c.details).order_by(
            audit.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(query).fetchall(), columns=["at", "who", "action", "count", "details"])

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sqlite_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - SQLAlchemy event signature
    dbapi_connection.isolation_level = None  # the driver stops opening transactions; _sqlite_begin does
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; crash-safe
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    # IMMEDIATE takes the write lock up front, so two writers queue (busy timeout) instead of one
    # failing with "database is locked" when a read transaction tries to become a write.
    conn.exec_driver_sql("BEGIN IMMEDIATE")
