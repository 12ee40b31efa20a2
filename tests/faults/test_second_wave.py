"""The second adversarial probe's failure families (issue 35): each test fails on the code before its fix.

Data loss first (demo, duplicates' remove list, train --out, checkpoints and exports half written), then
wrong answers (other spellings of a gallery, writers racing, stale calibrations, false "damaged"), then
memory and time, hostile files and the smaller ones. The service's own are in test_service_second_wave.py."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from index.errors import IndexChangedError
from index.store import IndexStore, Transaction
from simsearch.engine import build_index
from tests.conftest import REPO, run_cli

# ---------------------------------------------------------------- data loss


def test_demo_never_touches_a_folder_it_did_not_make(tmp_path):
    mine = tmp_path / "photos"
    (mine / "gallery").mkdir(parents=True)
    (mine / "gallery" / "holiday.jpg").write_bytes(b"my only copy")
    proc = run_cli("demo", "--out", mine)
    assert proc.returncode == 1 and "not made by `simsearch demo`" in proc.stderr
    assert (mine / "gallery" / "holiday.jpg").read_bytes() == b"my only copy"
    # a demo folder runs again; a file a user drops into its gallery stops it, and stays
    work = tmp_path / "d"
    run_cli("demo", "--out", work, check=True)
    run_cli("demo", "--out", work, check=True)
    (work / "gallery" / "circle" / "mine.png").write_bytes(b"x")
    again = run_cli("demo", "--out", work)
    assert again.returncode == 1 and "mine.png: not written by `simsearch demo`" in again.stderr
    assert (work / "gallery" / "circle" / "mine.png").read_bytes() == b"x"


def test_remove_list_never_names_a_keeper_or_its_target(tmp_path, random_model):
    from simsearch.symbols import write_symbol_set

    g = tmp_path / "g"
    write_symbol_set(g, ["circle", "star"], per_class=3, seed=1)
    real = g / "circle" / "circle_00.png"
    os.symlink(real, g / "circle" / "zz_link.png")  # a link to a gallery file: same bytes, one file
    os.link(real, g / "star" / "hard.png")  # a hard link: another name of the same inode
    idx = tmp_path / "g.idx"
    run_cli("index", "build", g, "--index", idx, "--model", random_model, "-q", check=True)
    listed = tmp_path / "remove.txt"
    proc = run_cli("duplicates", "--index", idx, "--threshold", "0.9999", "--remove-list", listed, "--json")
    assert proc.returncode == 0, proc.stderr
    group = next(json.loads(line) for line in proc.stdout.splitlines() if str(real) in line)
    hard = g / "star" / "hard.png"
    assert group["keep"] in (str(real), str(hard))  # a real file before the link to it
    doomed = listed.read_text().splitlines()
    assert str(real) not in doomed and str(hard) not in doomed  # both are the kept file, by inode
    for p in doomed:  # acting on the list leaves every kept file whole
        os.unlink(p)
    assert real.read_bytes()[:4] == b"\x89PNG"


def test_train_refuses_an_occupied_out(tmp_path):
    from simsearch.symbols import write_symbol_set

    data = tmp_path / "data"
    write_symbol_set(data, ["circle", "star", "cross", "wave"], per_class=6, seed=2)
    out = tmp_path / "enc"
    args = ("train", data, "--out", out, "--steps", "2", "--val-every", "1", "--quiet")
    run_cli(*args, check=True)
    before = (out / "model.safetensors").read_bytes()
    proc = run_cli(*args)
    assert proc.returncode == 2 and "holds a trained encoder" in proc.stderr and "--overwrite" in proc.stderr
    assert (out / "model.safetensors").read_bytes() == before
    run_cli(*args, "--overwrite", check=True)
    user = tmp_path / "notes"
    user.mkdir()
    (user / "a.txt").write_text("x")
    assert run_cli("train", data, "--out", user, "--steps", "2").returncode == 2


def test_a_checkpoint_save_stopped_between_its_two_writes_still_loads(tmp_path):
    """The state a kill between model.safetensors and model.json leaves: new weights, the new model.json
    pending. The load finishes the commit; before, it refused ("weights do not match the fingerprint")."""
    import torch

    from simsearch.checkpoint import load_checkpoint, save_checkpoint, weights_bytes
    from simsearch.encoder import EncoderConfig, build_encoder
    from simsearch.files import pending_name, write_atomic

    cfg = EncoderConfig(widths=(8, 8, 8, 8), embedding_dim=8)
    torch.manual_seed(1)
    save_checkpoint(build_encoder(cfg), tmp_path)
    torch.manual_seed(2)
    new = build_encoder(cfg)
    staged = tmp_path / "staged"
    fp = save_checkpoint(new, staged)
    write_atomic(tmp_path / pending_name("model.json"), (staged / "model.json").read_bytes())
    write_atomic(tmp_path / "model.safetensors", weights_bytes(new))  # ... and the kill lands here
    loaded = load_checkpoint(str(tmp_path))
    assert loaded.fingerprint == fp and json.loads((tmp_path / "model.json").read_text())["fingerprint"] == fp
    assert not (tmp_path / pending_name("model.json")).exists()


# ---------------------------------------------------------------- wrong answers


def test_another_spelling_or_a_move_of_the_gallery_is_the_same_gallery(tmp_path, gallery, random_model):
    idx = tmp_path / "g.idx"
    first = build_index(gallery, idx, model=str(random_model), progress=False)
    os.symlink(gallery, tmp_path / "glink")
    again = build_index(tmp_path / "glink", idx, progress=False)
    assert again.total == first.total == 16 and again.outside == 0 and again.added == 0
    moved = tmp_path / "gm"
    gallery.rename(moved)
    after = build_index(moved, idx, progress=False)
    assert after.total == 16 and after.moved == 16 and after.outside == 0 and after.added == 0
    with IndexStore.open(idx) as store:
        assert all(p.startswith(str(moved) + os.sep) for p in store.catalog.paths())


def test_a_writer_rechecks_the_index_under_the_lock(tmp_path, gallery, random_model):
    idx = tmp_path / "g.idx"
    build_index(gallery, idx, model=str(random_model), progress=False)
    with IndexStore.open(idx) as store:
        seen = store.manifest  # what a sync read (and loaded its encoder for) before taking the lock
    build_index(gallery, idx, model="characters", overwrite=True, progress=False)  # meanwhile: another encoder
    with pytest.raises(IndexChangedError, match="replaced by another simsearch process"):
        Transaction.begin(idx, expect=seen)
    fresh = tmp_path / "new.idx"
    build_index(gallery, fresh, model=str(random_model), progress=False)  # another build got there first
    with pytest.raises(IndexChangedError, match="made an index here meanwhile"):
        Transaction.create(fresh, 32, {"fingerprint": "x"}, replace_existing=False)
    assert not list(fresh.glob(".gen-tmp-*"))


def test_a_calibration_is_stale_when_the_gallery_content_changes(tmp_path, gallery, random_model):
    from simsearch.engine import calibrate, index_info
    from simsearch.symbols import write_symbol_set

    idx = tmp_path / "g.idx"
    build_index(gallery, idx, model=str(random_model), progress=False)
    labelled = tmp_path / "labelled"
    write_symbol_set(labelled, ["circle", "triangle", "spiral", "wave"], 8, seed=5)
    calibrate(labelled, idx, fpir=0.1, device="cpu", progress=False)
    assert index_info(idx)["threshold_source"] == "calibrated"
    # same counts, other content: two pictures swap classes
    a, b = gallery / "circle" / "circle_00.png", gallery / "star" / "star_00.png"
    a.rename(gallery / "star" / "moved_a.png")
    b.rename(gallery / "circle" / "moved_b.png")
    build_index(gallery, idx, progress=False)
    info = index_info(idx)
    assert info["count"] == 16 and info["calibrations"]["calibrated"]["stale"] is True
    assert info["threshold_source"] == "gallery"


def _read_only(path):
    """Make a folder unwritable, for root too (the immutable attribute) where chmod is not enough;
    returns how to undo it, or None when neither works here."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if made.returncode != 0:
        return None
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def test_calibrate_on_a_read_only_index_fails_before_its_work(tmp_path, gallery, random_model):
    idx = tmp_path / "g.idx"
    build_index(gallery, idx, model=str(random_model), progress=False)
    undo = _read_only(idx)
    if undo is None:
        pytest.skip("neither chmod nor chattr can make a folder read-only for this user here")
    try:
        proc = run_cli("calibrate", gallery, "--index", idx)
        assert proc.returncode == 1 and "read-only" in proc.stderr, proc.stderr
        assert "measuring" not in proc.stderr.lower()
    finally:
        undo()


