"""A TCP proxy in front of the test database that can be cut and restored, to play "database down".

``partition()`` plays the other kind of outage: the network stops carrying
anything while every connection stays open (new ones are accepted too), as
when a link or a middlebox drops packets without resetting connections;
``heal()`` lets the held bytes through again.
"""

from __future__ import annotations

import socket
import threading


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to ``target`` (a (host, port) pair or a Unix socket path)."""

    def __init__(self, target) -> None:
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.flowing = threading.Event()
        self.flowing.set()
        self._links: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @classmethod
    def in_front_of(cls, server_url) -> "CuttableProxy":
        """A proxy to the test server (a SQLAlchemy URL: its host and port, or its Unix socket)."""
        return cls((server_url.host, server_url.port or 5432) if server_url.host else server_url.query["unix_sock"])

    def url(self, database_url) -> str:
        """``database_url`` (text or URL) pointed at this proxy instead of the server."""
        import sqlalchemy as sa
        return sa.make_url(str(database_url) if not isinstance(database_url, sa.URL)
                           else database_url.render_as_string(hide_password=False)).set(
            host="127.0.0.1", port=self.port, query={}).render_as_string(hide_password=False)

    def _connect_target(self) -> socket.socket:
        if isinstance(self.target, str):
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            return upstream
        return socket.create_connection(self.target)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()  # the database is "down": refuse at once
                continue
            upstream = self._connect_target()
            with self._lock:
                self._links += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                self.flowing.wait()  # partitioned: hold the bytes, keep the connection
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Drop every open connection and refuse new ones."""
        self.up.clear()
        with self._lock:
            links, self._links = self._links, []
        for s in links:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self) -> None:
        self.up.set()

    def partition(self) -> None:
        """Stop carrying bytes either way; connections stay open and new ones are still accepted."""
        self.flowing.clear()

    def heal(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.cut()
        self.heal()  # pipes held by a partition wake, find their sockets closed, and end
        self.listener.close()
