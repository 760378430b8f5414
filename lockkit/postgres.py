"""Host scope on PostgreSQL: PgLock, a lockkit lock on a session-level advisory lock.

Needs psycopg 3 (lockkit's extra ``postgres``). See docs/postgres.md for how it
compares with :mod:`lockkit.redis`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import select
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from threading import get_ident
from types import TracebackType
from typing import TYPE_CHECKING, Any

try:
    import psycopg
    from psycopg import errors as _pg_errors
except ImportError as exc:  # pragma: no cover - exercised only without psycopg
    raise ImportError(
        "lockkit.postgres needs psycopg 3: pip install 'psycopg[binary]' (lockkit's extra 'postgres')"
    ) from exc

from lockkit._internal import fork as _fork
from lockkit._internal import log as _log
from lockkit._internal.deadline import Deadline, check_timeout, monotonic, timeout_error
from lockkit._internal.held import acquire_layered
from lockkit._internal.held import held_names as _held_names
from lockkit._internal.stats import Counters
from lockkit._internal.threads import start_daemon
from lockkit.exceptions import LockLostError, LockTimeoutError, NotOwnerError
from lockkit.files._holder import hostname
from lockkit.files._info import LockInfo
from lockkit.sync._multi import acquire_all
from lockkit.sync._rwlock import RWLock

if TYPE_CHECKING:
    from lockkit._internal.snapshot import LockStatistics

__all__ = ["PgLock", "PgLockManager", "advisory_key"]

#: How often (seconds) the watcher checks every held session even when none has spoken.
CHECK_INTERVAL = 2.0
#: How often (seconds) the watcher takes in new holds, and waits for hang-ups between.
_PERIOD = 0.25
#: Seconds without any hold after which the watcher parks until the next acquisition.
_PARK_AFTER = 30.0
#: The ``application_name`` lockkit gives a holding session (at most 63 bytes: the thread
#: name may be cut short).
_LABEL = re.compile(r"lockkit pid=(?P<pid>\d+) host=(?P<host>\S+) thread=(?P<thread>.*)\Z", re.S)
#: ``pg_locks`` rows of the two-key advisory lock ``(%s, %s)`` (its keys are signed
#: ``int4``; ``pg_locks`` shows them as unsigned ``oid``).
KEY_ROWS = (
    "locktype = 'advisory' AND objsubid = 2"
    " AND classid = (%s::bigint & 4294967295)::oid AND objid = (%s::bigint & 4294967295)::oid"
)
#: Poll events of a session whose server hung up (a terminated backend, a restart).
_HANGUP = getattr(select, "POLLRDHUP", select.POLLIN) | select.POLLHUP | select.POLLERR
#: Idle connections a PgLock keeps for its next acquisitions.
_IDLE_MAX = 4


def advisory_key(name: str, namespace: str = "lockkit") -> tuple[int, int]:
    """The two ``int4`` advisory-lock keys of ``name`` in ``namespace``.

    The first 8 bytes of BLAKE2b over ``namespace``, a NUL byte and ``name`` (UTF-8),
    read as two big-endian signed 32-bit integers: a stable 64-bit hash, the same in
    every process, host and Python version. Two different names collide with
    probability 2**-64; among ``n`` names in use, about ``n**2 / 2**65`` (one in 3.7
    billion for a million names). The two-key form never collides with locks taken
    with a single ``bigint`` key.

    Raises:
        TypeError: ``name`` or ``namespace`` is not a string.
        ValueError: ``name`` is empty, or either contains a NUL character.
    """
    if not isinstance(name, str) or not isinstance(namespace, str):
        raise TypeError("lock names and namespaces must be strings")
    if not name:
        raise ValueError("lock name must be a non-empty string")
    if "\0" in name or "\0" in namespace:
        raise ValueError("lock names and namespaces must not contain NUL characters")
    digest = hashlib.blake2b(f"{namespace}\0{name}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest[:4], "big", signed=True), int.from_bytes(digest[4:], "big", signed=True)


class _Idle:
    """Idle sessions kept for the next acquisitions (one per PgLock, or shared by a PgLockManager's locks)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._reset_after_fork()
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        sessions = getattr(self, "_sessions", [])
        for session in sessions:
            _detach(session.conn)  # the parent's sessions: never used here
        self._mu = threading.Lock()
        self._sessions: list[_Session] = []

    def get(self) -> _Session | None:
        with self._mu:
            return self._sessions.pop() if self._sessions else None

    def put(self, session: _Session) -> bool:
        with self._mu:
            if len(self._sessions) < self.size and not session.conn.closed:
                self._sessions.append(session)
                return True
        return False

    def take_all(self) -> list[_Session]:
        with self._mu:
            sessions, self._sessions = self._sessions, []
        return sessions


class _Session:
    """One of lockkit's connections, with the settings last sent on it (sent again only when they change)."""

    __slots__ = ("conn", "label", "lock_timeout")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.label = ""
        self.lock_timeout = -1


@dataclass
class _Hold:
    session: _Session
    conn: Any
    token: int | None
    inherited: bool = False
    #: Set (under ``probe``) when the owner starts releasing: from then on the session
    #: is the owner's again, and the watcher must not send it anything.
    done: bool = False
    lost: bool = False
    probe: threading.Lock = field(default_factory=threading.Lock)


def _check(hold: _Hold) -> bool:
    """Whether ``hold``'s session is alive; ``True`` once its owner started releasing it."""
    with hold.probe:
        return hold.done or _alive(hold.conn)


def _detach(conn: Any) -> None:
    """In a forked child: point an inherited socket at /dev/null.

    Closing this copy (a finalizer at exit, say) can then never end the parent's session.
    """
    with contextlib.suppress(Exception):
        fd = conn.fileno()
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)