def test_adding_one_file_twice_is_one_entry_not_a_damaged_catalog(tmp_path, gallery, random_model):
    idx = tmp_path / "g.idx"
    build_index(gallery, idx, model=str(random_model), progress=False)
    extra = tmp_path / "a.png"
    Image.new("L", (40, 40), 200).save(extra)
    proc = run_cli("index", "add", extra, "./a.png", "--index", idx, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["total"] == 17


def test_index_remove_of_an_empty_path_removes_nothing(tmp_path, gallery, random_model):
    idx = tmp_path / "g.idx"
    build_index(gallery, idx, model=str(random_model), progress=False)
    run_cli("index", "remove", "", "--index", idx, cwd=gallery)
    with IndexStore.open(idx) as store:
        assert store.manifest.count == 16


# ---------------------------------------------------------------- memory and time


def test_a_long_thin_png_is_framed_in_bounded_memory():
    from simsearch.checkpoint import load_checkpoint
    from simsearch.images import load_array

    img = Image.new("L", (1_000_000, 1), 255)
    img.putpixel((10, 0), 0)
    img.putpixel((999_000, 0), 0)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    script = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
        f"sys.path.insert(0, {str(REPO)!r}); "
        "from simsearch.images import load_array; from simsearch.preprocess import Preprocess; "
        'a = load_array(sys.stdin.buffer.read(), Preprocess(size=32, channels=1, framing="ink")); print(a.shape)'
    )
    proc = subprocess.run([sys.executable, "-c", script], input=buf.getvalue(), capture_output=True, timeout=120)
    assert proc.returncode == 0 and b"(1, 32, 32)" in proc.stdout, proc.stderr[-500:]
    assert load_array(buf.getvalue(), load_checkpoint("characters").config.preprocess).shape == (1, 32, 32)


