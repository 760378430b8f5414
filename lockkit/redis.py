"""Host scope: RedisLock, a lockkit lock on a Redis server (needs redis-py: lockkit's extra ``redis``).

Same contract as every lockkit lock, across hosts: FIFO tickets in Redis (a sorted set,
each ticket with its own expiry so a crashed waiter does not block the queue), the head
waiter woken by a blocking list pop (no polling storm, with a bounded fallback poll),
a lease renewed by a background thread, loss detection, and fencing tokens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from threading import get_ident
from types import TracebackType
from typing import Any

try:
    import redis as _redis
    from redis.backoff import NoBackoff as _NoBackoff
    from redis.retry import Retry as _Retry
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError("lockkit.redis needs redis-py: pip install redis (or lockkit's extra 'redis')") from exc

from lockkit._internal import fork as _fork
from lockkit._internal import log as _log
from lockkit._internal.deadline import Deadline, check_timeout, monotonic, timeout_error
from lockkit._internal.held import acquire_layered
from lockkit._internal.held import held_names as _held_names
from lockkit._internal.snapshot import LockStatistics
from lockkit._internal.stats import Counters
from lockkit._internal.threads import start_daemon
from lockkit.exceptions import (
    LockLostError,
    LockTimeoutError,
    NotOwnerError,
)
from lockkit.files._holder import hostname, start_token
from lockkit.files._info import LockInfo
from lockkit.resilience._classify import ErrorClass
from lockkit.resilience._retry import RetryPolicy
from lockkit.sync._multi import acquire_all
from lockkit.sync._rwlock import RWLock

__all__ = ["RedisLock", "RedisLockManager", "RedisLockStatistics"]

#: A waiter refreshes its ticket at least this often (seconds) and wakes at least this often.
POLL = 0.25
#: A ticket not refreshed for this long (ms) belongs to a crashed waiter and is dropped.
TICKET_TTL_MS = 3000

# KEYS: 1 holder, 2 readers, 3 fence, 4 queue, 5 queue expiries, 6 sequence
# ARGV: 1 token, 2 lease ms, 3 ticket ("" for none), 4 mode ("x"/"s"), 5 info json, 6 blocking ("1"/"0"),
#       7 ticket time-to-live ms
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- drop tickets of crashed waiters and expired readers
local members = redis.call('ZRANGE', KEYS[4], 0, -1)
for _, m in ipairs(members) do
  local exp = tonumber(redis.call('HGET', KEYS[5], m) or '0')
  if exp < now then redis.call('ZREM', KEYS[4], m); redis.call('HDEL', KEYS[5], m) end
end
local readers = redis.call('HGETALL', KEYS[2])
local live = 0
for i = 1, #readers, 2 do
  if tonumber(readers[i + 1]) < now then redis.call('HDEL', KEYS[2], readers[i]) else live = live + 1 end
end
local ticket = ARGV[3]
local mode = ARGV[4]
-- a retry after a lost reply: the grant is already ours (same token), hand it back
local held = redis.call('GET', KEYS[1])
local ours = false
if mode == 'x' and held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  ours = tonumber(string.match(held, '^%S+ (%d+)'))
elseif mode == 's' and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  ours = tonumber(redis.call('GET', KEYS[3]) or '0')
end
if ours then
  if ticket ~= '' then redis.call('ZREM', KEYS[4], ticket); redis.call('HDEL', KEYS[5], ticket) end
  return {1, ours}
end
local free = redis.call('EXISTS', KEYS[1]) == 0 and (mode == 's' or live == 0)
if free then
  -- FIFO: nobody queued ahead of us (for a reader: no writer ahead of us)
  local ahead
  if ticket == '' then ahead = redis.call('ZRANGE', KEYS[4], 0, -1)
  else ahead = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. redis.call('ZSCORE', KEYS[4], ticket)) end
  for _, m in ipairs(ahead) do
    if mode == 'x' or string.sub(m, -1) == 'x' then free = false; break end
  end
end
if free then
  if ticket ~= '' then redis.call('ZREM', KEYS[4], ticket); redis.call('HDEL', KEYS[5], ticket) end
  local lease = tonumber(ARGV[2])
  local fence = 0
  if mode == 'x' then
    fence = redis.call('INCR', KEYS[3])
    if fence < now_us then  -- never below the server clock: survives a restart that lost the counter
      redis.call('SET', KEYS[3], string.format('%.0f', now_us)); fence = now_us
    end
    -- holder key: "<token> <fence> <acquired ms> <info json>"; release/renew check the token
    local value = ARGV[1] .. ' ' .. string.format('%.0f', fence) .. ' ' .. now .. ' ' .. ARGV[5]
    redis.call('SET', KEYS[1], value, 'PX', lease)
  else
    redis.call('HSET', KEYS[2], ARGV[1], now + lease)
    local cur = redis.call('PTTL', KEYS[2])
    if cur < lease then redis.call('PEXPIRE', KEYS[2], lease) end
    fence = tonumber(redis.call('GET', KEYS[3]) or '0')
  end
  return {1, fence}
end
if ARGV[6] ~= '1' then return {0, ''} end
if ticket == '' then ticket = redis.call('INCR', KEYS[6]) .. ':' .. mode end
if redis.call('ZSCORE', KEYS[4], ticket) == false then
  redis.call('ZADD', KEYS[4], tonumber(string.match(ticket, '^(%d+)')), ticket)
end
redis.call('HSET', KEYS[5], ticket, now + tonumber(ARGV[7]))
return {0, ticket}
"""