class _Watcher:
    """One daemon thread per process noticing held sessions that die.

    A session ended by the server (``pg_terminate_backend``, a restart) hangs up its
    socket, which wakes the watcher at once: it then checks it with ``SELECT 1``.
    Every session is also checked every :data:`CHECK_INTERVAL` seconds. The thread is
    started once per process and never woken by an acquisition (a thread start, or even
    a wake-up, per acquisition cost a large part of an uncontended lock's time): it
    looks at the holds every :data:`_PERIOD` seconds, and only after
    :data:`_PARK_AFTER` seconds without any hold does it park until the next one.
    """

    def __init__(self) -> None:
        self._reset_after_fork()

    def _reset_after_fork(self) -> None:
        self._mu = threading.Lock()
        self._held = threading.Condition(self._mu)
        self._holds: dict[tuple[int, int], tuple[PgLock, _Hold]] = {}
        self._thread: threading.Thread | None = None
        self._parked = False

    def add(self, lock: PgLock, ident: int, hold: _Hold) -> None:
        with self._mu:
            self._holds[(id(lock), ident)] = (lock, hold)
            if self._parked:
                self._parked = False
                self._held.notify()
            if self._thread is None:
                self._thread = start_daemon(self._run, "lockkit-pg-watch")

    def remove(self, lock: PgLock, ident: int) -> None:
        with self._mu:
            self._holds.pop((id(lock), ident), None)

    def _run(self) -> None:
        try:
            self._watch()
        finally:  # never expected; if it happens, the next add() starts a new watcher
            with self._mu:
                self._thread = None

    def _watch(self) -> None:
        last_full = last_held = monotonic()
        while True:
            with self._mu:
                while not self._holds:
                    if monotonic() - last_held < _PARK_AFTER:
                        self._held.wait(_PERIOD)
                    else:
                        self._parked = True  # the next add() wakes it
                        while self._parked:
                            self._held.wait()
                last_held = monotonic()
                items = list(self._holds.items())
            fds = {}
            unpollable = set()  # a closed connection has no descriptor: checked after this period
            for key, (_lock, hold) in items:
                try:
                    fds[hold.conn.fileno()] = key
                except Exception:
                    unpollable.add(key)
            # Only a peer that hung up wakes the watcher (not the replies the owners read),
            # so a busy lock costs the watcher nothing.
            # With nothing to register the poll is the period's wait.
            readable: list[int] = []
            poller = select.poll()
            for fd in fds:
                poller.register(fd, _HANGUP)
            with contextlib.suppress(OSError):
                readable = [fd for fd, _events in poller.poll(_PERIOD * 1000)]
            full = monotonic() - last_full >= CHECK_INTERVAL
            if full:
                last_full = monotonic()
            suspects = {fds[fd] for fd in readable if fd in fds} | unpollable if not full else {key for key, _ in items}
            for key, (lock, hold) in items:
                if key in suspects and not _check(hold):
                    with self._mu:
                        still = self._holds.pop(key, None)
                    if still is not None:
                        lock._mark_lost(hold)


