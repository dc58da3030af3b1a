"""A TCP proxy for the test rig that can be told to hang: accept, and never answer.

A dependency that refuses connections is easy to see; one that accepts and then says
nothing (a stuck load balancer, a frozen VM) is what timeouts exist for. The proxy
forwards bytes both ways to a real server on 127.0.0.1; while ``hang`` is set it keeps
accepting and reading but forwards nothing and answers nothing. Healing resumes
forwarding on the connections opened from then on (the stalled ones stay stalled, as
they would in life; clients time them out).

``mute_after`` is the nastier half of a hang: once a request containing those bytes (say
``b"$batch"``) has gone through a connection, that request still reaches the server (and
is carried out there) but the answers on that connection are held back, as when a link
drops after the request went out: the writer cannot know its write landed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from .rig import free_port


class HangProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.hang = False
        self.mute_after: bytes | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hang-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(5)

    def stop(self) -> None:
        """Close the listener and every connection, then the proxy's loop."""

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            # A connection accepted just before the close is still being handed over.
            await asyncio.sleep(0.05)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for writer in list(self._writers):
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            # Whatever socket this loop still holds, however it got here (a race at the edge of
            # a close the bookkeeping above missed, a buffer to a peer that stopped reading),
            # goes now: a transport left open when the loop closes is an unclosed-transport
            # warning at some later garbage collection, failing whichever test runs then.
            for transport in list(getattr(self._loop, "_transports", {}).values()):
                transport.abort()
            # A connection cancelled while it was being opened (upstream) is closed by a
            # callback the loop runs on its next turn: let it turn before it stops.
            await asyncio.sleep(0.05)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, so the connection is on record before its task first runs: a
        # task cancelled before it starts runs none of its body, and its socket would leak.
        self._writers.add(writer)
        task = self._loop.create_task(self._client(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.hang:  # accepted, and then nothing: read and drop until the client gives up
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        muted = asyncio.Event()
        await asyncio.gather(
            self._pipe(reader, up_writer, muted, replies=False),
            self._pipe(up_reader, writer, muted, replies=True),
            return_exceptions=True,
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        muted: asyncio.Event,
        *,
        replies: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if not replies and self.mute_after is not None and self.mute_after in data:
                    muted.set()
                # Stall mid-connection, as a frozen peer does (muted: only the answers).
                while self.hang or (replies and muted.is_set()):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()