# KEYS: 1 holder, 2 readers, 3 queue, 4 queue expiries; ARGV: 1 token, 2 mode, 3 wake prefix
_RELEASE = """
local ok = 0
if ARGV[2] == 'x' then
  local v = redis.call('GET', KEYS[1])
  if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then redis.call('DEL', KEYS[1]); ok = 1 end
else
  ok = redis.call('HDEL', KEYS[2], ARGV[1])
end
-- wake the head of the queue (and the readers right behind a reading head)
local members = redis.call('ZRANGE', KEYS[3], 0, -1)
for _, m in ipairs(members) do
  local key = ARGV[3] .. m
  redis.call('RPUSH', key, '1'); redis.call('PEXPIRE', key, 10000)
  if string.sub(m, -1) == 'x' then break end
end
return ok
"""

# KEYS: 1 holder, 2 readers; ARGV: 1 token, 2 mode, 3 lease ms
_RENEW = """
local lease = tonumber(ARGV[3])
if ARGV[2] == 'x' then
  local v = redis.call('GET', KEYS[1])
  if not v or string.sub(v, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then return 0 end
  redis.call('PEXPIRE', KEYS[1], lease)
  return 1
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[1], now + lease)
if redis.call('PTTL', KEYS[2]) < lease then redis.call('PEXPIRE', KEYS[2], lease) end
return 1
"""


