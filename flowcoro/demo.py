"""The FlowCoro demo service: a line-protocol key-value server on SQLite.

Run it with ``make run``, ``python -m flowcoro demo`` or
``python examples/demo.py``; talk to it with ``nc 127.0.0.1 8765`` (or any
line-based client).  It needs no external service: the store is SQLite, in
memory unless ``--db PATH`` names a file.

What it shows:

* a TCP server on the FlowCoro loop through the plain asyncio streams API
  (``asyncio.start_server``): every asyncio library runs unchanged;
* blocking work (SQLite) kept off the loop with ``run_in_executor`` on a
  one-thread executor that owns the connection;
* graceful shutdown on Ctrl-C (SIGINT) or SIGTERM: stop accepting, tell
  connected clients ``BYE``, close them, close the store, exit 0.

Protocol: one command per line (UTF-8), one reply line each::

    PING                -> PONG
    ECHO <text>         -> <text>
    SET <key> <value>   -> OK            (the value is the rest of the line)
    GET <key>           -> VALUE <value>  or  NIL
    DEL <key>           -> DELETED 1  or  DELETED 0
    KEYS [prefix]       -> KEYS <k1> <k2> ...   (sorted)
    COUNT               -> COUNT <n>
    INFO                -> INFO flowcoro=<version> loop=<class> backend=<name>
    QUIT                -> BYE, then the server closes the connection

Anything else gets ``ERR <reason>``; the connection stays open.
"""
import argparse
import asyncio
import concurrent.futures
import signal
import sqlite3
import sys

import flowcoro

