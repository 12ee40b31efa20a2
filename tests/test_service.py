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

import numpy as np
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
    assert stats["threshold_source"] == "gallery+prior" and stats["operating_point"] == "FPIR 0.01"
    assert 0 < stats["threshold"] < 1.2 and stats["max_upload_bytes"] == int(MAX_UPLOAD_MB * 2**20)
    spec = json.loads(request(base + "/openapi.json")[1])
    assert {"/search", "/identify", "/images/{image_id}", "/thumbnails/{image_id}", "/health", "/stats"} <= set(
        spec["paths"]
    )
    # the query parameters are the CLI's declarations (simsearch.config.search), spelled as the service spells them
    from simsearch.config.options import declared
    from simsearch.config.search import IdentifyOptions, QueryOptions

    cli = {d.name: d.option for d in declared(QueryOptions, IdentifyOptions)}
    for path, names in (
        ("/search", {"k": "k", "label": "labels"}),
        ("/identify", {"fpir": "fpir", "threshold": "threshold"}),
    ):
        got = {p["name"]: p for p in spec["paths"][path]["post"]["parameters"]}
        for name, field in names.items():
            assert got[name]["description"] == cli[field].help
    assert got["threshold"]["schema"]["anyOf"][0]["maximum"] == 1.0
    search = {p["name"]: p for p in spec["paths"]["/search"]["post"]["parameters"]}
    assert search["label"]["schema"]["anyOf"][0]["maxItems"] == 100  # a repeated parameter is bounded
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
    assert set(got["results"][0]) == {"rank", "id", "score", "label", "path", "name"}
    # paths relative to the gallery folder: no server path is given away
    assert got["results"][0]["path"] == f"star/{target.name}" and got["results"][0]["name"] == target.name
    assert got["results"][0]["score"] > 0.999 and got["total"] == 16 and got["offset"] == 0


def test_paging_and_filters(server):
    base, gallery, index = server["base"], server["gallery"], server["index"]
    target = sorted((gallery / "star").iterdir())[1].read_bytes()
    whole = upload(base, "/search?k=16", target)[1]["results"]
    page = upload(base, "/search?k=5&offset=5", target)[1]
    assert [h["id"] for h in page["results"]] == [h["id"] for h in whole[5:10]] and page["results"][0]["rank"] == 6
    # the same pages as the command line's
    cli = json.loads(
        run_cli(
            "query",
            gallery / "star" / sorted(os.listdir(gallery / "star"))[1],
            "--index",
            index,
            "-k",
            "5",
            "--offset",
            "5",
            "--json",
            check=True,
        ).stdout
    )
    assert [h["id"] for h in cli["results"]] == [h["id"] for h in page["results"]]
    status, one = upload(base, "/search?k=10&label=triangle", target)
    assert status == 200 and one["total"] == 4 and {h["label"] for h in one["results"]} == {"triangle"}
    status, two = upload(base, "/search?k=10&label=triangle&label=cross", target)
    assert two["total"] == 8 and {h["label"] for h in two["results"]} == {"triangle", "cross"}
    status, under = upload(base, "/search?k=10&under=cross", target)
    assert under["total"] == 4 and all(h["path"].startswith("cross/") for h in under["results"])
    for bad, words in (
        ("label=nosuch", "no class 'nosuch'"),
        ("under=../etc", "relative to it"),
        ("under=/etc", "relative to it"),
        ("offset=9999&k=5", "at most 10,000"),
    ):
        status, err = upload(base, f"/search?{bad}", target)
        assert status == 422 and words in err["detail"], (bad, err)
    status, cls = request(base + "/classes")[:2]
    assert status == 200 and json.loads(cls)["classes"][0] == {"label": "circle", "images": 4}


def test_identify_known_and_unknown(server):
    base, gallery = server["base"], server["gallery"]
    img = sorted((gallery / "triangle").iterdir())[0].read_bytes()
    status, got = upload(base, "/identify", img)
    assert status == 200 and got["known"] is True and got["label"] == "triangle"
    assert got["match"].startswith("triangle/") and got["status"] in ("identified", "uncertain")
    assert got["threshold_source"] == "gallery+prior" and got["operating_point"] == "FPIR 0.01" and got["fpir"] == 0.01
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
        assert status == 200 and got["results"][0]["path"] == str(path.relative_to(gallery))
    assert snapshot(gallery, index) == before
    stats = json.loads(request(base + "/stats")[1])
    assert stats["queries"] >= 64 and stats["latency_ms"]["p50"] > 0
    assert stats["latency_ms"]["p99"] >= stats["latency_ms"]["p50"]


