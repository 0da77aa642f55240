"""Help, choices and --config files as a new user meets them: the real ``mura`` executable in a subprocess."""

from __future__ import annotations

import json
import re

import click
import pytest
import typer

from mura_cli.cli import app

from synth import TINY_TRAIN, mura, mura_tree_and_workdir, one_error_line

# ------------------------------------------------------------------------------------------ help and choices


@pytest.mark.parametrize(
    ("args", "needle", "not_needle"),
    [
        (["predict", "x", "--aggregate", "median"], "--aggregate", "--format"),
        (["predict", "x", "--format", "xml"], "--format", "--aggregate"),
        (["predict", "x", "--engine", "onxx"], "--engine", None),
        (["localize", "x", "--heatmap", "tiff"], "--heatmap", None),
        (["localize", "x", "--component", "smallest"], "--component", None),
        (["benchmark", "--split", "test"], "--split", None),
        (["train", "--data", "x", "--schedule", "linear"], "--schedule", None),
        (["train", "--data", "x", "--output-stride", "5"], "--output-stride", None),
        (["prepare", "x", "--cache-mode", "round"], "--cache-mode", None),
        (["export", "x", "--format", "tflite"], "--format", None),
    ],
)
def test_a_value_outside_a_closed_set_names_its_own_option(tmp_path, args, needle, not_needle):
    res = mura(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    line = one_error_line(res)
    assert needle in line
    assert not_needle is None or not_needle not in line


@pytest.mark.slow
def test_choices_are_case_insensitive(tmp_path):
    res = mura("train", "--data", tmp_path / "none", "--schedule", "COSINE", cwd=tmp_path)
    assert "--schedule" not in res.stderr and "none" in one_error_line(res)


@pytest.mark.parametrize(
    ("command", "choices"),
    [
        ("predict", ["[csv|mura|jsonl]", "[mean|max]", "[torch|"]),
        ("localize", ["[png|npy]", "[largest|peak]"]),
        ("benchmark", ["[train|tune|valid|all]", "[largest|peak]"]),
        ("train", ["[plateau|cosine]", "[best|last]", "[stretch|shorter]", "[8|16|32]", "[auto|fp32|bf16]"]),
        ("prepare", ["[shorter|square]"]),
        ("export", ["[onnx]"]),
    ],
)
def test_help_lists_the_choices(tmp_path, command, choices):
    res = mura(command, "-h", cwd=tmp_path)
    assert res.returncode == 0
    for c in choices:
        assert c in res.stdout, c


def _commands() -> dict[str, click.Command]:
    group = typer.main.get_command(app)
    assert isinstance(group, click.Group)
    return dict(group.commands)


@pytest.mark.slow
def test_every_option_with_a_value_states_its_default(tmp_path):
    """A default is shown (a value, or what happens without the option); on/off flags are off unless typed."""
    for name, command in _commands().items():
        help_text = " ".join(mura(name, "-h", cwd=tmp_path).stdout.split())
        for opt in command.params:
            if not isinstance(opt, click.Option) or opt.is_flag or opt.name == "help":
                continue
            described = isinstance(opt.show_default, str) or opt.default not in (None, "", ()) or opt.required
            described = described or bool(opt.envvar)  # [env var: NAME]: unset, nothing
            assert described, f"mura {name} {opt.opts[0]}: no default shown"
            if isinstance(opt.show_default, str):
                assert f"[default: ({' '.join(opt.show_default.split())})]" in help_text, (name, opt.opts[0])


@pytest.mark.slow
def test_train_without_data_takes_the_dataset_prepared_here_or_says_what_to_pass(tmp_path):
    res = mura("train", "-h", cwd=tmp_path)
    block = " ".join(res.stdout.split("--arch")[0].split())
    assert "--data" in block and "[default: (the dataset `mura prepare` wrote in ./.mura, else ./MURA-v1.1)]" in block
    res = mura("train", "--arch", "densenet169", "--part", "elbow", cwd=tmp_path)
    assert res.returncode == 2 and "mura prepare MURA-v1.1" in one_error_line(res)
    (tmp_path / "c.json").write_text('{"data": "from-config"}')
    res = mura("train", "--config", "c.json", cwd=tmp_path)
    assert "from-config" in one_error_line(res)  # the data the file names
    res = mura("train", "--resume", "no-run", cwd=tmp_path)
    assert "no-run" in one_error_line(res)
    res = mura("train", "--list-archs", cwd=tmp_path)
    assert res.returncode == 0 and "densenet169" in res.stdout
    data, work = mura_tree_and_workdir(tmp_path, patients_per_part=4)
    assert mura("prepare", data, cwd=work).returncode == 0
    res = mura("train", *TINY_TRAIN, "--workers", "0", cwd=work)  # the four sold command lines: no --data typed
    assert res.returncode == 0, res.stderr
    assert "data: .mura/" in res.stderr and (work / "runs").is_dir()
    (work / ".mura" / "other").mkdir()
    (work / ".mura" / "other" / "index.csv").write_text("")
    res = mura("train", *TINY_TRAIN, cwd=work)
    assert res.returncode == 2 and "2 datasets are prepared here" in one_error_line(res)


def test_command_list_starts_with_demo_and_each_summary_is_one_sentence(tmp_path):
    res = mura("--help", cwd=tmp_path, env={"COLUMNS": "80"})
    rows = re.findall(r"│ (\w+) +(.+?) *│", res.stdout.split("Commands")[1])
    names = [name for name, _ in rows]
    assert names[0] == "demo" and set(names) == set(_commands())
    for name, summary in rows:
        assert summary.endswith("."), f"{name}: {summary!r} is cut"


def test_shell_completion_is_offered(tmp_path):
    res = mura("--help", cwd=tmp_path)
    assert "--install-completion" in res.stdout and "--show-completion" in res.stdout
    # typer detects the parent shell first (pytest under `sh -c` would be refused): name the shell instead
    env = {"SHELL": "/bin/bash", "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    res = mura("--show-completion", "bash", cwd=tmp_path, env=env)
    assert res.returncode == 0 and "_MURA_COMPLETE" in res.stdout


# ------------------------------------------------------------------------------------------ --config files


@pytest.mark.parametrize(
    ("name", "text", "needles"),
    [
        ("c.json", '{"lrr": 0.5, "transform": {"rotation": 5}}', ["'lrr'", "did you mean 'lr'"]),
        (
            "c.json",
            '{"lr": 0.5, "transform": {"rotatoin": 5}}',
            ["'transform.rotatoin'", "did you mean 'transform.rotation'"],
        ),
        ("c.json", '{"center_crop": 224}', ["'center_crop'", "did you mean 'transform.center_crop'"]),
        ("c.json", '{"transform": 30}', ["'transform' must be a table"]),
        ("c.json", '{"lr": "fast"}', ["'lr' = 'fast'", "expected a number"]),
        ("c.json", '{"epochs": 2.5}', ["'epochs' = 2.5", "a whole number"]),
        ("c.toml", "lr = 0.5\n[transform]\nrotatoin = 5\n", ["'transform.rotatoin'", "'transform.rotation'"]),
        ("c.toml", "lr = 0.5\n[transform\n", ["not valid TOML", "line 2"]),
    ],
)
def test_config_typos_are_usage_errors_naming_the_closest_key(tmp_path, name, text, needles):
    (tmp_path / name).write_text(text)
    res = mura("train", "--data", "x", "--config", name, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    line = one_error_line(res)
    assert name in line
    for needle in needles:
        assert needle in line, line


def test_a_toml_config_sets_what_a_json_one_does(tmp_path):
    from mura_cli.config import TrainConfig, load_config_file, train_config

    (tmp_path / "c.toml").write_text('lr = 0.5e-3\narch = "resnet18"\n[transform]\nrotation = 5\n')
    (tmp_path / "c.json").write_text('{"lr": 0.0005, "arch": "resnet18", "transform": {"rotation": 5}}')
    from_toml = train_config(load_config_file(tmp_path / "c.toml", TrainConfig), {})
    assert from_toml == train_config(load_config_file(tmp_path / "c.json", TrainConfig), {})
    assert from_toml.lr == 5e-4 and from_toml.transform.rotation == 5


# ------------------------------------------------------------------------------------------ output conventions


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    """A tiny finished run and a MURA valid folder with one broken image: ``(folder, run, images)``."""
    from test_cli_usage import make_run

    from synth import make_mura_tree

    root = tmp_path_factory.mktemp("conv")
    run = make_run(root / "run", parts=["elbow", "wrist"])
    valid = make_mura_tree(root / "d", patients_per_part=2, valid_patients=1) / "valid"
    (valid / "XR_ELBOW" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return valid, run, len(list(valid.rglob("image*.png")))


def _predict(screened, *args, cwd):
    valid, run, _ = screened
    return mura("predict", valid, "--model", run, "--workers", "0", *args, cwd=cwd)


@pytest.mark.slow
def test_predict_out_dash_writes_only_the_csv_to_stdout(tmp_path, screened):
    import csv
    import io

    res = _predict(screened, "--out", "-", cwd=tmp_path)
    assert res.returncode == 6, res.stderr  # the broken image
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert rows and set(rows[0]) >= {"study", "probability", "prediction"} and len(rows) == 3
    assert "-> stdout" in res.stderr and "failed" in res.stderr and "broken.png" in res.stderr
    assert not list(tmp_path.iterdir())  # no file, no journal, no errors CSV
    res = _predict(screened, "--out", "-", "--format", "jsonl", cwd=tmp_path)
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(records) == screened[2] and {"path", "probability", "study_probability", "prediction"} <= set(records[0])


@pytest.mark.slow
def test_predict_json_is_the_only_thing_on_stdout(tmp_path, screened):
    res = _predict(screened, "--json", "--format", "jsonl", cwd=tmp_path)
    assert res.returncode == 6
    summary = json.loads(res.stdout)
    assert summary["images"] == screened[2] and summary["studies"] == 3 and summary["failed"] == 1
    assert summary["out"] == "results.jsonl" and summary["failures"][0]["path"].endswith("broken.png")
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == screened[2]
    assert "model:" in res.stderr and res.stderr.splitlines()[-1].startswith("error: 1 input failed")
    res = _predict(screened, "--json", "--out", "-", cwd=tmp_path)
    assert res.returncode == 2 and "--json" in one_error_line(res)


@pytest.mark.slow
def test_quiet_prints_errors_and_the_final_line_only(tmp_path, screened):
    res = _predict(screened, "--quiet", cwd=tmp_path)
    assert res.returncode == 6
    assert res.stdout.splitlines() == [f"{screened[2]} images -> results.csv: 3 studies, 3 abnormal, 1 failed"]
    lines = res.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("failed: ") and lines[1].startswith("error: "), lines
    res = mura("prepare", screened[0].parent, "-q", "--out", "idx", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.splitlines() == ["index: idx/index.csv"] and not res.stderr


@pytest.mark.slow
def test_localize_out_dash_and_json(tmp_path, screened):
    valid, run, n = screened
    res = mura("localize", valid, "--model", run, "--workers", "0", "--out", "-", cwd=tmp_path)
    assert res.returncode == 6 and len(json.loads(res.stdout)["boxes"]) == n
    res = mura("localize", valid, "--model", run, "--workers", "0", "--json", "-q", cwd=tmp_path)
    summary = json.loads(res.stdout)
    assert summary["images"] == n and summary["failed"] == 1 and summary["out"] == "boxes.json"


@pytest.mark.slow
def test_benchmark_json_and_the_interval_notation(tmp_path, screened):
    data = screened[0].parent
    args = ("benchmark", "--data", data, "--model", screened[1], "--workers", "0", "--resamples", "50")
    res = mura(*args, "--out", "rep", cwd=tmp_path)
    interval = r"\d\.\d{3} \[[−-]?\d\.\d{3}, [−-]?\d\.\d{3}\]"
    assert re.search(interval, res.stdout) and "weighted F1" in res.stdout and "w. F1" not in res.stdout
    md = (tmp_path / "rep" / "report.md").read_text()
    assert re.search(rf"\| Cohen's kappa \| {interval}", md) and "| weighted precision |" in md
    assert res.stdout.rstrip().endswith("report: rep/index.html (and report.md, report.json, plots)")
    res = mura(*args, "--out", "rep2", "--json", cwd=tmp_path)
    summary = json.loads(res.stdout)
    assert summary["out"] == "rep2" and "study" in summary["report"]["levels"]
    assert "−" not in res.stdout  # JSON keeps plain numbers


def test_no_color_is_honoured(tmp_path):
    color = re.compile(r"\x1b\[[0-9;]*(3[0-7]|9[0-7]|38;)[0-9;]*m")
    forced = mura("predict", "x", "--aggregate", "median", cwd=tmp_path, env={"FORCE_COLOR": "1"})
    assert color.search(forced.stderr)  # the check below would pass on a colourless build too
    plain = mura("predict", "x", "--aggregate", "median", cwd=tmp_path, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "error:" in plain.stderr and not color.search(plain.stderr)
    help_text = mura("predict", "-h", cwd=tmp_path, env={"FORCE_COLOR": "1", "NO_COLOR": "1"}).stdout
    assert "--aggregate" in re.sub(r"\x1b\[[0-9;]*m", "", help_text) and not color.search(help_text)