def _alive(conn: Any) -> bool:
    try:
        conn.execute("SELECT 1")
    except Exception:
        return False
    return True


_watcher = _Watcher()
_fork.register(_watcher)


_fence_ready: set[tuple[str, str]] = set()
_fence_mu = threading.Lock()


class PgLock:
    """A PostgreSQL session-level advisory lock with lockkit's lock contract.

    Fairness: FIFO across processes and hosts. Waiters queue in the server's lock
    manager, which grants in arrival order; threads of one process using one
    ``PgLock`` object queue FIFO locally first.

    Ownership: each hold belongs to the thread that took it, on a connection (a
    database session) of its own that lockkit opens from ``conninfo`` and never shares
    with the application's queries. Reentrancy: none
    (:class:`~lockkit.exceptions.DeadlockError`, or ``False`` for a try).

    Crash release: the server releases a session's advisory locks when the session
    ends, so a holder that dies (even by ``kill -9``) frees the lock as soon as the
    server sees its connection close. Loss: a hold whose session ends while held (the
    server restarts, ``pg_terminate_backend``, a cut network noticed by a check) is
    lost: ``on_lost(lock)`` is called from a watcher thread, :attr:`lost` is set, and
    the next :meth:`release` or :meth:`assert_held` raises
    :class:`~lockkit.exceptions.LockLostError`.

    Fencing: every exclusive hold gets :attr:`fencing_token` from a database sequence
    (``fence_sequence``, created on first use), taken on the hold's session the first
    time it is read: strictly greater than every earlier token of every PgLock on that
    database. Holds that never read it cost no sequence update. Pass it to
    ``JsonDocument``/``JsonRepository`` ``fencing_token=``. ``fence_sequence=None``
    skips it (no token).

    Timeouts: waits run in the server with ``lock_timeout`` set to what is left of the
    caller's timeout; ``0`` is one ``pg_try_advisory_lock``.

    Interrupts: an exception (``KeyboardInterrupt``, say) during the wait closes that
    session, which drops whatever it was granted: an interrupted acquire never leaves
    the lock held. Fork: a forked child never uses its parent's sessions; the forking
    thread's hold is kept locally (leaving a ``with`` block works) and releasing it in
    the child only forgets it.

    Sessions behind a transaction-pooling proxy (PgBouncer ``pool_mode=transaction``)
    cannot hold session-level locks: each new connection is checked once and refused
    with :class:`~lockkit.exceptions.LockLostError` when the check sees it (it cannot
    see every such proxy; connect to PostgreSQL directly or through session pooling).

    Args:
        conninfo: A libpq connection string or URL, or a function returning a new
            ``psycopg.Connection`` (lockkit sets autocommit on it).
        name: The lock's name (hashed with :func:`advisory_key`).
        shared: Take the lock in shared mode.
        timeout: Default timeout for ``with`` (``None`` waits forever).
        namespace: Keeps names of different applications apart.
        on_lost: Called with the lock (from the watcher thread) when a hold is lost.
        fence_sequence: The sequence fencing tokens come from, or ``None``.

    Raises:
        TypeError: ``conninfo`` is neither a string nor a callable (a connection object
            cannot be used: lockkit needs sessions of its own).
        ValueError: An empty name, or a NUL character in it.
    """

    def __init__(
        self,
        conninfo: str | Callable[[], Any],
        name: str,
        *,
        shared: bool = False,
        timeout: float | None = None,
        namespace: str = "lockkit",
        on_lost: Callable[[PgLock], None] | None = None,
        fence_sequence: str | None = "lockkit_fence",
    ) -> None:
        if isinstance(conninfo, psycopg.Connection):
            raise TypeError(
                "PgLock needs sessions of its own: pass the connection string (or a function that "
                "connects), not a connection the application also uses"
            )
        if not isinstance(conninfo, str) and not callable(conninfo):
            raise TypeError(f"conninfo must be a connection string or a callable, not {type(conninfo).__name__}")
        self.key = advisory_key(name, namespace)
        # The key is two ints lockkit computed: written into the statements, which then
        # need no parameters (about 10 % of an uncontended acquire+release).
        mode = "_shared" if shared else ""
        key_sql = f"{self.key[0]:d}, {self.key[1]:d}"
        self._sql_lock = f"SELECT pg_advisory_lock{mode}({key_sql})"
        self._sql_try = f"SELECT pg_try_advisory_lock{mode}({key_sql})"
        self._sql_unlock = f"SELECT pg_advisory_unlock{mode}({key_sql})"
        self.name = name
        self._conninfo = conninfo
        self._shared = shared
        self._timeout = check_timeout(True, timeout)
        self._on_lost = on_lost
        self._fence_sequence = fence_sequence
        self._target = conninfo if isinstance(conninfo, str) else f"callable:{id(conninfo)}"
        self._held_key = f"postgres|{self._target}|{self.key[0]}:{self.key[1]}"
        self._local = RWLock(name=f"postgres:{name}")
        self._holds: dict[int, _Hold] = {}
        self._idle = _Idle(_IDLE_MAX)
        self._mu = threading.Lock()
        self._stats = Counters()
        self._acquisitions = 0
        self._losses = 0
        self.lost = False
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        me = get_ident()
        self._mu = threading.Lock()
        for hold in self._holds.values():
            _detach(hold.conn)
        mine = self._holds.get(me)
        if mine is not None:
            mine.inherited = True
            mine.probe = threading.Lock()
        self._holds = {} if mine is None else {me: mine}

    # -- sessions -------------------------------------------------------------------------

    def _connect(self) -> _Session:
        idle = self._idle.get()
        if idle is not None:
            return idle
        if isinstance(self._conninfo, str):
            conn = psycopg.connect(self._conninfo, autocommit=True)
        else:
            conn = self._conninfo()
            conn.autocommit = True
        try:
            self._check_session(conn)
            self._ensure_sequence(conn)
        except BaseException:
            conn.close()
            raise
        return _Session(conn)

    def _check_session(self, conn: Any) -> None:
        """Refuse a connection whose statements may run in different sessions (transaction pooling)."""
        probe = advisory_key(f"session-probe:{os.getpid()}:{get_ident()}:{id(conn)}", "lockkit.probe")
        conn.execute("SELECT pg_advisory_lock(%s, %s)", probe)
        try:
            row = conn.execute(
                f"SELECT count(*) FROM pg_locks WHERE {KEY_ROWS} AND pid = pg_backend_pid() AND granted",
                probe,
            ).fetchone()
        finally:
            conn.execute("SELECT pg_advisory_unlock_all()")
        if not row or row[0] != 1:
            raise LockLostError(
                "this connection does not keep one database session across statements (a transaction-pooling "
                "proxy?): session-level advisory locks would be silently lost; connect directly or use session pooling"
            )

    def _ensure_sequence(self, conn: Any) -> None:
        if self._fence_sequence is None or self._shared:
            return
        ready_key = (self._target, self._fence_sequence)
        with _fence_mu:
            if ready_key in _fence_ready:
                return
        with contextlib.suppress(_pg_errors.UniqueViolation, _pg_errors.DuplicateTable):  # created meanwhile
            conn.execute(f"CREATE SEQUENCE IF NOT EXISTS {_ident(self._fence_sequence)}")
        with _fence_mu:
            _fence_ready.add(ready_key)

    def _give_back(self, session: _Session) -> None:
        if self._idle.put(session):
            return
        with contextlib.suppress(Exception):
            session.conn.close()

    # -- acquire / release ------------------------------------------------------------------

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire the lock for the calling thread.

        Args:
            blocking: ``False`` makes one attempt.
            timeout: Seconds to wait at most; ``None`` waits forever; ``0`` is one attempt.

        Returns:
            ``True`` if acquired, ``False`` if the attempt or the timeout ran out.

        Raises:
            DeadlockError: The calling thread already holds this lock (through any PgLock).
            psycopg.OperationalError: The database cannot be reached.
            LockLostError: The connection cannot keep a session (transaction pooling).
        """
        t = check_timeout(blocking, timeout)
        hold = acquire_layered(
            self._held_key,
            f"postgres lock {self.name!r}",
            t,
            self._local,
            self._shared,
            self._count_local_timeout,
            self._acquire_remote,
        )
        if hold is None:
            return False
        me = get_ident()
        self._holds[me] = hold
        _watcher.add(self, me, hold)
        return True

    def _count_local_timeout(self) -> None:
        with self._mu:
            self._stats.contentions += 1

    def _acquire_remote(self, deadline: Deadline) -> _Hold | None:
        session = self._connect()
        conn = session.conn
        left = deadline.remaining()
        wait = left is None or left > 0
        ms = 0 if left is None else max(1, math.ceil(left * 1000))
        label = f"lockkit pid={os.getpid()} host={hostname()} thread={threading.current_thread().name}"[:63]
        try:
            # Settings that changed since this session last sent them go in the same round
            # trip as the lock statement; usually nothing has changed and it is one statement.
            settings = []
            if session.label != label:
                settings.append(("SELECT set_config('application_name', %s, false)", (label,)))
            if wait and session.lock_timeout != ms:
                settings.append(("SELECT set_config('lock_timeout', %s, false)", (f"{ms}ms",)))
            if settings:
                with conn.pipeline():
                    for query, params in settings:
                        conn.execute(query, params)
                    cur = conn.execute(self._sql_lock if wait else self._sql_try)
                session.label = label
                if wait:
                    session.lock_timeout = ms
            else:
                cur = conn.execute(self._sql_lock if wait else self._sql_try)
            row = cur.fetchone()
        except _pg_errors.LockNotAvailable:
            session.label, session.lock_timeout = label, ms
            self._give_back(session)  # the wait timed out in the server: nothing was granted
            with self._mu:
                self._stats.contentions += 1
                self._stats.waited(monotonic() - deadline.start, False, self.name)
            return None
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()  # the session ends: whatever it was granted is released with it
            raise
        # pg_advisory_lock returns (void) once granted; pg_try_advisory_lock says whether it was.
        granted = row is not None and (wait or bool(row[0]))
        if not granted:
            self._give_back(session)
            with self._mu:
                self._stats.contentions += 1
            return None
        with self._mu:
            self._acquisitions += 1
            self.lost = False  # under the lock, as the watcher's report that sets it
        return _Hold(session, conn, None)

    def release(self) -> None:
        """Release the calling thread's hold.

        Raises:
            NotOwnerError: The calling thread does not hold this lock.
            LockLostError: The hold was lost before this release (nothing left to release).
        """
        me = get_ident()
        hold = self._holds.pop(me, None)
        if hold is None:
            raise NotOwnerError(f"postgres lock {self.name!r} is not held by this thread")
        _watcher.remove(self, me)
        with hold.probe:  # waits for a check in progress; the watcher leaves it alone from now on
            hold.done = True
        try:
            if hold.inherited:
                return  # a forked child forgets its parent's hold
            try:
                row = hold.conn.execute(self._sql_unlock).fetchone()
            except Exception:
                row = None
            if not row or not row[0]:
                with contextlib.suppress(Exception):
                    hold.conn.close()
                self._mark_lost(hold, notify=False)
                raise LockLostError(f"postgres lock {self.name!r} was lost before release (its session ended)")
            self._give_back(hold.session)
        finally:
            self._local.release()
            _held_names.drop(self._held_key, me)

    def _mark_lost(self, hold: _Hold, notify: bool = True) -> None:
        with self._mu:
            if hold.inherited or hold.lost:
                return  # reported once, by whoever noticed first (the watcher, a check, a release)
            hold.lost = True
            self._losses += 1
            self.lost = True
        _log.warning("lockkit.lock_lost", lock=self.name)
        if notify and self._on_lost is not None:
            try:
                self._on_lost(self)
            except Exception as exc:
                _log.warning("lockkit.on_lost_failed", lock=self.name, error=type(exc).__name__)

    def assert_held(self) -> None:
        """Raise unless the calling thread holds the lock on a live session.

        Raises:
            NotOwnerError: The calling thread does not hold it.
            LockLostError: Its session ended.
        """
        hold = self._holds.get(get_ident())
        if hold is None:
            raise NotOwnerError(f"postgres lock {self.name!r} is not held by this thread")
        if hold.inherited:
            return
        if not _check(hold):
            raise self._noticed_lost(hold)

    def _noticed_lost(self, hold: _Hold) -> LockLostError:
        """The owner found its hold's session ended: stop watching it, report it once, and say so."""
        _watcher.remove(self, get_ident())
        self._mark_lost(hold)
        return LockLostError(f"postgres lock {self.name!r} was lost (its session ended)")

    @property
    def fencing_token(self) -> int | None:
        """The token of the calling thread's exclusive hold.

        Taken from the fence sequence the first time it is read during a hold, in one
        round trip on the hold's own session (holds that never use a token cost no
        sequence update): strictly greater than every token handed out before on that
        database, and smaller than every later holder's. A session that still answers
        still holds the lock, so a hold whose session ended never gets a fresh token.

        Returns:
            The token, or ``None`` when the calling thread does not hold the lock, holds
            it shared, the lock has no fence sequence, or the hold was inherited from
            the parent process (a forked child cannot use its parent's session).

        Raises:
            LockLostError: The hold's session ended before the token was taken.
        """
        hold = self._holds.get(get_ident())
        if hold is None:
            return None
        if hold.token is None and self._fence_sequence is not None and not self._shared and not hold.inherited:
            hold.token = self._take_token(hold)
        return hold.token

    def _take_token(self, hold: _Hold) -> int:
        query = f"SELECT nextval('{_ident(self._fence_sequence or '')}')"
        with hold.probe:  # never beside a watcher's check on the same session
            try:
                return int(hold.conn.execute(query).fetchone()[0])
            except Exception as exc:
                if not (hold.conn.closed or hold.conn.broken):
                    raise  # the session answers (the sequence was dropped, say): the lock is still held
                failure = exc
        raise self._noticed_lost(hold) from failure

    def __enter__(self) -> PgLock:
        if not self.acquire(True, self._timeout):
            raise self._timeout_error(self._timeout)
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    # -- introspection ----------------------------------------------------------------------

    def holder(self) -> LockInfo | None:
        """Who holds the lock, from ``pg_locks`` and ``pg_stat_activity`` (``None`` if free)."""
        session = self._connect()
        try:
            rows = session.conn.execute(
                "SELECT l.mode, a.pid, a.application_name, extract(epoch FROM a.state_change)"
                f" FROM (SELECT * FROM pg_locks WHERE {KEY_ROWS} AND granted) AS l"
                " JOIN pg_stat_activity a ON a.pid = l.pid",
                self.key,
            ).fetchall()
        finally:
            self._give_back(session)
        if not rows:
            return None
        if any(mode == "ShareLock" for mode, *_ in rows):
            return LockInfo(None, None, None, None, True, 0)
        _mode, backend, app, since = rows[0]
        at = None if since is None else float(since)
        if not str(app or "").startswith("lockkit "):  # another program's session: only its backend is known
            return LockInfo(int(backend), "the database server (backend pid)", None, at, False, 0, recorded=False)
        m = _LABEL.match(str(app))
        if m is None:
            return LockInfo(int(backend), "the database server (backend pid)", None, at, False, 0, recorded=False)
        return LockInfo(int(m["pid"]), m["host"], m["thread"], at, False, 0)

    def _timeout_error(self, timeout: float | None) -> LockTimeoutError:
        info = None
        with contextlib.suppress(Exception):
            info = self.holder()
        return timeout_error(
            f"postgres lock {self.name!r}",
            timeout,
            resource=self.name,
            holder=None if info is None else info.describe(),
        )

    def locked(self) -> bool:
        """Whether any session holds the lock (one query)."""
        return self.holder() is not None

    def statistics(self) -> LockStatistics:
        """Counters of this object: acquisitions, contentions, waits, plus the local queue."""
        local = self._local.statistics()
        with self._mu:
            return self._stats.merged(local, self.name, self._acquisitions, held=bool(self._holds))

    def close(self) -> None:
        """Close the idle sessions this object keeps (held ones stay until released)."""
        for session in self._idle.take_all():
            with contextlib.suppress(Exception):
                session.conn.close()

    def __repr__(self) -> str:
        return f"<lockkit.postgres.PgLock {self.name!r} {'shared' if self._shared else 'exclusive'}>"


