"""A real TCP proxy on 127.0.0.1 that misbehaves on cue (for the system of record's network faults).

``TcpProxy(target, mode=..., after_bytes=N)`` forwards both directions between a client and
``target`` (PostgreSQL on 127.0.0.1:5432 by default). Once a connection has carried ``N`` bytes
from the server to the client:

``forward``  keeps forwarding (a plain proxy);
``stall``    stops forwarding in both directions and keeps both sockets open (the reported hang:
             the client waits for bytes that never come, TCP keepalives are answered);
``cut``      resets both sockets (a cut cable, a killed load balancer).

``after_bytes=0`` with ``stall`` accepts connections and never answers (a black hole after the
TCP handshake).
"""

from __future__ import annotations

import socket
import struct
import threading


class TcpProxy:
    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432), *, mode: str = "forward",
                 after_bytes: int = 0) -> None:
        if mode not in ("forward", "stall", "cut"):
            raise ValueError(mode)
        self.target, self.mode, self.after_bytes = target, mode, after_bytes
        self.stop = threading.Event()
        self.triggered = threading.Event()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(32)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def url(self, user: str = "postgres", password: str | None = None, database: str = "test", query: str = "") -> str:
        auth = f"{user}:{password}" if password is not None else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}" + (f"?{query}" if query else "")

    def _track(self, *socks: socket.socket) -> None:
        with self.lock:
            self.sockets.extend(socks)

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self._track(client, upstream)
            state = {"down": 0}
            threading.Thread(target=self._pump, args=(client, upstream, state, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, state, True), daemon=True).start()

    def _misbehave(self, state: dict) -> bool:
        return self.mode != "forward" and state["down"] >= self.after_bytes

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict, downstream: bool) -> None:
        try:
            while not self.stop.is_set():
                if self._misbehave(state):
                    self.triggered.set()
                    if self.mode == "cut":
                        for s in (src, dst):
                            _reset(s)
                        return
                    self.stop.wait()  # stall: hold both sockets open, forward nothing
                    return
                data = src.recv(16384)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if downstream and self.mode != "forward":
                    room = self.after_bytes - state["down"]
                    data = data[:max(room, 0)] if room < len(data) else data
                    state["down"] += len(data)
                dst.sendall(data)
        except OSError:
            return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                _reset(s)


def _reset(sock: socket.socket) -> None:
    """Cut the connection now: shutdown wakes the other pump blocked in recv (a close alone would
    wait for it), and a zero linger makes the final close a reset."""
    for op in (lambda: sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)),
               lambda: sock.shutdown(socket.SHUT_RDWR), sock.close):
        try:
            op()
        except OSError:
            pass