def test_wide_images_count_their_real_bytes_and_map_without_warnings():
    import warnings

    from simsearch.images import _to_8bit, image_pixels

    f = np.full((50, 40), np.nan, np.float32)
    f[0, 0], f[1, 1] = 1.0, 3.0
    buf = io.BytesIO()
    Image.fromarray(f).save(buf, "TIFF")
    assert image_pixels(buf.getvalue()) == 2 * 50 * 40  # float: twice an 8-bit pixel's budget
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = np.asarray(_to_8bit(Image.fromarray(f)))
        blank = np.asarray(_to_8bit(Image.fromarray(np.full((4, 4), np.nan, np.float32))))
    assert out[0, 0] == 0 and out[1, 1] == 255 and out[2, 2] == 0 and not blank.any()


def test_a_small_file_is_read_without_a_buffer_of_the_limit():
    from simsearch.files import read_regular

    script = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); from simsearch.files import read_regular; "
        f"print(len(read_regular({str(REPO / 'pyproject.toml')!r}, 1 << 40)))"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and int(proc.stdout) == len((REPO / "pyproject.toml").read_bytes()), proc.stderr
    assert read_regular(REPO / "pyproject.toml", 1 << 40) == (REPO / "pyproject.toml").read_bytes()


def test_a_folder_a_thousand_levels_deep_is_walked(tmp_path):
    from simsearch.images import scan_folder

    here = os.getcwd()
    try:
        os.chdir(tmp_path)
        for _ in range(1000):
            os.mkdir("d")
            os.chdir("d")
        Image.new("L", (8, 8)).save("x.png")
    finally:
        os.chdir(here)
    try:
        scan = scan_folder(tmp_path)
        assert len(scan.files) == 1 and scan.files[0].path.name == "x.png"
    finally:  # shutil.rmtree recurses, so pytest could not clean this folder up: undo it level by level
        deepest = Path(*[tmp_path, *(["d"] * 1000)])
        os.chdir(tmp_path)
        try:
            os.chdir(os.path.relpath(deepest, tmp_path))
            os.unlink("x.png")
            for _ in range(1000):
                os.chdir("..")
                os.rmdir("d")
        finally:
            os.chdir(here)


