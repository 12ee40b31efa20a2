"""`simsearch serve`: the real server on a loopback port, every endpoint, bad uploads, traversal."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import run_cli, simsearch_cmd

MAX_UPLOAD_MB = 0.05  # the server under test refuses uploads above ~51 kB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(
    url: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None
) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def upload(base: str, path: str, content: bytes, filename: str = "q.png") -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, raw, _ = request(base + path, "POST", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return status, json.loads(raw)


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for f in files:
                st = os.stat(os.path.join(dirpath, f))
                out[os.path.join(dirpath, f)] = (st.st_size, st.st_mtime_ns)
    return out


def start_server(index: Path, *options: str) -> tuple[subprocess.Popen, str]:
    """`simsearch serve` on a free loopback port, once /health answers."""
    port = free_port()
    proc = subprocess.Popen(
        [*simsearch_cmd(), "serve", "--index", str(index), "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            if request(base + "/health")[0] == 200:
                return proc, base
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from simsearch.symbols import write_symbol_set

    root = tmp_path_factory.mktemp("serve")
    gallery = root / "gallery"
    write_symbol_set(gallery, ["circle", "triangle", "star", "cross"], per_class=4, seed=0)
    index = root / "g.idx"
    run_cli("index", "build", gallery, "--index", index, "-q", check=True)
    proc, base = start_server(index, "--max-upload-mb", str(MAX_UPLOAD_MB))
    yield {"base": base, "gallery": gallery, "index": index, "proc": proc}
    proc.terminate()
    proc.wait(timeout=20)


def test_health_stats_and_openapi(server):
    base = server["base"]
    status, body, _ = request(base + "/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    stats = json.loads(request(base + "/stats")[1])
    assert stats["count"] == 16 and stats["kind"] == "flat" and stats["encoder"] == "characters"
    assert stats["threshold_source"] == "gallery" and stats["operating_point"] == "FPIR 0.01"
    assert 0 < stats["threshold"] < 1.2 and stats["max_upload_bytes"] == int(MAX_UPLOAD_MB * 2**20)
    spec = json.loads(request(base + "/openapi.json")[1])
    assert {"/search", "/identify", "/images/{image_id}", "/thumbnails/{image_id}", "/health", "/stats"} <= set(
        spec["paths"]
    )
    status, page, headers = request(base + "/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b'id="drop"' in page


def test_search_answers_like_the_cli(server):
    base, gallery, index = server["base"], server["gallery"], server["index"]
    target = sorted((gallery / "star").iterdir())[1]
    status, got = upload(base, "/search?k=3", target.read_bytes(), filename=target.name)
    assert status == 200
    cli = json.loads(run_cli("query", target, "--index", index, "-k", "3", "--json", check=True).stdout)
    assert got["query"] == target.name and len(got["results"]) == 3
    assert [h["id"] for h in got["results"]] == [h["id"] for h in cli["results"]]
    assert [h["label"] for h in got["results"]] == [h["label"] for h in cli["results"]]
    assert set(got["results"][0]) == {"rank", "id", "score", "label", "path"}
    assert got["results"][0]["path"] == str(target) and got["results"][0]["score"] > 0.999


def test_identify_known_and_unknown(server):
    base, gallery = server["base"], server["gallery"]
    img = sorted((gallery / "triangle").iterdir())[0].read_bytes()
    status, got = upload(base, "/identify", img)
    assert status == 200 and got["known"] is True and got["label"] == "triangle" and got["match"].endswith(".png")
    assert got["threshold_source"] == "gallery" and got["operating_point"] == "FPIR 0.01" and got["fpir"] == 0.01
    status, got = upload(base, "/identify?threshold=1.0", blank_png())
    assert status == 200 and got["known"] is False and got["label"] is None and got["best_class"] is not None
    assert got["threshold_source"] == "explicit"
    # the operating point is the caller's, as on the command line
    status, looser = upload(base, "/identify?fpir=0.2", img)
    assert status == 200 and looser["operating_point"] == "FPIR 0.2" and looser["threshold"] <= got["threshold"]
    status, closed = upload(base, "/identify?closed_set=true", blank_png())
    assert status == 200 and closed["known"] is True and closed["threshold_source"] == "closed-set"
    status, err = upload(base, "/identify?fpir=0.2&threshold=0.5", img)
    assert status == 422 and "at most one" in err["detail"]


def blank_png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (64, 64), 255).save(buf, "PNG")
    return buf.getvalue()


def test_bad_uploads_are_clear_4xx(server):
    base = server["base"]
    status, body = upload(base, "/search", b"this is not an image at all", filename="notes.txt")
    assert status == 415 and "notes.txt" in body["detail"]
    status, body = upload(base, "/identify", b"", filename="empty.png")
    assert status == 400 and "empty" in body["detail"]
    big = os.urandom(int(MAX_UPLOAD_MB * 2**20) + 10_000)
    status, body = upload(base, "/search", big, filename="big.png")
    assert status == 413 and "too large" in body["detail"]
    status, _, _ = request(base + "/search", "POST", b"", {"Content-Type": "multipart/form-data; boundary=x"})
    assert status in (400, 422)
    status, _, _ = request(base + "/search?k=0", "POST", b"")
    assert status == 422


def test_gallery_files_by_id_only(server):
    base, gallery = server["base"], server["gallery"]
    target = sorted((gallery / "circle").iterdir())[0]
    _, got = upload(base, "/search?k=1", target.read_bytes())
    image_id = got["results"][0]["id"]
    status, body, _ = request(f"{base}/images/{image_id}")
    assert status == 200 and body == target.read_bytes()
    status, body, headers = request(f"{base}/thumbnails/{image_id}")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(body)).size) <= 256
    assert request(f"{base}/images/999999")[0] == 404
    for probe in (
        "/images/../../../../etc/passwd",
        "/images/..%2F..%2F..%2Fetc%2Fpasswd",
        "/images/%2Fetc%2Fpasswd",
        "/thumbnails/..%2Fg.idx%2Fmanifest.json",
        "/images/1;cat%20%2Fetc%2Fpasswd",
        "/../../etc/passwd",
    ):
        status, body, _ = request(base + probe)
        assert status in (404, 422), probe
        assert b"root:" not in body and b"format_version" not in body


def test_concurrent_queries_are_answered_correctly_and_nothing_is_written(server):
    base, gallery, index = server["base"], server["gallery"], server["index"]
    before = snapshot(gallery, index)
    files = sorted(p for p in gallery.rglob("*.png"))
    jobs = [files[i % len(files)] for i in range(64)]

    def one(path: Path) -> tuple[Path, int, dict]:
        status, got = upload(base, "/search?k=1", path.read_bytes(), filename=path.name)
        return path, status, got

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, jobs))
    for path, status, got in answers:
        assert status == 200 and got["results"][0]["path"] == str(path)
    assert snapshot(gallery, index) == before
    stats = json.loads(request(base + "/stats")[1])
    assert stats["queries"] >= 64 and stats["latency_ms"]["p50"] > 0
    assert stats["latency_ms"]["p99"] >= stats["latency_ms"]["p50"]


def test_serve_refuses_a_missing_index(tmp_path):
    proc = run_cli("serve", "--index", tmp_path / "nope.idx", "--port", str(free_port()), timeout=60)
    assert proc.returncode == 1 and "Error:" in proc.stderr and "Traceback" not in proc.stderr


CHROMIUM = Path("/usr/bin/chromium")


def test_the_page_in_headless_chromium(server, tmp_path):
    """Upload an image on the page, see the matches and the identification rendered, screenshot it."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    base, gallery = server["base"], server["gallery"]
    query = sorted((gallery / "star").iterdir())[2]
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
    flags += ["--disable-component-update", "--disable-sync"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=flags)
        try:
            # the page runs under its Content-Security-Policy (no eval): waits use locators, not script strings
            expect = sync_api.expect
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(base + "/")
            expect(page.locator("#stats")).to_contain_text("16 images")
            expect(page.locator("#stats")).to_contain_text("gallery: FPIR 0.01")
            page.fill("#k", "5")
            page.set_input_files("#file", str(query))
            expect(page.locator("#results .hit")).to_have_count(5)
            expect(page.locator("#identity")).to_contain_text("identified: star")
            assert page.inner_text("#identity").startswith("identified: star")
            labels = page.locator("#results .hit .label").all_inner_texts()
            assert labels[0] == "star"
            # every thumbnail is served from /thumbnails/{id}, as a JPEG
            sources = [img.get_attribute("src") or "" for img in page.locator("#results img").all()]
            assert len(sources) == 5 and all("thumbnails/" in src for src in sources)
            for src in sources:
                status, body, _ = request(base + "/" + src.lstrip("/"))
                assert status == 200 and body[:2] == b"\xff\xd8"
            page.wait_for_load_state("networkidle")
            shot = Path(os.environ.get("SIMSEARCH_SCREENSHOT", tmp_path / "page.png"))
            page.screenshot(path=str(shot), full_page=True)
            assert Image.open(shot).size[0] >= 1000
            page.set_input_files("#file", str(notes))
            expect(page.locator("#error")).to_contain_text("415")
            assert page.locator("#results .hit").count() == 0
        finally:
            browser.close()


