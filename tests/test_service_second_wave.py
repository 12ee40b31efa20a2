"""The service's failure families of the second probe (issue 35), on a real server on loopback: it follows
the index to new generations, `--port 0` prints the port it got, HEAD works, host names are case-blind,
client-invented methods are neither metrics labels nor log lines, thumbnails decode once."""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import run_cli, simsearch_cmd
from tests.test_service import request, upload


def _serve_port0(index, *extra):
    proc = subprocess.Popen(
        [*simsearch_cmd(), "serve", "--index", str(index), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    line = b""
    deadline = time.time() + 90
    while b"serving" not in line and time.time() < deadline and proc.poll() is None:
        line = proc.stderr.readline()
    m = re.search(rb"http://127\.0\.0\.1:(\d+)/", line)
    assert m and m.group(1) != b"0", line
    base = f"http://127.0.0.1:{int(m.group(1))}"
    while time.time() < deadline:
        try:
            if request(base + "/health")[0] == 200:
                return proc, base
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not answer")


def test_the_service_follows_syncs_and_bounds_what_clients_send(tmp_path):
    from simsearch.symbols import write_symbol_set

    gallery = tmp_path / "gallery"
    write_symbol_set(gallery, ["circle", "triangle", "star"], per_class=4, seed=0)
    index = tmp_path / "g.idx"
    run_cli("index", "build", gallery, "--index", index, "-q", check=True)
    proc, base = _serve_port0(index)
    try:
        assert request(base + "/stats")[0] == 200
        # a sync by another process: a new class appears, a picture goes; no restart, no failed request
        write_symbol_set(gallery, ["cross"], per_class=4, seed=9)
        (gallery / "circle" / "circle_00.png").unlink()
        run_cli("index", "build", gallery, "--index", index, "-q", check=True)
        stats = __import__("json").loads(request(base + "/stats")[1])
        assert stats["count"] == 15
        status, answer = upload(base, "/search?k=1", (gallery / "cross" / "cross_02.png").read_bytes())
        assert status == 200 and answer["results"][0]["path"].endswith("cross_02.png")
        # HEAD answers as GET without a body; host names are case-blind
        assert request(base + "/health", method="HEAD")[0] == 200
        assert request(base + "/health", headers={"Host": "LOCALHOST"})[0] == 200
        # a method a client made up is "other" in /metrics, never itself
        conn = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=10)
        conn.request("X" * 5000, "/health")
        conn.getresponse().read()
        conn.close()
        metrics = request(base + "/metrics")[1].decode()
        assert "X" * 100 not in metrics and 'method="other"' in metrics
        # sixteen concurrent asks for one thumbnail: all answered, the same bytes
        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(lambda _: request(base + "/thumbnails/3"), range(16)))
        assert {g[0] for g in got} == {200} and len({g[1] for g in got}) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(tmp_path, ignore_errors=True)


def _closed_within(sock, seconds):
    """Whether the server closes this connection within `seconds` (recv answers b'' or a reset)."""
    sock.settimeout(seconds)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_slow_and_numerous_clients_are_cut_off_and_health_still_answers(tmp_path):
    from simsearch.symbols import write_symbol_set

    gallery = tmp_path / "gallery"
    write_symbol_set(gallery, ["circle", "triangle"], per_class=2, seed=0)
    index = tmp_path / "g.idx"
    run_cli("index", "build", gallery, "--index", index, "-q", check=True)
    proc, base = _serve_port0(index, "--header-timeout", "1", "--body-timeout", "1", "--max-connections", "8")
    port = int(base.rsplit(":", 1)[1])
    held = []
    try:
        # a head dribbled and never finished: closed once the header timeout passes
        slow = socket.create_connection(("127.0.0.1", port), timeout=5)
        held.append(slow)
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert _closed_within(slow, 6)
        # an upload that stalls halfway: answered 408, its connection let go
        stalled = socket.create_connection(("127.0.0.1", port), timeout=5)
        held.append(stalled)
        stalled.sendall(
            b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n--b\r\n"
        )
        stalled.settimeout(8)
        answer = stalled.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        # a crowd of idle connections: those past the cap closed on arrival, the rest after the header
        # timeout, so /health answers again within a few seconds
        crowd = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(24)]
        held.extend(crowd)
        closed = sum(_closed_within(s, 0.5) for s in crowd)
        assert closed >= 24 - 8
        deadline = time.time() + 10
        status = None
        while time.time() < deadline:
            try:
                status = request(base + "/health")[0]
                break
            except OSError:
                time.sleep(0.3)
        assert status == 200
    finally:
        for s in held:
            s.close()
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(tmp_path, ignore_errors=True)
