import csv
import json
import subprocess
import sys

import click
import pytest

from simsearch.cli.common import INT_LIST as _INT_LIST
from simsearch.cli.common import parse_duration as _parse_duration
from simsearch.errors import SimSearchError
from simsearch.results import write_rows
from tests.conftest import REPO


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("80m", 4800), ("1.5h", 5400)])
def test_durations(text, seconds):
    assert _parse_duration(text) == seconds


def test_bad_duration_is_a_usage_error():
    with pytest.raises(ValueError, match="duration"):
        _parse_duration("ten minutes")
    proc = subprocess.run(
        [sys.executable, "-m", "simsearch", "train", "x", "--out", "y", "--time-budget", "ten minutes"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "is not a duration like 300" in proc.stderr


def test_result_rows_as_jsonl_and_flattened_csv(tmp_path):
    rows = [
        {"query": "a.png", "results": [{"rank": 1, "score": 0.9}, {"rank": 2, "score": 0.5}]},
        {"query": "b.png", "results": []},
    ]
    write_rows(rows, tmp_path / "r.jsonl", flatten="results")
    assert [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()] == rows
    write_rows(rows, tmp_path / "r.csv", flatten="results")
    with open(tmp_path / "r.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["query"], r["rank"], r["score"]) for r in table] == [
        ("a.png", "1", "0.9"),
        ("a.png", "2", "0.5"),
        ("b.png", "", ""),
    ]
    with pytest.raises(SimSearchError, match=r"jsonl or \.csv"):
        write_rows(rows, tmp_path / "r.xml")
    assert not (tmp_path / "r.xml").exists()


def test_train_option_defaults_are_the_library_defaults():
    """The CLI declares its defaults without importing torch; they must not drift from the configs'."""
    from dataclasses import fields

    from simsearch.cli.train import train_cmd
    from simsearch.encoder import EncoderConfig
    from simsearch.preprocess import Preprocess
    from simsearch.train import SelfSupConfig, TrainConfig

    ctx = click.Context(train_cmd)
    cli_defaults = {p.name: p.get_default(ctx) for p in train_cmd.params}
    renamed: dict[str, str] = {}
    compared = 0
    for config in (TrainConfig, SelfSupConfig, Preprocess):
        for f in fields(config):
            name = renamed.get(f.name, f.name)
            if name not in cli_defaults or f.name in ("invert", "mean", "std"):
                continue
            got = cli_defaults[name]
            want = getattr(f.default, "value", f.default)
            assert (type(want)(got) if got is not None else got) == want, f"--{name.replace('_', '-')}"
            compared += 1
    assert _INT_LIST.convert(cli_defaults["widths"], None, None) == EncoderConfig().widths
    assert cli_defaults["arch"] == EncoderConfig().arch.value
    assert compared >= 20


def test_reading_or_editing_an_index_does_not_load_torch():
    """info, check and remove need no encoder: the engine leaves torch unloaded until one is needed."""
    code = (
        "import sys, simsearch.cli; from simsearch.engine import open_index, remove_entries; print(sorted(sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "'simsearch.engine'" in loaded and "'torch'" not in loaded


def test_montage_rows_are_taken_in_turn_from_each_folder():
    from simsearch.pictures import sample_across

    items = [f"a{i}" for i in range(10)] + ["b0", "b1"] + [f"c{i}" for i in range(5)]
    picked = sample_across(items, lambda s: s[0], 7)
    assert picked == ["a0", "a1", "a2", "b0", "b1", "c0", "c1"]  # every folder before any shows thrice
    assert sample_across(items, lambda s: s[0], 100) == items
    assert sample_across([], lambda s: s, 5) == []