def test_hostile_requests_get_clear_refusals(server):
    base = server["base"]
    # ids beyond what the catalog can hold: a 422, never a 500
    for route in ("/images/", "/thumbnails/"):
        assert request(base + route + "9" * 30)[0] == 422
        assert request(base + route + "-1")[0] == 422
    # a declared body over the limit is refused before it is read
    status, body, _ = request(
        base + "/search",
        "POST",
        b"x",
        {"Content-Type": "multipart/form-data; boundary=b", "Content-Length": "99999999"},
    )
    assert status == 413 and b"upload too large" in body
    # DNS rebinding: a loopback server answers only requests addressed to loopback names
    status, _, _ = request(base + "/health", headers={"Host": "evil.example:80"})
    assert status == 421
    # security headers on every answer; a content security policy on the page
    status, _, headers = request(base + "/")
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["x-content-type-options"] == "nosniff" and lower["x-frame-options"] == "DENY"
    assert "default-src 'self'" in lower["content-security-policy"]


def _memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc")
def test_sixteen_concurrent_64_megapixel_uploads_stay_in_memory_and_time_bounds(server):
    """16 small PNGs of 64 megapixels each at once, with 16 decode threads: the pixel budget (128 MP by
    default) bounds the server's memory, and requests past the timeout are answered 504 and their work
    stops (counted as abandoned) instead of running on."""
    from PIL import ImageDraw

    big = Image.new("RGB", (8000, 8000), (250, 250, 250))
    ImageDraw.Draw(big).ellipse((1500, 1500, 6500, 6500), outline=(0, 0, 0), width=200)
    buf = io.BytesIO()
    big.save(buf, "PNG", compress_level=1)
    del big
    content = buf.getvalue()
    assert len(content) < 2 * 2**20  # small on the wire, 192 MB once decoded
    proc, base = start_server(server["index"], "--decode-threads", "16", "--timeout", "6")
    try:
        assert upload(base, "/search", blank_png())[0] == 200  # warm: the encoder has run once
        before = _memory_kb(proc.pid, "VmRSS")
        with ThreadPoolExecutor(16) as pool:
            statuses = [s for s, _ in pool.map(lambda _: upload(base, "/search?k=1", content, "big.png"), range(16))]
        assert set(statuses) <= {200, 504} and 200 in statuses, statuses
        grown_mb = (_memory_kb(proc.pid, "VmHWM") - before) / 1024
        # two 64 MP images decode at once (about 0.5 GB); all 16 at once would take several GB
        print(f"16 x 64 MP: grew {grown_mb:.0f} MB; answers {sorted(statuses)}")
        assert grown_mb < 2000, f"the server grew by {grown_mb:.0f} MB"
        refused = statuses.count(504)
        deadline = time.time() + 60
        while True:  # abandoned work notices its deadline at its next step, then stops
            stats = json.loads(request(base + "/stats")[1])
            if stats["abandoned"] >= refused or time.time() > deadline:
                break
            time.sleep(0.2)
        assert stats["queries"] == 1 + statuses.count(200)
        assert refused - 1 <= stats["abandoned"] <= refused, (refused, stats)  # one may have been embedding
        assert upload(base, "/search", blank_png())[0] == 200  # and the server still answers
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_gallery_file_replaced_by_a_link_is_not_served(server, tmp_path):
    base, gallery, index = server["base"], server["gallery"], server["index"]
    target = sorted((gallery / "cross").iterdir())[2]
    hit = json.loads(run_cli("query", target, "--index", index, "-k", "1", "--json", check=True).stdout)["results"][0]
    assert request(base + f"/images/{hit['id']}")[0] == 200
    secret = tmp_path / "secret.txt"
    secret.write_text("not for you")
    original, st = target.read_bytes(), target.stat()
    target.unlink()
    target.symlink_to(secret)
    try:
        status, body, _ = request(base + f"/images/{hit['id']}")
        assert status == 410 and b"not for you" not in body
    finally:
        target.unlink()
        target.write_bytes(original)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_every_route_of_the_openapi_description_survives_fuzzing(server):
    """Issue 23: the service fuzzed from its own OpenAPI description (Schemathesis' idea, with Hypothesis):
    for every operation, odd values for each declared parameter and random bytes as the upload; no answer
    may be a 5xx. Bounded: 25 requests an operation, loopback only."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = server["base"]
    spec = json.loads(request(base + "/openapi.json")[1])
    odd = st.one_of(
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(str),
        st.text(max_size=12),
        st.sampled_from(["", "true", "nan", "-inf", "1e309", "0x10", "%00", "../../etc/passwd"]),
    )

    def fuzzer(path: str, method: str, names: list[tuple[str, str]], takes_file: bool):
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(st.lists(odd, min_size=len(names), max_size=len(names)), st.binary(max_size=2048))
        def fuzz(values, blob):
            url, query = path, []
            for (name, where), value in zip(names, values, strict=True):
                if where == "path":
                    url = url.replace("{" + name + "}", urllib.request.quote(value, safe="") or "0")
                else:
                    query.append(f"{name}={urllib.request.quote(value, safe='')}")
            target = url + ("?" + "&".join(query) if query else "")
            if takes_file:
                status, _ = upload(base, target, blob)
            else:
                status = request(base + target, method.upper())[0]
            assert status < 500, (method, target, status)

        return fuzz

    operations = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            names = [(p["name"], p["in"]) for p in op.get("parameters", [])]
            fuzzer(path, method, names, "requestBody" in op)()
            operations += 1
    assert operations >= 6  # search, identify, images, thumbnails, health, stats


def test_serving_beyond_loopback_says_so(server):
    """--host 0.0.0.0 warns that everything is exposed. The port is held here, so the server never listens:
    nothing is exposed by the test, and it ends on its own."""
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        port = held.getsockname()[1]
        proc = subprocess.run(
            [*simsearch_cmd(), "serve", "--index", str(server["index"]), "--host", "0.0.0.0", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode != 0
    assert "warning: serving on 0.0.0.0: anyone who can reach this machine" in proc.stderr