class _Connections:
    """lockkit's own connections to one server, made from the client's settings.

    Kept apart from the application's pool so that lockkit can bound every socket
    operation (connect, handshake, each reply) without changing how the application's
    connections behave, and so that redis-py's own retries (which would multiply the
    bound) never run: lockkit retries within the caller's time itself. A forked child
    never uses its parent's connections.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._free: list[Any] = []
        self._mu = threading.Lock()
        self._pid = os.getpid()
        #: Set when a command may have reached the server (reset by the one acquiring
        #: thread before each attempt). Other threads of the lock only ever set it, so
        #: a failure is never taken for "nothing was sent" when something may have been.
        self.sent = False

    def get(self) -> Any:
        with self._mu:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._free, self._pid = [], os.getpid()
            if self._free:
                return self._free.pop()
        conn = self._pool.connection_class(**self._pool.connection_kwargs)
        conn.retry = _Retry(_NoBackoff(), 0)
        return conn

    def put(self, conn: Any) -> None:
        with self._mu:
            if self._pid == os.getpid() and len(self._free) < 16:
                self._free.append(conn)
                return
        conn.disconnect()


_connections: weakref.WeakKeyDictionary[Any, _Connections] = weakref.WeakKeyDictionary()
_connections_mu = threading.Lock()


def _connections_for(client: _redis.Redis) -> _Connections:
    pool = client.connection_pool
    with _connections_mu:
        conns = _connections.get(pool)
        if conns is None:
            conns = _connections[pool] = _Connections(pool)
        return conns


def _connect_within(conn: Any, left: float) -> None:
    """Connect ``conn`` (if it is not) without waiting more than ``left`` seconds.

    The TCP connect and the handshake (``HELLO``, ``CLIENT SETINFO``: a paused server
    accepts connections and never answers them) both get ``left`` as their timeout; the
    socket gets the client's own timeout back afterwards, so the application's use of
    its pool is unchanged.
    """
    if getattr(conn, "_sock", None) is not None:
        return
    connect_timeout, socket_timeout = conn.socket_connect_timeout, conn.socket_timeout
    conn.socket_connect_timeout = left if connect_timeout is None else min(connect_timeout, left)
    conn.socket_timeout = left if socket_timeout is None else min(socket_timeout, left)
    try:
        conn.connect()
    finally:
        conn.socket_connect_timeout, conn.socket_timeout = connect_timeout, socket_timeout
    sock = getattr(conn, "_sock", None)
    if sock is not None:
        sock.settimeout(socket_timeout)


def _bounded(conns: _Connections, until: float | None, *commands: tuple[Any, ...]) -> list[Any]:
    """Run ``commands`` (pipelined, one round trip) without waiting past ``until`` (monotonic).

    Every socket operation is bounded by the time left: the connect, and the wait for
    each reply. A reply that does not come in time raises ``redis.TimeoutError`` and the
    connection is dropped (its state is unknown), never reused. ``until=None`` waits as
    long as the server takes.
    """
    conn = conns.get()
    try:
        if until is not None:
            left = until - monotonic()
            if left <= 0:
                raise _redis.TimeoutError("lockkit: no time left for the redis call")
            _connect_within(conn, left)
        conns.sent = True  # from here on a failure is ambiguous: the server may have run it
        conn.send_packed_command(conn.pack_commands(commands))
        replies = []
        for _ in commands:
            if until is not None and not conn.can_read(timeout=max(0.0, until - monotonic())):
                raise _redis.TimeoutError("lockkit: the redis server did not answer in time")
            replies.append(conn.read_response())
        return replies
    except BaseException:
        conn.disconnect()  # its state is unknown: a fresh connection next time
        raise
    finally:
        conns.put(conn)


def _run_script(conns: _Connections, script: Any, until: float | None, keys: list[str], args: list[Any]) -> Any:
    """``EVALSHA`` (loading the script when the server lacks it), bounded like :func:`_bounded`."""
    try:
        return _bounded(conns, until, ("EVALSHA", script.sha, len(keys), *keys, *args))[0]
    except _redis.exceptions.NoScriptError:
        _bounded(conns, until, ("SCRIPT", "LOAD", script.script))
        return _bounded(conns, until, ("EVALSHA", script.sha, len(keys), *keys, *args))[0]


#: Bound (seconds) for calls that have no caller deadline: release, cancel, introspection.
CALL_BOUND = 5.0

_TRANSIENT = RetryPolicy(
    attempts=6,
    timeout=5.0,
    wait_initial=0.05,
    wait_max=0.5,
    retry_on=frozenset({ErrorClass.TRANSIENT, ErrorClass.TIMEOUT}),
    on_retry=None,
    name="lockkit.redis",
)


@dataclass(frozen=True, slots=True)
class RedisLockStatistics:
    """Lock statistics plus the lease counters of a :class:`RedisLock`.

    Attributes:
        lock: The common :class:`~lockkit.LockStatistics`.
        renewals: Successful lease renewals.
        losses: Holds found lost (lease expired, key gone, server unreachable past the lease).
    """

    lock: LockStatistics
    renewals: int
    losses: int


class _Lease:
    """One thread's hold in Redis: its token, local lease deadline and fencing token.

    ``released`` is set before the release script runs, so a renewal racing the
    release never reports the clean release as a loss; ``inherited`` marks a hold a
    forked child inherited from its parent (the child never touches it in Redis).
    """

    __slots__ = ("deadline", "fencing_token", "ident", "inherited", "lost", "released", "token")

    def __init__(self, token: str, deadline: float, fencing_token: int) -> None:
        self.ident = get_ident()
        self.released = False
        self.inherited = False
        self.token = token
        self.deadline = deadline
        self.fencing_token = fencing_token
        self.lost = False


class _Renewer:
    """One daemon thread per process renewing every auto-renewed hold at lease / 3."""

    def __init__(self) -> None:
        self._reset_after_fork()

    def _reset_after_fork(self) -> None:
        self._mu = threading.Lock()
        self._holds: dict[tuple[int, int], tuple[RedisLock, _Lease]] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._wakes_at = float("inf")  # when the thread wakes next (inf while it is planning)

    def add(self, lock: RedisLock, ident: int, hold: _Lease) -> None:
        due = hold.deadline - lock.lease * 2 / 3
        with self._mu:
            self._holds[(id(lock), ident)] = (lock, hold)
            if self._thread is None or not self._thread.is_alive():
                self._thread = start_daemon(self._run, "lockkit-redis-renew")
            elif due >= self._wakes_at:
                return  # the thread wakes before this hold's first renewal anyway
        self._wake.set()

    def remove(self, lock: RedisLock, ident: int) -> None:
        with self._mu:
            self._holds.pop((id(lock), ident), None)

    def _run(self) -> None:
        while True:
            with self._mu:
                self._wake.clear()  # before the snapshot: an add() after it sets the event again
                self._wakes_at = float("inf")
                items = list(self._holds.items())
            now = monotonic()
            soonest = 1.0
            for key, (lock, hold) in items:
                due = hold.deadline - lock.lease * 2 / 3  # renew at a third of the lease
                if now >= due:
                    lock._renew(hold, key[1])
                    due = hold.deadline - lock.lease * 2 / 3
                soonest = min(soonest, max(0.05, due - monotonic()))
            with self._mu:
                self._wakes_at = monotonic() + soonest
            self._wake.wait(soonest)


_renewer = _Renewer()
_infos: dict[int, str] = {}
_infos_mu = threading.Lock()  # evicting while another thread inserts must not raise (no GIL to rely on)
os.register_at_fork(after_in_child=_infos.clear)  # a forked child rebuilds them with its own pid
_fork.register(_renewer)


class RedisLock:
    """A lock held in Redis: exclusive or shared, FIFO across hosts, leased, fenced.

    Fairness: FIFO across hosts. Waiters take tickets from a sorted set; a release wakes
    the head (and the readers right behind a reading head) through a blocking list pop,
    with a bounded fallback poll. Tickets carry their own expiry, refreshed while
    waiting, so a crashed waiter leaves the queue within seconds. Threads of one process
    using one ``RedisLock`` object queue FIFO locally first, and each hold has its own
    token.

    Ownership: each hold belongs to the thread that took it (its own random token);
    release and renewal only ever touch the caller's own token, so a holder never
    deletes a successor's lock. Reentrancy: none (:class:`~lockkit.exceptions.DeadlockError`).

    Lease: the key expires ``lease`` seconds after acquisition if the holder dies. With
    ``auto_renew`` a background thread extends it every ``lease / 3``. The lease
    deadline is tracked on the local monotonic clock from *before* the acquire call and
    never trusted past it: if a renewal fails, finds the lock gone, or cannot reach the
    server before the deadline, the hold is lost: ``on_lost(lock)`` is called, the
    :attr:`lost` flag is set, and the next :meth:`release` or :meth:`assert_held`
    raises :class:`~lockkit.exceptions.LockLostError`.

    Fencing: every exclusive acquisition gets :attr:`fencing_token`, strictly greater
    than every earlier one for this name (an ``INCR`` inside the acquire script, never
    below the server's clock in microseconds, so a restart that lost the counter does
    not make tokens go back). Pass it to storage that rejects older writers.

    Args:
        client: A ``redis.Redis`` client.
        name: The lock's name (keys are ``<prefix><name>:...``).
        lease: Lease in seconds.
        shared: Take the lock in shared (reader) mode.
        timeout: Default timeout for ``with`` (``None`` waits forever).
        auto_renew: Renew the lease in the background while held.
        on_lost: Called with the lock (from the renewal thread) when a hold is lost.
        prefix: Key prefix.

    Raises:
        TypeError: ``client`` is not a ``redis.Redis``.
        ValueError: ``name`` is empty or ``lease`` is not positive.
    """

    def __init__(
        self,
        client: _redis.Redis,
        name: str,
        *,
        lease: float = 30.0,
        shared: bool = False,
        timeout: float | None = None,
        auto_renew: bool = True,
        on_lost: Callable[[RedisLock], None] | None = None,
        prefix: str = "lockkit:",
    ) -> None:
        if not isinstance(client, _redis.Redis):
            raise TypeError(f"client must be a redis.Redis, not {type(client).__name__}")
        if not isinstance(name, str) or not name:
            raise ValueError("lock name must be a non-empty string")
        if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not lease > 0:
            raise ValueError("lease must be a positive number of seconds")
        self._client = client
        self.name = name
        self.lease = float(lease)
        self._shared = shared
        self._mode = "s" if shared else "x"
        self._timeout = check_timeout(True, timeout)
        self._auto_renew = auto_renew
        self._on_lost = on_lost
        base = f"{prefix}{name}"
        self._keys = {k: f"{base}:{k}" for k in ("holder", "readers", "fence", "queue", "qexp", "seq")}
        self._wake_prefix = f"{base}:wake:"
        server = client.connection_pool.connection_kwargs
        self._held_key = f"{server.get('host')}:{server.get('port')}:{server.get('path')}:{server.get('db')}:{base}"
        self._conns = _connections_for(client)  # looked up once: not on every call
        self._acquire_script = client.register_script(_ACQUIRE)
        self._release_script = client.register_script(_RELEASE)
        self._renew_script = client.register_script(_RENEW)
        self._local = RWLock(name=f"redis:{name}")
        self._holds: dict[int, _Lease] = {}
        self._tickets: dict[int, int | None] = {}
        self._mu = threading.Lock()
        self._stats = Counters()
        self._acquisitions = 0
        self._renewals = 0
        self._losses = 0
        self.lost = False
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        # A forked child never touches its parent's holds in Redis: the forking thread
        # keeps its hold locally (leaving a ``with`` block works) but releasing it only
        # forgets it; other threads' holds are dropped. The renewer is reset as well.
        me = get_ident()
        self._mu = threading.Lock()
        mine = self._holds.get(me)
        if mine is not None:
            mine.inherited = True
        self._holds = {} if mine is None else {me: mine}
        self._tickets = {k: v for k, v in self._tickets.items() if k == me}

    # -- acquire ------------------------------------------------------------------------

    def _info(self) -> str:
        key = get_ident()
        info = _infos.get(key)
        if info is None:
            info = _infos[key] = json.dumps(
                {
                    "host": hostname(),
                    "pid": os.getpid(),
                    "start": start_token(),
                    "thread": threading.current_thread().name,
                },
                separators=(",", ":"),
            )
            with _infos_mu:
                if len(_infos) > 4096:
                    _infos.pop(next(iter(_infos)), None)
        return info

    def _try(self, token: str, ticket: str, blocking: bool, deadline: Deadline) -> tuple[bool, int | str]:
        k = self._keys
        keys = [k["holder"], k["readers"], k["fence"], k["queue"], k["qexp"], k["seq"]]
        args: list[str | int] = [
            token, int(self.lease * 1000), ticket, self._mode, self._info(), "1" if blocking else "0", TICKET_TTL_MS,
        ]  # fmt: skip
        policy = _TRANSIENT
        left = deadline.remaining()
        until = None if deadline.at is None else deadline.at
        if left is not None:  # transient errors are retried within the caller's timeout, not past it
            policy = policy.replace(timeout=max(0.001, min(policy.timeout or 5.0, left)))
            if left == 0:  # one attempt: give it a moment to answer
                until = monotonic() + min(CALL_BOUND, self.lease)
        granted, value = policy.call(_run_script, self._conns, self._acquire_script, until, keys, args)
        if granted:
            return True, int(value)
        return False, value.decode() if isinstance(value, bytes) else str(value)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire the lock for the calling thread.

        Args:
            blocking: ``False`` makes one attempt.
            timeout: Seconds to wait at most; ``None`` waits forever; ``0`` is one attempt.

        Returns:
            ``True`` if acquired, ``False`` if the attempt or the timeout ran out.

        Raises:
            DeadlockError: The calling thread already holds this lock.
            redis.exceptions.ConnectionError: Redis stayed unreachable past the
                retries (transient errors are retried within the timeout).
        """
        t = check_timeout(blocking, timeout)
        hold = acquire_layered(
            self._held_key,
            f"redis lock {self.name!r}",
            t,
            self._local,
            self._shared,
            self._count_local_timeout,
            lambda deadline: self._acquire_remote(deadline, t != 0),
        )
        if hold is None:
            return False
        me = get_ident()
        self._holds[me] = hold
        if self._auto_renew:
            _renewer.add(self, me, hold)
        return True

    def _count_local_timeout(self) -> None:
        with self._mu:
            self._stats.contentions += 1

    def _acquire_remote(self, deadline: Deadline, blocking: bool) -> _Lease | None:
        token = secrets.token_hex(16)
        ticket = ""
        waited = False
        ambiguous = False  # an attempt failed without an answer: the server may have granted it
        try:
            while True:
                attempt_start = monotonic()
                self._conns.sent = False
                ambiguous = True
                try:
                    granted, value = self._try(token, ticket, blocking, deadline)
                    ambiguous = False
                except _redis.TimeoutError:
                    ambiguous = self._conns.sent
                    if not deadline.expired():
                        raise
                    # No answer within the caller's time: a timeout like any other. The
                    # grant may have happened: take it back (finally, below).
                    with self._mu:
                        self._stats.waited(monotonic() - deadline.start, False, self.name)
                    return None
                except BaseException:
                    ambiguous = self._conns.sent  # a refused connection sent nothing: nothing to take back
                    raise
                if granted:
                    # the lease started no earlier than the attempt: trust it only from then
                    with self._mu:
                        self._acquisitions += 1
                        self._tickets[get_ident()] = int(ticket.split(":", maxsplit=1)[0]) if ticket else None
                        if waited:
                            self._stats.waited(monotonic() - deadline.start, True, self.name)
                    self.lost = False
                    return _Lease(token, attempt_start + self.lease, int(value))
                if not blocking:
                    with self._mu:
                        self._stats.contentions += 1
                    return None
                if not waited:
                    waited = True
                    with self._mu:
                        self._stats.queued(1, self.name, warn=False)
                ticket = str(value)
                left = deadline.remaining()
                if left == 0.0:
                    with self._mu:
                        self._stats.waited(monotonic() - deadline.start, False, self.name)
                    return None
                wait = max(0.01, POLL if left is None else min(POLL, left))
                # only the head is pushed on release; the timeout is the bounded fallback poll
                with contextlib.suppress(_redis.RedisError):  # the next attempt retries or reports it
                    _bounded(self._conns, monotonic() + wait + 1.0, ("BLPOP", self._wake_prefix + ticket, wait))
        finally:
            if ambiguous:
                # After an ambiguous failure (a lost reply, a timeout) the server may have
                # granted the lock to this token: release it if it is ours, so a lost
                # reply never orphans the lock for a whole lease. In the background: the
                # caller's time is up, and a server that did not answer may not answer now.
                start_daemon(self._release_if_ours, "lockkit-redis-takeback", token)
            if ticket:
                self._cancel(ticket)

    def _release_in_redis(self, token: str) -> Any:
        """Run the release script for ``token`` (only ever this token's hold is removed)."""
        k = self._keys
        bound = min(CALL_BOUND, self.lease)  # past it, the lease frees the lock anyway
        return _TRANSIENT.replace(timeout=bound).call(
            _run_script,
            self._conns,
            self._release_script,
            monotonic() + bound,
            [k["holder"], k["readers"], k["queue"], k["qexp"]],
            [token, self._mode, self._wake_prefix],
        )

    def _release_if_ours(self, token: str) -> None:
        try:
            self._release_in_redis(token)
        except _redis.RedisError:  # unreachable: the lease frees it
            _log.warning("lockkit.redis_release_failed", lock=self.name)

    def _cancel(self, ticket: str) -> None:
        k = self._keys
        with contextlib.suppress(_redis.RedisError):  # unreachable: the ticket expires on its own
            _bounded(
                self._conns,
                monotonic() + min(CALL_BOUND, self.lease),
                ("ZREM", k["queue"], ticket),
                ("HDEL", k["qexp"], ticket),
                ("DEL", self._wake_prefix + ticket),
            )

    # -- release / renew ----------------------------------------------------------------

    def release(self) -> None:
        """Release the calling thread's hold.

        Raises:
            NotOwnerError: The calling thread does not hold this lock.
            LockLostError: The hold was lost (lease expired or server lost it) before
                this release; it is released locally all the same.
        """
        me = get_ident()
        hold = self._holds.pop(me, None)
        if hold is None:
            raise NotOwnerError(f"cannot release redis lock {self.name!r}: this thread does not hold it")
        _renewer.remove(self, me)
        hold.released = True
        _held_names.drop(self._held_key, me)
        try:
            if hold.inherited:  # the parent's hold, seen from a forked child: never touched in Redis
                return
            if hold.lost:
                raise LockLostError(
                    f"redis lock {self.name!r} was lost before release (lease expired or server lost it)"
                )
            ok = self._release_in_redis(hold.token)
            if not ok:
                self._mark_lost(hold)
                raise LockLostError(f"redis lock {self.name!r} was no longer held at release (its lease had expired)")
        finally:
            self._local.release()

    def _renew(self, hold: _Lease, ident: int) -> None:
        if hold.lost or hold.released:
            return
        started = monotonic()
        if started >= hold.deadline:  # never trusted past the local deadline
            self._mark_lost(hold)
            return
        k = self._keys
        try:
            ok = _run_script(  # never waits past the lease: a paused server means a lost hold, on time
                self._conns,
                self._renew_script,
                hold.deadline,
                [k["holder"], k["readers"]],
                [hold.token, self._mode, int(self.lease * 1000)],
            )
        except _redis.RedisError as exc:
            _log.warning("lockkit.lease_renewal_failed", lock=self.name, error=type(exc).__name__)
            if monotonic() >= hold.deadline:
                self._mark_lost(hold)
            return
        if ok:
            hold.deadline = started + self.lease
            with self._mu:
                self._renewals += 1
        else:
            self._mark_lost(hold)

    def _mark_lost(self, hold: _Lease) -> None:
        if hold.lost or hold.released:  # a renewal that raced a clean release: nothing was lost
            return
        hold.lost = True
        self.lost = True
        _held_names.drop(self._held_key, hold.ident)  # a lost hold no longer blocks this thread
        with self._mu:
            self._losses += 1
        _log.warning("lockkit.lock_lost", lock=self.name)
        if self._on_lost is not None:
            try:
                self._on_lost(self)
            except Exception as exc:
                _log.warning("lockkit.on_lost_failed", lock=self.name, error=type(exc).__name__)

    def assert_held(self) -> None:
        """Raise unless the calling thread holds the lock and its lease is still valid.

        Raises:
            NotOwnerError: Not held by the calling thread.
            LockLostError: The hold was lost or its local lease deadline has passed.
        """
        hold = self._holds.get(get_ident())
        if hold is None:
            raise NotOwnerError(f"this thread does not hold redis lock {self.name!r}")
        if hold.lost or monotonic() >= hold.deadline:
            self._mark_lost(hold)
            raise LockLostError(f"redis lock {self.name!r} was lost (lease expired)")

    # -- context manager ---------------------------------------------------------------

    def __enter__(self) -> RedisLock:
        if not self.acquire(True, self._timeout):
            raise self._timeout_error(self._timeout)
        return self

    def _timeout_error(self, timeout: float | None) -> LockTimeoutError:
        try:
            holder = self.holder()
        except _redis.RedisError:  # the server does not answer: the error says so without a holder
            holder = None
        return timeout_error(
            f"redis lock {self.name!r}",
            timeout,
            resource=self.name,
            holder=None if holder is None else holder.describe(),
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    # -- introspection -------------------------------------------------------------------

    @property
    def fencing_token(self) -> int:
        """The fencing token of the calling thread's hold (latest exclusive token if shared)."""
        hold = self._holds.get(get_ident())
        if hold is None:
            raise NotOwnerError(f"this thread does not hold redis lock {self.name!r}")
        return hold.fencing_token

    def last_ticket(self) -> int | None:
        """The queue ticket the calling thread's latest acquisition waited with (``None``: granted at once)."""
        with self._mu:
            return self._tickets.get(get_ident())

    def locked(self) -> bool:
        """Whether anyone holds the lock in Redis (exclusive or shared)."""
        k = self._keys
        exists, readers = _bounded(
            self._conns, monotonic() + CALL_BOUND, ("EXISTS", k["holder"]), ("HLEN", k["readers"])
        )
        return bool(exists) or int(readers) > 0

    def is_locked(self) -> bool:
        """Held, or with tickets queued in Redis, or threads queued locally."""
        return self.locked() or self.queue_length() > 0 or self._local.is_locked()

    def queue_length(self) -> int:
        """Waiters queued in Redis (every host)."""
        return int(_bounded(self._conns, monotonic() + CALL_BOUND, ("ZCARD", self._keys["queue"]))[0])

    def holder(self) -> LockInfo | None:
        """Who holds the lock: host, pid, thread, acquired_at, token; ``None`` if free."""
        k = self._keys
        value, readers, fence, server_time = _bounded(
            self._conns,
            monotonic() + CALL_BOUND,
            ("GET", k["holder"]),
            ("HLEN", k["readers"]),
            ("GET", k["fence"]),
            ("TIME",),
        )
        if value:
            text = value if isinstance(value, str) else value.decode()  # decode_responses or not
            _token, token, at, info = text.split(" ", 3)
            data = json.loads(info)
            server_ms = int(server_time[0]) * 1000 + int(server_time[1]) // 1000
            return LockInfo(
                pid=data.get("pid"),
                hostname=data.get("host"),
                thread=data.get("thread"),
                acquired_at=time.time() - max(0.0, (server_ms - int(at)) / 1000),
                shared=False,
                fencing_token=int(token),
                start_token=data.get("start"),
            )
        if readers:
            return LockInfo(None, None, None, None, True, int(fence or 0))
        return None

    def statistics(self) -> LockStatistics:
        """Common lock statistics (this object; ``waiting`` counts local and Redis waiters)."""
        local = self._local.statistics()
        queued = self.queue_length()
        with self._mu:
            merged = self._stats.merged(local, self.name, self._acquisitions, held=bool(self._holds))
        return dataclasses.replace(merged, waiting=merged.waiting + queued, queue_length=merged.queue_length + queued)

    def lease_statistics(self) -> RedisLockStatistics:
        """:meth:`statistics` plus renewals and losses."""
        stats = self.statistics()
        with self._mu:
            return RedisLockStatistics(stats, self._renewals, self._losses)

    def __repr__(self) -> str:
        return f"<lockkit.redis.RedisLock {self.name!r} {'shared' if self._shared else 'exclusive'}>"


class RedisLockManager:
    """Keyed host-scope locks: one :class:`RedisLock` per name under a common prefix.

    Args:
        client: A ``redis.Redis`` client.
        prefix: Key prefix of every lock.
        lease: Default lease in seconds.
    """

    def __init__(self, client: _redis.Redis, prefix: str = "lockkit:", *, lease: float = 30.0) -> None:
        if not isinstance(client, _redis.Redis):
            raise TypeError(f"client must be a redis.Redis, not {type(client).__name__}")
        self._client = client
        self._prefix = prefix
        self._lease = lease

    def get(self, name: str, **options: Any) -> RedisLock:
        """A :class:`RedisLock` for ``name`` (options as for ``RedisLock``)."""
        options.setdefault("lease", self._lease)
        return RedisLock(self._client, name, prefix=self._prefix, **options)

    @contextmanager
    def lock(self, *names: str, shared: bool = False, timeout: float | None = None) -> Iterator[list[RedisLock]]:
        """Hold several names at once, taken in sorted order (deadlock-free), one deadline.

        Raises:
            LockTimeoutError: The deadline ran out; names already taken are released.
        """

        def take(lock: RedisLock, left: float | None) -> RedisLock | None:
            return lock if lock.acquire(timeout=left) else None

        locks = [self.get(name, shared=shared) for name in dict.fromkeys(names)]

        def by_name(ls: Iterable[RedisLock]) -> list[RedisLock]:
            return sorted(ls, key=lambda lock: lock.name)

        taken, missed = acquire_all(locks, take, RedisLock.release, timeout=timeout, order=by_name)
        if missed:
            raise missed[0]._timeout_error(timeout)
        try:
            yield taken
        finally:
            for lock in reversed(taken):
                lock.release()
