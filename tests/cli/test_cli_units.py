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


def test_a_declared_field_is_an_option_with_its_default_help_and_bounds():
    """Adding an option is adding a field: the CLI makes it from the declaration alone."""
    from dataclasses import dataclass

    from simsearch.cli.declared import options_from
    from simsearch.config.options import option

    @dataclass(frozen=True)
    class Request:
        beams: int = option(4, "Beams to search.", section="Search", bounds=(1, 64))
        wide: bool = option(False, "Search wide.", section="Search")

    @click.command()
    @options_from(Request)
    def cmd(**kw):
        click.echo(repr(sorted(kw.items())))

    from click.testing import CliRunner

    runner = CliRunner()
    assert runner.invoke(cmd, []).output.strip() == "[('beams', 4), ('wide', False)]"
    assert runner.invoke(cmd, ["--beams", "9", "--wide"]).output.strip() == "[('beams', 9), ('wide', True)]"
    assert runner.invoke(cmd, ["--beams", "0"]).exit_code == 2  # out of its bounds
    assert "Beams to search." in runner.invoke(cmd, ["--help"]).output


def test_every_declared_train_field_is_an_option_of_train_with_its_default():
    from dataclasses import fields

    from simsearch.cli.train import _REQUEST, train_cmd
    from simsearch.config.options import declared
    from simsearch.encoder import EncoderConfig
    from simsearch.train.setup import encoder_config

    ctx = click.Context(train_cmd)
    params = {p.name: p for p in train_cmd.params}
    for d in declared(*_REQUEST):
        got = params[d.name].get_default(ctx)
        if d.option.kind == "ints":
            got = _INT_LIST.convert(got, None, None)
        want = None if d.required else getattr(d.default, "value", d.default)
        assert (type(want)(got) if want is not None and got is not None else got) == want, d.name
    undeclared = {f.name for cls in _REQUEST for f in fields(cls) if "option" not in f.metadata}
    assert undeclared <= {
        "weight_decay",
        "warmup_steps",
        "device",
        "val_way",
        "val_shot",
        "val_episodes",
        "val_images",
        "batch",
        "flips",
    }
    assert encoder_config() == EncoderConfig()  # a new encoder's defaults are the library's


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


def test_reframe_with_another_protocol_is_refused_not_ignored(tmp_path):
    from tests.conftest import run_cli

    for other in ("--signatures", "--open-set", "--copy-detection"):
        proc = run_cli("evaluate", tmp_path, "--reframe", "pad", other)
        assert proc.returncode == 2 and "--reframe re-frames the images of few-shot" in proc.stderr, proc.stderr
