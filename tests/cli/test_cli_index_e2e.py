"""End to end for the grown-up index: add/remove, kinds, verify, calibrate, batch output, montage, duplicates."""

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from simsearch.symbols import draw_symbol, write_symbol_set
from tests.conftest import run_cli


def lines_json(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_add_and_remove_for_each_kind(tmp_path, gallery, kind):
    idx = tmp_path / "k.idx"
    run_cli("index", "build", gallery, "--index", idx, "--kind", kind, check=True)
    info = json.loads(run_cli("index", "info", "--index", idx, "--json", check=True).stdout)
    assert info["kind"] == kind and info["count"] == 16
    extra = tmp_path / "new.png"
    draw_symbol("wave", np.random.default_rng(8)).save(extra)
    report = json.loads(run_cli("index", "add", extra, "--index", idx, "--label", "wave", "--json", check=True).stdout)
    assert report["added"] == 1 and report["total"] == 17
    hit = lines_json(run_cli("query", extra, "--index", idx, "-k", "1", "--json", check=True).stdout)[0]["results"][0]
    assert hit["path"] == str(extra) and hit["label"] == "wave"
    star = gallery / "star" / "star_00.png"
    removed = json.loads(
        run_cli("index", "remove", star, gallery / "circle", "--index", idx, "--json", check=True).stdout
    )
    assert removed == {"removed": 5, "unmatched": []}
    res = lines_json(run_cli("query", star, "--index", idx, "-k", "12", "--json", check=True).stdout)[0]["results"]
    paths = [r["path"] for r in res]
    assert len(res) == 12 and str(star) not in paths and not any("/circle/" in p for p in paths)
    assert "agree" in run_cli("index", "check", "--index", idx, check=True).stdout
    missing = run_cli("index", "remove", tmp_path / "never.png", "--index", idx)
    assert missing.returncode == 1 and "not in the index" in missing.stderr


def test_verify_exit_codes(tmp_path, gallery):
    a, b = gallery / "star" / "star_00.png", gallery / "circle" / "circle_00.png"
    same = run_cli("verify", a, a, "--json")
    assert same.returncode == 0 and json.loads(same.stdout)["score"] == pytest.approx(1.0, abs=1e-4)
    diff = run_cli("verify", a, b, "--threshold", "0.9999", "--json")
    assert diff.returncode == 1 and json.loads(diff.stdout)["same"] is False
    err = run_cli("verify", a, tmp_path / "missing.png")
    assert err.returncode == 2 and "Error:" in err.stderr and "Traceback" not in err.stderr


def test_calibrate_saves_threshold_that_identify_uses(tmp_path, gallery):
    idx = tmp_path / "g.idx"
    run_cli("index", "build", gallery, "--index", idx, check=True)
    labelled = tmp_path / "labelled"
    write_symbol_set(
        labelled, ["circle", "triangle", "star", "cross", "spiral", "wave", "zigzag"], per_class=5, seed=11
    )
    roc = tmp_path / "roc.png"
    cal = json.loads(
        run_cli("calibrate", labelled, "--index", idx, "--fpir", "0.05", "--roc", roc, "--json", check=True).stdout
    )
    # 4 of the 7 classes are in the gallery: 20 known probes (each also unknown with its class left out), 15 unknown
    assert cal["known_probes"] == 20 and cal["unknown_probes"] == 15 and cal["derived_unknown"] == 20
    # 35 unknown probes cannot show 1 in 20 beyond a threshold 10 times over: the encoder's prior adds the tail
    assert cal["threshold_source"] == "calibrated+prior" and cal["operating_point"] == "FPIR 0.05"
    assert cal["fpir"] == 0.05
    assert [r["fpir"] for r in cal["rows"]] == [0.001, 0.01, 0.05, 0.1, 0.2]
    with Image.open(roc) as img:
        assert img.size[0] > 300
    info = json.loads(run_cli("index", "info", "--index", idx, "--json", check=True).stdout)
    assert info["threshold"] == pytest.approx(cal["threshold"]) and info["threshold_source"] == "calibrated+prior"
    assert info["class_sizes"] == {"circle": 4, "cross": 4, "star": 4, "triangle": 4}
    probes = tmp_path / "probes"
    write_symbol_set(probes, ["hourglass", "star"], per_class=2, seed=12)
    out = lines_json(run_cli("identify", probes, "--index", idx, "--json", check=True).stdout)
    assert len(out) == 4
    for o in out:
        assert o["threshold"] == pytest.approx(cal["threshold"], abs=1e-6)
        assert (
            o["threshold_source"] == "calibrated+prior"
            and o["fpir"] == 0.05
            and "labelled probes" in o["calibrated_on"]
        )
        assert o["known"] == (o["score"] >= o["threshold"])
        assert (o["label"] is None) == (not o["known"])
    # the operating point is the user's (another FPIR, closed-set: checked in-process in tests/engine); in text
    text = run_cli("identify", probes, "--index", idx, "--closed-set", check=True).stdout
    lines = text.splitlines()  # the threshold once, a line a probe, the tally
    assert len(lines) == 6 and lines[0] == "threshold closed-set: always the nearest class"
    assert lines[-1] == "4 probe(s): " + ", ".join(
        f"{sum(line.split()[2:3] == [k] for line in lines[1:5])} {k}" for k in ("identified", "uncertain", "unknown")
    )
    both = run_cli("identify", probes, "--index", idx, "--fpir", "0.2", "--threshold", "0.5")
    assert both.returncode == 2 and "at most one" in both.stderr
    # an unknown class is rejected: an empty page scores below a threshold set from real pairs
    blank = tmp_path / "blank.png"
    Image.new("L", (105, 105), 255).save(blank)
    unknown = lines_json(run_cli("identify", blank, "--index", idx, "--json", check=True).stdout)[0]
    assert unknown["known"] is False and unknown["label"] is None


def test_batch_output_and_montage(tmp_path, gallery):
    idx = tmp_path / "g.idx"
    run_cli("index", "build", gallery, "--index", idx, check=True)
    probes = tmp_path / "probes" / "star"
    write_symbol_set(tmp_path / "probes", ["star"], per_class=3, seed=21)
    jsonl, csv_path, sheet = tmp_path / "r.jsonl", tmp_path / "r.csv", tmp_path / "sheet.png"
    run_cli("query", probes, "--index", idx, "-k", "4", "--out", jsonl, "--montage", sheet, check=True)
    rows = lines_json(jsonl.read_text())
    assert len(rows) == 3 and all(len(r["results"]) == 4 for r in rows)
    run_cli("query", probes, "--index", idx, "-k", "4", "--out", csv_path, check=True)
    with open(csv_path, newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 12 and {"query", "rank", "id", "score", "label", "path"} <= set(table[0])
    with Image.open(sheet) as img:
        assert img.size == (5 * 140, 3 * 182)
        # the query folder is named like a gallery class, so hits get green or red frames
        colours = {img.getpixel((140 + 3, 3)), img.getpixel((2 * 140 + 3, 3))}
        assert colours <= {(30, 150, 60), (200, 40, 40)}
    bad = run_cli("query", probes, "--index", idx, "--out", tmp_path / "r.txt")
    assert bad.returncode == 1 and "use .jsonl or .csv" in bad.stderr
    # many queries: the sheet keeps to 16 rows, taken in turn from each folder of queries, and says so
    write_symbol_set(tmp_path / "many", ["circle", "cross", "wave"], per_class=8, seed=22)
    many = run_cli("query", tmp_path / "many", "--index", idx, "-k", "2", "--montage", sheet, "--json", check=True)
    assert "(16 of 24 queries, sampled across their folders)" in many.stderr
    with Image.open(sheet) as img:
        assert img.size == (3 * 140, 16 * 182)


def test_query_pages_and_filters(tmp_path, gallery):
    idx = tmp_path / "g.idx"
    run_cli("index", "build", gallery, "--index", idx, "-q", check=True)
    probe = gallery / "star" / "star_01.png"
    whole = lines_json(run_cli("query", probe, "--index", idx, "-k", "16", "--json", check=True).stdout)[0]
    page = lines_json(run_cli("query", probe, "--index", idx, "-k", "4", "--offset", "4", "--json", check=True).stdout)
    assert [h["id"] for h in page[0]["results"]] == [h["id"] for h in whole["results"][4:8]]
    assert page[0]["results"][0]["rank"] == 5 and page[0]["total"] == 16
    only = lines_json(
        run_cli(
            "query", probe, "--index", idx, "-k", "16", "--label", "cross", "--label", "circle", "--json", check=True
        ).stdout
    )[0]
    assert only["total"] == 8 and {h["label"] for h in only["results"]} == {"cross", "circle"}
    under = run_cli("query", probe, "--index", idx, "-k", "16", "--under", gallery / "triangle", check=True).stdout
    assert under.count("triangle_") == 4 and "star_" not in under.split("\n", 1)[1]
    bad = run_cli("query", probe, "--index", idx, "--label", "nosuch")
    assert bad.returncode == 2 and "no class 'nosuch'" in bad.stderr and bad.stderr.count("\n") == 1


def test_duplicates_groups(tmp_path, gallery):
    shutil.copy(gallery / "star" / "star_01.png", gallery / "cross" / "copy_of_star.png")
    with Image.open(gallery / "circle" / "circle_02.png") as img:
        img.convert("RGB").save(gallery / "circle" / "recompressed.jpg", quality=70)
    idx = tmp_path / "g.idx"
    run_cli("index", "build", gallery, "--index", idx, check=True)
    pair = [gallery / "circle" / "circle_02.png", gallery / "circle" / "recompressed.jpg"]
    score = json.loads(run_cli("verify", *pair, "--index", idx, "--json").stdout)["score"]

    def groups_at(threshold: float, montage=None) -> list[list[str]]:
        args = ["--montage-dir", montage] if montage else []
        out = lines_json(
            run_cli("duplicates", "--index", idx, "--threshold", f"{threshold:.6f}", "--json", *args, check=True).stdout
        )
        return [sorted(m["path"].rsplit("/", 1)[1] for m in g["members"]) for g in out]

    below = groups_at(score - 1e-4, montage=tmp_path / "dups")
    assert ["copy_of_star.png", "star_01.png"] in below  # an exact copy scores 1
    assert any({"circle_02.png", "recompressed.jpg"} <= set(g) for g in below)
    assert len(list((tmp_path / "dups").glob("group-*.png"))) == len(below)
    above = groups_at(min(score + 1e-4, 0.99999))
    assert not any({"circle_02.png", "recompressed.jpg"} <= set(g) for g in above) or score > 0.9999
    # the default threshold is the encoder's; the exact copy is found by its bytes; one file a group is kept
    remove = tmp_path / "remove.txt"
    text = run_cli("duplicates", "--index", idx, "--remove-list", remove, check=True)
    assert "false-match rate" in text.stdout and "to remove" in text.stdout
    doomed = remove.read_text().splitlines()
    assert len(doomed) >= 1 and all(p.startswith(str(gallery)) for p in doomed)
    rows = lines_json(run_cli("duplicates", "--index", idx, "--json", check=True).stdout)
    star = next(r for r in rows if any(m["path"].endswith("copy_of_star.png") for m in r["members"]))
    assert {m["match"] for m in star["members"]} >= {"exact"} and star["keep"] not in star["remove"]


def test_evaluate_open_set_states_and_observes_fpir(tmp_path):
    data = tmp_path / "symbols"
    write_symbol_set(data, ["circle", "triangle", "star", "cross", "spiral", "wave", "zigzag", "arrow"], 5, seed=2)
    det = tmp_path / "det.png"
    out = json.loads(
        run_cli(
            "evaluate",
            data,
            "--open-set",
            "--sizes",
            "3",
            "--shot",
            "2",
            "--runs",
            "4",
            "--roc",
            det,
            "--json",
            check=True,
        ).stdout
    )
    (row,) = out["results"]
    assert row["gallery_classes"] == 3 and row["runs"] == 4 and 0 <= row["nearest_class_accuracy"] <= 1
    names = [t["threshold"] for t in row["thresholds"]]
    assert names == [
        "gallery-fitted, FPIR 0.01",
        "gallery-fitted, FPIR 0.1",
        "gallery alone (no prior), FPIR 0.01",
        "gallery alone (no prior), FPIR 0.1",
        "encoder's threshold (pair FAR 0.01)",
    ]
    for t in row["thresholds"][:2]:
        assert t["ratio"] == pytest.approx(t["observed_fpir"] / t["stated_fpir"])
    with Image.open(det) as img:
        assert img.size[0] > 500
    misplaced = run_cli("evaluate", data, "--roc", det)
    assert misplaced.returncode == 2 and "--roc" in misplaced.stderr and "--open-set" in misplaced.stderr


def test_a_damaged_catalog_page_is_one_line_and_exit_1(tmp_path, gallery):
    idx = tmp_path / "d.idx"
    run_cli("index", "build", gallery, "--index", idx, "-q", check=True)
    manifest = json.loads((idx / "manifest.json").read_text())
    catalog = idx / manifest["files"]["catalog"]
    data = bytearray(catalog.read_bytes())
    assert len(data) > 4096  # the first page is the schema; the rows live after it
    data[4096:] = b"\xff" * (len(data) - 4096)
    catalog.write_bytes(bytes(data))
    for args in (["query", gallery / "star" / "star_00.png"], ["index", "check"], ["index", "info"]):
        out = run_cli(*args, "--index", idx)
        assert out.returncode == 1, (args, out.stderr)
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("Error: ") and "Traceback" not in out.stderr