def test_serve_refuses_a_missing_index(tmp_path):
    proc = run_cli("serve", "--index", tmp_path / "nope.idx", "--port", str(free_port()), timeout=60)
    assert proc.returncode == 1 and "Error:" in proc.stderr and "Traceback" not in proc.stderr


CHROMIUM = Path("/usr/bin/chromium")


def _artifacts() -> Path:
    """Where the browser test leaves its screenshots: $SIMSEARCH_ARTIFACTS, else test-artifacts/ in the repository."""
    from tests.conftest import REPO

    folder = Path(os.environ.get("SIMSEARCH_ARTIFACTS", REPO / "test-artifacts")) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_page_in_headless_chromium(server, tmp_path):
    """The page as a person uses it: empty, a query with results and file names, more, a class filter, a
    folder filter, an unknown, an error in words; a screenshot of each state is kept as a test artefact."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from simsearch.symbols import draw_symbol

    base, gallery = server["base"], server["gallery"]
    query = sorted((gallery / "star").iterdir())[2]
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    # a drawing of a class the gallery lacks that the server calls unknown (asked through the API first)
    unknown = None
    for seed, name in enumerate(["wave", "square", "wave", "square"]):
        candidate = tmp_path / f"{name}-{seed}.png"
        draw_symbol(name, np.random.default_rng(100 + seed)).save(candidate)
        if upload(base, "/identify", candidate.read_bytes())[1]["status"] == "unknown":
            unknown = candidate
            break
    assert unknown is not None, "no drawing of an absent class was called unknown"
    shots = _artifacts()
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
    flags += ["--disable-component-update", "--disable-sync"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=flags)
        try:
            # the page runs under its Content-Security-Policy (no eval): waits use locators, not script strings
            expect = sync_api.expect
            page = browser.new_page(viewport={"width": 1100, "height": 900})

            def shot(name: str) -> None:
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

            # empty: statistics and classes, no query box (no broken image), no error, no "more"
            page.goto(base + "/")
            expect(page.locator("#stats")).to_contain_text("16 images")
            expect(page.locator("#stats")).to_contain_text("FPIR 0.01")
            expect(page.locator("#label option")).to_have_count(5)
            for hidden in ("#query-box", "#query-img", "#error", "#more", "#text-form"):  # characters reads no text
                expect(page.locator(hidden)).to_be_hidden()
            shot("1-empty")
            # a query: results with scores, classes and file names; the identification
            page.fill("#k", "5")
            page.set_input_files("#file", str(query))
            expect(page.locator("#results .hit")).to_have_count(5)
            expect(page.locator("#identity")).to_contain_text("star")
            assert page.get_attribute("#identity", "data-status") in ("identified", "uncertain")
            assert page.locator("#results .hit .label").all_inner_texts()[0] == "star"
            names = page.locator("#results .hit .name").all_inner_texts()
            assert all(n.endswith(".png") and "/" not in n for n in names) and names[0].startswith("star_")
            sources = [img.get_attribute("src") or "" for img in page.locator("#results img").all()]
            assert len(sources) == 5 and all("thumbnails/" in src for src in sources)
            for src in sources[:2]:
                status, body, _ = request(base + "/" + src.lstrip("/"))
                assert status == 200 and body[:2] == b"\xff\xd8"
            expect(page.locator("#status")).to_contain_text("showing 5 of 16")
            shot("2-results")
            # more: the next five, ranks 6-10, then on to the end, where "more" goes away
            page.click("#more")
            expect(page.locator("#results .hit")).to_have_count(10)
            assert page.locator("#results .hit .score").nth(5).inner_text().startswith("#6")
            shot("3-more")
            page.click("#more")
            expect(page.locator("#results .hit")).to_have_count(15)
            page.click("#more")
            expect(page.locator("#results .hit")).to_have_count(16)
            expect(page.locator("#more")).to_be_hidden()
            # a class filter, then a folder filter
            page.select_option("#label", "triangle")
            expect(page.locator("#status")).to_contain_text("of 4 images")
            assert set(page.locator("#results .hit .label").all_inner_texts()) == {"triangle"}
            shot("4-class-filter")
            page.select_option("#label", "")
            page.fill("#under", "cross")
            page.locator("#under").dispatch_event("change")
            expect(page.locator("#status")).to_contain_text("of 4 images")
            assert set(page.locator("#results .hit .label").all_inner_texts()) == {"cross"}
            page.fill("#under", "")
            page.locator("#under").dispatch_event("change")
            expect(page.locator("#status")).to_contain_text("of 16 images")
            # an unknown
            page.set_input_files("#file", str(unknown))
            expect(page.locator("#identity")).to_have_attribute("data-status", "unknown")
            expect(page.locator("#identity")).to_contain_text("unknown")
            shot("5-unknown")
            # an error, in words: what to do, no status code, no library name, and no stale results
            page.set_input_files("#file", str(notes))
            expect(page.locator("#error")).to_contain_text("is not an image this server can read")
            error = page.inner_text("#error")
            assert "415" not in error and "Pillow" not in error and "notes.txt" in error
            assert page.locator("#results .hit").count() == 0
            expect(page.locator("#query-box")).to_be_hidden()
            shot("6-error")
        finally:
            browser.close()
    assert sorted(p.name for p in shots.glob("*.png"))[:6] == [
        "1-empty.png",
        "2-results.png",
        "3-more.png",
        "4-class-filter.png",
        "5-unknown.png",
        "6-error.png",
    ]


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


def test_token_metrics_access_log_and_offline_docs(server, tmp_path):
    """A server with an access token (from SIMSEARCH_TOKEN): every route asks for it, the page gets it as a
    cookie from /?token=; /metrics speaks Prometheus; one access-log line per request; /docs needs no CDN."""
    from prometheus_client.parser import text_string_to_metric_families

    token = "s3cret-" + uuid.uuid4().hex
    log = tmp_path / "server.log"
    port = free_port()
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [*simsearch_cmd(), "serve", "--index", str(server["index"]), "--port", str(port), "--absolute-paths"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=dict(os.environ, SIMSEARCH_TOKEN=token),
        )
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {token}"}
        try:
            deadline = time.time() + 90
            while True:
                try:
                    if request(base + "/health", headers=auth)[0] == 200:
                        break
                except OSError:
                    pass
                assert proc.poll() is None and time.time() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
            # without the token, or with a wrong one: 401 on every route, with what to do
            for route in ("/", "/health", "/stats", "/metrics", "/docs", "/openapi.json", "/images/1"):
                status, body, headers = request(base + route)
                assert status == 401 and b"access token" in body, route
                assert request(base + route, headers={"Authorization": "Bearer nope"})[0] == 401
            assert request(base + "/?token=nope")[0] == 401
            # the page's log-in link: a cookie, and the token leaves the address bar
            opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
            with opener.open(base + f"/?token={token}", timeout=30) as r:
                assert r.status == 200 and r.url == base + "/" and b"<title>simsearch</title>" in r.read()
            with opener.open(base + "/stats", timeout=30) as r:
                assert json.loads(r.read())["count"] == 16
            # the bearer header works for uploads, and --absolute-paths gives the server's paths
            target = sorted((server["gallery"] / "circle").iterdir())[0]
            boundary = uuid.uuid4().hex
            body = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="q.png"\r\n\r\n'.encode()
                + target.read_bytes()
                + f"\r\n--{boundary}--\r\n".encode()
            )
            status, raw, _ = request(
                base + "/search?k=1",
                "POST",
                body,
                {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
            assert status == 200 and json.loads(raw)["results"][0]["path"] == str(target)
            # Prometheus metrics
            status, raw, headers = request(base + "/metrics", headers=auth)
            assert status == 200 and headers["content-type"].startswith("text/plain")
            families = {f.name: f for f in text_string_to_metric_families(raw.decode())}
            assert {"simsearch_requests", "simsearch_request_duration_seconds", "simsearch_queue_depth"} <= set(
                families
            )
            assert next(iter(families["simsearch_index_images"].samples)).value == 16
            searches = [
                s
                for s in families["simsearch_requests"].samples
                if s.name == "simsearch_requests_total" and s.labels["route"] == "/search"
            ]
            assert searches and searches[0].labels["status"] == "200" and searches[0].value == 1
            unauthorized = sum(
                s.value
                for s in families["simsearch_requests"].samples
                if s.name == "simsearch_requests_total" and s.labels["status"] == "401"
            )
            assert unauthorized >= 15
            # /docs from local assets: the page names no other host, and its script is served here
            status, raw, _ = request(base + "/docs", headers=auth)
            page = raw.decode()
            assert status == 200 and "cdn." not in page and "https://" not in page.split("<body>")[1]
            script = page.split('src="')[1].split('"')[0]
            status, js, _ = request(base + script, headers=auth)
            assert status == 200 and len(js) > 100_000
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    lines = [ln for ln in log.read_text().splitlines() if "simsearch.access" in ln]
    assert any(" POST /search 200 " in ln and ln.endswith(" ms") for ln in lines)
    assert any(" GET /metrics 401 " in ln for ln in lines)
    assert token not in log.read_text()  # the log names paths, never query strings or headers