__all__ = ["KVStore", "DemoServer", "serve", "main"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
# Longest accepted command line; asyncio's StreamReader default (64 KiB).
MAX_LINE = 64 * 1024
# How long shutdown waits for connections to finish their goodbye.
SHUTDOWN_GRACE_S = 5.0


class KVStore:
    """A string -> string table in SQLite, used from the loop without blocking it.

    Every SQLite call runs on one dedicated worker thread (sqlite3 objects
    must stay on one thread; one writer also means no locking errors), and
    the coroutine methods await it with ``loop.run_in_executor``.

    Args:
        path: an SQLite database file, or ``":memory:"``.
    """

    def __init__(self, path=":memory:"):
        self.path = path
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kvstore")
        self._db = None
        self._pool.submit(self._open).result()

    def _open(self):
        self._db = sqlite3.connect(self.path)
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # The _q_* methods run on the store's thread, never on the loop's.
    def _q_get(self, key):
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _q_set(self, key, value):
        self._db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))
        self._db.commit()

    def _q_delete(self, key):
        n = self._db.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount
        self._db.commit()
        return n > 0

    def _q_keys(self, prefix):
        # Prefix match without LIKE, whose wildcards would need escaping.
        rows = self._db.execute(
            "SELECT key FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix))
        return [r[0] for r in rows]

    def _q_count(self):
        return self._db.execute("SELECT count(*) FROM kv").fetchone()[0]

    def _q_close(self):
        if self._db is not None:
            self._db.close()
            self._db = None

    async def get(self, key):
        """Return the value stored under ``key``, or None."""
        return await self._call(self._q_get, key)

    async def set(self, key, value):
        """Store ``value`` under ``key`` (replacing any old value)."""
        await self._call(self._q_set, key, value)

    async def delete(self, key):
        """Delete ``key``; return True if it existed."""
        return await self._call(self._q_delete, key)

    async def keys(self, prefix=""):
        """Return the keys starting with ``prefix``, sorted."""
        return await self._call(self._q_keys, prefix)

    async def count(self):
        """Return the number of keys."""
        return await self._call(self._q_count)

    def close(self):
        """Close the database and stop the worker thread (blocking; idempotent)."""
        if self._pool is None:
            return
        self._pool.submit(self._q_close).result()
        self._pool.shutdown(wait=True)
        self._pool = None


class DemoServer:
    """The key-value line protocol over asyncio streams.

    Args:
        store: the :class:`KVStore` behind the commands.
    """

    def __init__(self, store):
        self.store = store
        self._clients = set()   # handler tasks of open connections
        self._closing = False

    async def handle(self, reader, writer):
        """Serve one connection until QUIT, EOF, or server shutdown."""
        task = asyncio.current_task()
        self._clients.add(task)
        try:
            while not self._closing:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    break               # EOF (possibly after a partial line)
                except asyncio.LimitOverrunError:
                    writer.write(b"ERR line too long\n")
                    break
                reply, keep = await self.execute(line.decode("utf-8", "replace").rstrip("\r\n"))
                writer.write(reply.encode() + b"\n")
                await writer.drain()
                if not keep:
                    break
        except asyncio.CancelledError:
            # Shutdown: say goodbye, then let the connection close below.
            if not writer.is_closing():
                writer.write(b"BYE server shutting down\n")
        except ConnectionError:
            pass                        # the peer went away
        finally:
            self._clients.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass

    async def execute(self, line):
        """Run one command line; return ``(reply, keep_connection_open)``."""
        cmd, _, rest = line.strip().partition(" ")
        cmd = cmd.upper()
        rest = rest.strip()
        if cmd == "PING":
            return "PONG", True
        if cmd == "ECHO":
            return rest, True
        if cmd == "SET":
            key, _, value = rest.partition(" ")
            if not key or not value:
                return "ERR usage: SET <key> <value>", True
            await self.store.set(key, value)
            return "OK", True
        if cmd == "GET":
            if not rest or " " in rest:
                return "ERR usage: GET <key>", True
            value = await self.store.get(rest)
            return ("NIL" if value is None else f"VALUE {value}"), True
        if cmd == "DEL":
            if not rest or " " in rest:
                return "ERR usage: DEL <key>", True
            return f"DELETED {int(await self.store.delete(rest))}", True
        if cmd == "KEYS":
            return " ".join(["KEYS"] + await self.store.keys(rest)), True
        if cmd == "COUNT":
            return f"COUNT {await self.store.count()}", True
        if cmd == "INFO":
            loop = asyncio.get_running_loop()
            backend = getattr(loop, "backend", "-")
            return (f"INFO flowcoro={flowcoro.__version__} loop={type(loop).__name__} "
                    f"backend={backend}"), True
        if cmd == "QUIT":
            return "BYE", False
        if not cmd:
            return "ERR empty command", True
        return f"ERR unknown command {cmd!r}", True

    async def close_clients(self, timeout=SHUTDOWN_GRACE_S):
        """Cancel every connection handler (each says BYE) and wait for them."""
        self._closing = True
        tasks = list(self._clients)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


async def serve(host=DEFAULT_HOST, port=DEFAULT_PORT, db=":memory:", *, ready=None):
    """Run the demo service until cancelled (Ctrl-C / SIGTERM), then shut down cleanly.

    Args:
        host: address to listen on.
        port: TCP port; 0 picks a free one (the banner says which).
        db: SQLite database path, ``":memory:"`` by default.
        ready: optional callable, called with the bound ``(host, port)``.
    """
    loop = asyncio.get_running_loop()
    store = KVStore(db)
    app = DemoServer(store)
    server = await asyncio.start_server(app.handle, host, port, limit=MAX_LINE)
    bound = server.sockets[0].getsockname()[:2]
    main_task = asyncio.current_task()
    try:
        loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    except (NotImplementedError, RuntimeError, ValueError):
        pass                            # not the main thread, or no signals here
    print(f"flowcoro demo listening on {bound[0]}:{bound[1]} "
          f"(loop={type(loop).__name__}, backend={getattr(loop, 'backend', '-')}, db={db}); "
          f"Ctrl-C stops it", flush=True)
    if ready is not None:
        ready(bound)
    try:
        await asyncio.Event().wait()    # serve until cancelled
    except asyncio.CancelledError:
        print("flowcoro demo: shutting down", flush=True)
    finally:
        server.close()                  # stop accepting
        await app.close_clients()
        try:
            await asyncio.wait_for(server.wait_closed(), SHUTDOWN_GRACE_S)
        except asyncio.TimeoutError:
            pass
        try:
            loop.remove_signal_handler(signal.SIGTERM)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        await loop.run_in_executor(None, store.close)
    print("flowcoro demo: stopped", flush=True)


def build_parser(parser=None):
    """Add the demo's options (``--host``, ``--port``, ``--db``) to ``parser``."""
    if parser is None:
        parser = argparse.ArgumentParser(prog="flowcoro demo", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port, 0 for any free one (default {DEFAULT_PORT})")
    parser.add_argument("--db", default=":memory:",
                        help="SQLite database file (default: in memory, nothing kept)")
    return parser


def run_demo(args):
    """Run the demo with parsed ``args``; return the process exit status."""
    try:
        flowcoro.run(serve(args.host, args.port, args.db))
    except KeyboardInterrupt:           # a second Ctrl-C during shutdown
        return 130
    except OSError as exc:              # e.g. the port is taken
        print(f"flowcoro demo: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    """Entry point of ``python -m flowcoro.demo`` / ``examples/demo.py``."""
    return run_demo(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
