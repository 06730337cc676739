"""The accept decision of gateway/accept_balance.py: the least-loaded live worker takes the next connection."""

from gateway.accept_balance import ABSENT, should_defer


def test_a_worker_holding_more_than_another_defers():
    assert should_defer([3, 2], 0)
    assert not should_defer([3, 2], 1)


def test_equal_counts_accept():
    assert not should_defer([2, 2], 0) and not should_defer([2, 2], 1)


def test_a_worker_that_is_not_running_is_ignored():
    # the other worker died (or is starting): this one must keep accepting
    assert not should_defer([5, ABSENT], 0)
    assert should_defer([5, ABSENT, 1], 0)


def test_a_stuck_worker_does_not_stop_the_others_from_accepting():
    """The other worker is 'live' with no connections but never accepts: this one still serves everyone."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import asyncio\n"
        "from gateway import accept_balance\n"
        "counts = [0, 0]  # slot 1: a worker that holds nothing and never accepts\n"
        "accept_balance.install(counts, 0)\n"
        "async def main():\n"
        "    async def hello(reader, writer):\n"
        "        writer.write(b'hi\\n')\n"
        "        await writer.drain()\n"
        "        await reader.read()\n"
        "    server = await asyncio.start_server(hello, '127.0.0.1', 0)\n"
        "    print(server.sockets[0].getsockname()[1], flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
    held = []
    try:
        port = int(child.stdout.readline())
        for _ in range(3):
            conn = socket.create_connection(("127.0.0.1", port), timeout=20)
            held.append(conn)
            assert conn.recv(3) == b"hi\n"
    finally:
        for conn in held:
            conn.close()
        child.kill()
        child.wait()
