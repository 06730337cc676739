"""common/logbatch.py: log lines written in batches, whole, in order, at most PIPE_BUF per write."""

import asyncio
import logging
import os

import pytest

from common import logbatch
from common.logbatch import LINGER, PIPE_BUF, BatchingStreamHandler


@pytest.fixture
def pipe_logger(monkeypatch):
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    stream = os.fdopen(write_fd, "w")
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test.logbatch")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    writes = []
    real_write = os.write

    def counting_write(fd, data):
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(logbatch.os, "write", counting_write)

    def read() -> bytes:
        try:
            return os.read(read_fd, 1 << 20)
        except BlockingIOError:
            return b""

    yield logger, read, writes
    stream.close()
    os.close(read_fd)


def test_lines_logged_close_together_are_written_together(pipe_logger):
    logger, read, writes = pipe_logger

    async def scenario() -> tuple[bytes, bytes]:
        for i in range(3):
            logger.info("line %d", i)
        await asyncio.sleep(0)
        before = read()  # not yet: the lines wait for others (LINGER)
        await asyncio.sleep(LINGER * 3)
        return before, read()

    before, after = asyncio.run(scenario())
    assert before == b""
    assert after == b"INFO line 0\nINFO line 1\nINFO line 2\n"
    assert len(writes) == 1


def test_a_warning_is_written_at_once_after_what_is_pending(pipe_logger):
    logger, read, _ = pipe_logger

    async def scenario() -> bytes:
        logger.info("first")
        logger.warning("second")
        return read()

    assert asyncio.run(scenario()) == b"INFO first\nWARNING second\n"


def test_outside_a_loop_every_line_is_written_at_once(pipe_logger):
    logger, read, _ = pipe_logger
    logger.info("alone")
    assert read() == b"INFO alone\n"


def test_writes_are_whole_lines_of_at_most_pipe_buf(pipe_logger):
    logger, read, writes = pipe_logger

    async def scenario() -> None:
        for i in range(200):
            logger.info("%03d %s", i, "x" * 90)
        await asyncio.sleep(LINGER * 3)

    asyncio.run(scenario())
    data = b""
    while chunk := read():
        data += chunk
    assert data.count(b"\n") == 200 and data.splitlines()[199].startswith(b"INFO 199")
    assert len(writes) > 1
    assert all(len(w) <= PIPE_BUF and w.endswith(b"\n") for w in writes)


def test_a_closed_stream_never_raises_into_the_event_loop():
    import io

    stream = io.StringIO()
    handler = BatchingStreamHandler(stream)
    logger = logging.getLogger("test.logbatch.closed")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    errors = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        logger.info("pending")
        stream.close()  # as pytest closes a captured stderr between tests
        await asyncio.sleep(LINGER * 3)  # the scheduled flush runs against the closed stream
        logger.error("and an error")

    asyncio.run(scenario())
    assert errors == []