def _ident(name: str) -> str:
    """A (possibly schema-qualified) SQL identifier, each part quoted."""
    parts = name.split(".")
    if not all(parts) or any('"' in p or "\0" in p for p in parts):
        raise ValueError(f"not a valid sequence name: {name!r}")
    return ".".join(f'"{p}"' for p in parts)


class PgLockManager:
    """Keyed PostgreSQL locks: one :class:`PgLock` per name, sharing a pool of idle sessions.

    Args:
        conninfo: As for :class:`PgLock`.
        namespace: The namespace of every name.
        idle: How many idle sessions to keep for the next acquisitions.
        **options: Defaults for every lock (``timeout``, ``on_lost``, ``fence_sequence``).
    """

    def __init__(
        self, conninfo: str | Callable[[], Any], namespace: str = "lockkit", *, idle: int = 8, **options: Any
    ) -> None:
        self._conninfo = conninfo
        self._namespace = namespace
        self._options = options
        self._idle = _Idle(idle)

    def get(self, name: str, *, shared: bool = False, **options: Any) -> PgLock:
        """A :class:`PgLock` for ``name`` drawing on the manager's idle sessions."""
        lock = PgLock(self._conninfo, name, shared=shared, namespace=self._namespace, **{**self._options, **options})
        lock._idle = self._idle
        return lock

    @contextlib.contextmanager
    def lock(self, *names: str, shared: bool = False, timeout: float | None = None) -> Iterator[list[PgLock]]:
        """Hold several names at once, taken in one order (by key) with one deadline: deadlock-free.

        Raises:
            LockTimeoutError: The deadline ran out; names already taken are released.
        """

        def take(lock: PgLock, left: float | None) -> PgLock | None:
            return lock if lock.acquire(timeout=left) else None

        def by_key(ls: Iterable[PgLock]) -> list[PgLock]:
            return sorted(ls, key=lambda lock: lock.key)

        locks = [self.get(name, shared=shared) for name in dict.fromkeys(names)]
        taken, missed = acquire_all(locks, take, PgLock.release, timeout=timeout, order=by_key)
        if missed:
            raise missed[0]._timeout_error(timeout)
        try:
            yield taken
        finally:
            for lock in reversed(taken):
                lock.release()

    def close(self) -> None:
        """Close the idle sessions."""
        for session in self._idle.take_all():
            with contextlib.suppress(Exception):
                session.conn.close()
