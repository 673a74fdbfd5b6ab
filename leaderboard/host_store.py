"""What a leaderboard host keeps beside its results: API tokens (their hashes only) and the submission queue.

Both live in the results database, so a submission, its quota and its runs change together in one transaction,
and the evaluation worker takes the queue from the same file the web process writes it to. A submission moves
``queued`` → ``running`` → ``scored`` or ``failed`` (or ``cancelled``); a worker killed while one runs finds it
``running`` again on restart and resumes it from the run journal. A submission is judged on `test`; closing a round
queues each token's newest scored one again, on `holdout`, as TrojAI does at a round's end.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from leaderboard.store import ResultStore, StoreError

STATES = ("queued", "running", "scored", "failed", "cancelled")
FINAL = ("scored", "failed", "cancelled")


class QuotaExceeded(StoreError):
    """A token used up its submissions for the day, or the host its disk."""

    def __init__(self, message: str, retry_after: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Submission:
    id: str
    token: str
    """The name of the token that sent it."""
    filename: str
    sha256: str
    size: int
    state: str
    reason: str | None
    """Why it failed, in the harness's words."""
    organisms_done: int
    organisms: int | None
    created_at: str
    finished_at: str | None
    split: str
    source: str
    """The submission whose file this judges (itself, or on `holdout` the one it was queued again for)."""

    def public(self) -> dict:
        """What the host shows anyone: no token name, no file."""
        return {"id": self.id, "state": self.state, "reason": self.reason, "organisms_done": self.organisms_done,
                "organisms": self.organisms, "split": self.split, "created_at": self.created_at,
                "finished_at": self.finished_at}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


COLUMNS = ("id, token, filename, sha256, size, state, reason, organisms_done, organisms, created_at, finished_at, "
           "split, source")


class HostStore(ResultStore):
    """The results database of a host, with its tokens and submissions."""

    def add_token(self, name: str) -> str:
        """A new token for `name`, shown once: only its hash is stored."""
        token = secrets.token_urlsafe(32)
        with self._connect() as db:
            if db.execute("SELECT 1 FROM tokens WHERE name = ?", (name,)).fetchone():
                raise StoreError(f"a token named {name!r} exists already (revoke it first)")
            db.execute("INSERT INTO tokens VALUES (?, ?, ?)", (name, _hash(token), _now().isoformat()))
        return token

    def revoke_token(self, name: str) -> None:
        with self._connect() as db:
            if not db.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount:
                raise StoreError(f"no token named {name!r}")

    def token_name(self, token: str) -> str | None:
        """The name of a token that was added and not revoked, or None."""
        with self._connect() as db:
            row = db.execute("SELECT name FROM tokens WHERE sha256 = ?", (_hash(token),)).fetchone()
        return row[0] if row else None

    def enqueue(self, submission: str, token: str, filename: str, sha256: str, size: int, per_day: int,
                disk_bytes: int) -> None:
        """Queue a submission of an already stored file, within the token's daily quota and the host's disk
        quota (the sizes of queued and kept files)."""
        now = _now()
        with self._connect() as db:
            times = [datetime.fromisoformat(r[0]) for r in db.execute(
                "SELECT created_at FROM host_submissions WHERE token = ? AND split = 'test' AND created_at > ? "
                "ORDER BY created_at",
                (token, (now - timedelta(days=1)).isoformat()))]
            if len(times) >= per_day:
                retry = times[len(times) - per_day] + timedelta(days=1)
                raise QuotaExceeded(f"token {token!r} has used its {per_day} submissions of the last 24 hours; the "
                                    f"next is allowed at {retry.isoformat(timespec='seconds')}", retry)
            used = db.execute("SELECT COALESCE(SUM(size), 0) FROM host_submissions").fetchone()[0]
            if used + size > disk_bytes:
                raise QuotaExceeded(f"the host's upload space ({disk_bytes} bytes) is full")
            db.execute(f"INSERT INTO host_submissions ({COLUMNS}) VALUES (?, ?, ?, ?, ?, 'queued', NULL, 0, NULL, ?, "
                       "NULL, 'test', ?)", (submission, token, filename, sha256, size, now.isoformat(), submission))

    def submission(self, submission: str) -> Submission:
        with self._connect() as db:
            row = db.execute(f"SELECT {COLUMNS} FROM host_submissions WHERE id = ?", (submission,)).fetchone()
        if row is None:
            raise StoreError(f"no submission {submission!r}")
        return Submission(*row)

    def submissions(self, limit: int = 100) -> list[Submission]:
        with self._connect() as db:
            rows = db.execute(f"SELECT {COLUMNS} FROM host_submissions ORDER BY created_at DESC LIMIT ?",
                              (limit,)).fetchall()
        return [Submission(*row) for row in rows]

    def claim(self) -> Submission | None:
        """The submission to evaluate next: one left running by a worker that died (to resume), else the oldest
        queued, now running."""
        with self._connect() as db:
            row = db.execute(f"SELECT {COLUMNS} FROM host_submissions WHERE state IN ('running', 'queued') "
                             "ORDER BY state = 'queued', created_at LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE host_submissions SET state = 'running' WHERE id = ?", (row[0],))
        return Submission(*row[:5], "running", *row[6:])

    def progress(self, submission: str, done: int, total: int) -> None:
        with self._connect() as db:
            db.execute("UPDATE host_submissions SET organisms_done = ?, organisms = ? WHERE id = ?",
                       (done, total, submission))

    def finish(self, submission: str, state: str, reason: str | None = None) -> None:
        """Set a final state, unless the submission was cancelled meanwhile."""
        assert state in FINAL
        with self._connect() as db:
            db.execute("UPDATE host_submissions SET state = ?, reason = ?, finished_at = ? WHERE id = ? "
                       "AND state != 'cancelled'", (state, reason, _now().isoformat(), submission))

    def close_round(self) -> list[str]:
        """Queue each token's newest scored submission on `holdout` (once); the new jobs' ids."""
        now = _now().isoformat()
        with self._connect() as db:
            newest = db.execute(
                "SELECT s.id, s.token, s.filename, s.sha256 FROM host_submissions s WHERE s.split = 'test' AND "
                "s.state = 'scored' AND s.created_at = (SELECT MAX(created_at) FROM host_submissions t WHERE "
                "t.token = s.token AND t.split = 'test' AND t.state = 'scored') AND NOT EXISTS (SELECT 1 FROM "
                "host_submissions h WHERE h.source = s.id AND h.split = 'holdout') ORDER BY s.created_at").fetchall()
            jobs = []
            for source, token, filename, sha256 in newest:
                jobs.append(uuid.uuid4().hex)
                db.execute(f"INSERT INTO host_submissions ({COLUMNS}) VALUES (?, ?, ?, ?, 0, 'queued', NULL, 0, NULL, "
                           "?, NULL, 'holdout', ?)", (jobs[-1], token, filename, sha256, now, source))
        return jobs

    def cancel(self, submission: str, token: str) -> Submission:
        """Cancel a submission of this token's that has not finished."""
        with self._connect() as db:
            row = db.execute("SELECT token, state FROM host_submissions WHERE id = ?", (submission,)).fetchone()
            if row is None or row[0] != token:
                raise StoreError(f"no submission {submission!r} of this token")
            if row[1] not in FINAL:
                db.execute("UPDATE host_submissions SET state = 'cancelled', finished_at = ? WHERE id = ?",
                           (_now().isoformat(), submission))
        return self.submission(submission)