# ---------------------------------------------------------------- hostile files


@pytest.mark.parametrize(
    ("library", "options", "message"),
    [
        ("timm", {"checkpoint_path": "/etc/passwd"}, "not allowed"),
        ("openclip", {"vision_cfg": {"timm_model_pretrained": True}}, "download or read a file"),
        ("openclip", {"text_cfg": {"hf_model_name": "bert-base"}}, "download or read a file"),
    ],
)
def test_model_json_options_cannot_make_a_load_read_or_download(library, options, message):
    from simsearch.backbones import Backbone

    with pytest.raises(ValueError, match=message):
        Backbone(library=library, name="x", feature_dim=8, options=options)
    Backbone(library=library, name="x", feature_dim=8, options={"drop_rate": 0.1} if library == "timm" else {})


def _zip(path: Path, members: dict[str, bytes], compress: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_members_that_cannot_or_may_not_be_read_are_skipped_with_a_reason(tmp_path):
    from simsearch.datasets import ZipMember, gather_images
    from simsearch.errors import ImageError

    png = io.BytesIO()
    Image.new("L", (16, 16), 0).save(png, "PNG")
    good = png.getvalue()
    z = _zip(tmp_path / "d.zip", {"set/a/1.png": good, "set/a/2.png": good, "set/b/1.png": b"\0" * (4 << 20)})
    items = gather_images(z)
    assert all(isinstance(it[2], ZipMember) for it in items)  # nothing read yet
    with pytest.raises(ImageError, match="inflates"):  # 4 MiB of zeros: a tiny member that inflates
        next(it for it in items if it[0].endswith("b/1.png"))[2].read()
    # a bad CRC: one byte of the stored member flipped
    z2 = _zip(tmp_path / "crc.zip", {"a/1.png": good}, zipfile.ZIP_STORED)
    raw = bytearray(z2.read_bytes())
    at = raw.index(good[20:40])
    raw[at] ^= 0xFF
    z2.write_bytes(bytes(raw))
    with pytest.raises(ImageError, match="cannot unpack"):
        gather_images(z2)[0][2].read()
    # the encrypted flag
    z3 = _zip(tmp_path / "enc.zip", {"a/1.png": good}, zipfile.ZIP_STORED)
    raw = bytearray(z3.read_bytes())
    raw[6] |= 1  # local header flags
    cd = raw.index(b"PK\x01\x02")
    raw[cd + 8] |= 1  # central directory flags
    z3.write_bytes(bytes(raw))
    with pytest.raises(ImageError, match="encrypted"):
        gather_images(z3)[0][2].read()


# ---------------------------------------------------------------- smaller


def test_writes_honour_the_umask(tmp_path, gallery, random_model):
    script = (
        f"import os, sys; os.umask(0o022); sys.path.insert(0, {str(REPO)!r}); "
        "from simsearch.engine import build_index; "
        f"build_index({str(gallery)!r}, {str(tmp_path / 'g.idx')!r}, model={str(random_model)!r}, progress=False)"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    idx = tmp_path / "g.idx"
    assert stat.S_IMODE((idx / "manifest.json").stat().st_mode) == 0o644
    gen = next(idx.glob("gen-*"))
    assert stat.S_IMODE(gen.stat().st_mode) == 0o755
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in gen.iterdir())


def test_csv_cells_that_would_be_formulas_are_text(tmp_path):
    from simsearch.results import write_rows

    out = write_rows([{"label": "=1+2*3", "path": "@SUM(A1)", "score": -0.5}], tmp_path / "r.csv")
    lines = out.read_text().splitlines()
    assert lines[1] == "'=1+2*3,'@SUM(A1),-0.5"


def test_an_extreme_fpir_prints_no_runtime_warning(tmp_path, gallery, random_model):
    idx = tmp_path / "g.idx"
    run_cli("index", "build", gallery, "--index", idx, "--model", random_model, "-q", check=True)
    proc = run_cli("identify", gallery / "star", "--index", idx, "--fpir", "1e-300")
    assert proc.returncode == 0 and "Warning" not in proc.stderr, proc.stderr


_RACE = """
import threading
from PIL import Image
from simsearch import faces
start = threading.Barrier(16)
errors = []
def go():
    start.wait()
    try:
        faces.find_faces(Image.new("RGB", (64, 64), "gray"))
    except Exception as err:
        errors.append(repr(err))
threads = [threading.Thread(target=go) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
print(len(errors), errors[:1])
"""


def test_opencv_first_used_from_sixteen_threads_at_once_loads_once():
    pytest.importorskip("cv2")
    # fresh interpreters, several at once (load makes the import race likelier): each first touches
    # OpenCV from 16 threads released together
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.startswith("0 "), (out, err[-2000:])


_FULL_DISK = r"""
set -e
mount -t tmpfs -o size=1m none "$MNT" || exit 77
$SIMSEARCH index build "$GALLERY" --index "$MNT/g.idx" -q
avail=$(df -k "$MNT" | tail -1 | awk '{print $4}')
head -c $(( (avail - 8) * 1024 )) /dev/zero > "$MNT/filler" 2>/dev/null || true
cp -r "$MORE"/* "$GALLERY"/
set +e
$SIMSEARCH index build "$GALLERY" --index "$MNT/g.idx" -q 2> "$ERR"
echo "rc=$?"
ls -a "$MNT/g.idx"
rm "$MNT/filler"
$SIMSEARCH index info --index "$MNT/g.idx" --json
"""


def test_a_full_disk_is_said_as_such_and_the_index_is_kept(tmp_path):
    """A real full disk: a 1 MB tmpfs in a private mount namespace (skipped where user namespaces are off)."""
    from simsearch.symbols import write_symbol_set
    from tests.conftest import simsearch_cmd

    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no user namespaces here to mount a small tmpfs")
    write_symbol_set(tmp_path / "g", ["circle", "triangle"], per_class=3, seed=0)
    write_symbol_set(tmp_path / "more", ["star", "cross"], per_class=3, seed=1)
    (tmp_path / "mnt").mkdir()
    env = dict(
        os.environ,
        MNT=str(tmp_path / "mnt"),
        GALLERY=str(tmp_path / "g"),
        MORE=str(tmp_path / "more"),
        ERR=str(tmp_path / "err.txt"),
        SIMSEARCH=" ".join(simsearch_cmd()),
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", _FULL_DISK], env=env, capture_output=True, text=True, timeout=300
    )
    if proc.returncode == 77:
        pytest.skip("cannot mount a tmpfs in a user namespace here")
    assert proc.returncode == 0, proc.stderr
    err = (tmp_path / "err.txt").read_text()
    assert "rc=1" in proc.stdout and "No space left" in err and "Traceback" not in err and "damaged" not in err
    assert ".gen-tmp" not in proc.stdout  # no half-made generation left behind
    info = json.loads(proc.stdout.splitlines()[-1])
    assert info["count"] == 6 and info["generation"] == 1  # the index as it was
