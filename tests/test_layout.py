"""The package layout rules of the project's style guide (``../shared/STYLE.md``, kept beside the repository, not
in it), checked on the source: no import cycles (function-level imports count), typer and rich only under cli/,
every module under 400 lines and every function under 100; and the homes of docs/architecture.md: run-folder
file names only in models/run_folder.py, runtime names only in engine/serving/runtimes.py, option defaults from the
configs, training and serving apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mura_cli"
MAX_LINES = 400
MAX_FUNCTION_LINES = 100


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import in the file, at any depth (functions included)."""
    is_package = path.name == "__init__.py"
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package of this module
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                out.append((sub if sub in MODULES else module, node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = set()
        for module, _ in _imports(name, path):
            while module and module not in MODULES and "." in module:  # `import mura_cli.x.y.Name`-like forms
                module = module.rsplit(".", 1)[0]
            if module in MODULES and module != name:
                targets.add(module)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_layout_finds_the_package():
    assert "mura_cli.models.registry" in MODULES and "mura_cli.engine.training.train" in MODULES


def test_no_import_cycles_counting_function_level_imports():
    graph = _graph()
    cycles = _cycles(graph)
    detail = [" <-> ".join(c) + ": " + "; ".join(f"{a} -> {sorted(graph[a] & set(c))}" for a in c) for c in cycles]
    assert not cycles, "\n".join(detail)


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("mura_cli.models.registry", {"mura_cli.models.hub", "mura_cli.models.checkpoint"}),
        ("mura_cli.models.checkpoint", {"mura_cli.models.hub", "mura_cli.models.hub_errors"}),
    ],
)
def test_models_import_direction(importer, forbidden):
    """``models.hub -> models.checkpoint -> models.registry``: never the other way."""
    assert not _graph()[importer] & forbidden


def test_typer_and_rich_only_under_cli():
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        for name, path in MODULES.items()
        if not name.startswith("mura_cli.cli")
        for module, line in _imports(name, path)
        if module.split(".")[0] in ("typer", "rich", "click")
    ]
    assert not bad, "\n".join(bad)


def test_every_module_is_under_400_lines():
    long = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in MODULES.values()
        if (n := len(path.read_text().splitlines())) >= MAX_LINES
    }
    assert not long, f"modules of {MAX_LINES} lines or more: {long}"


def test_every_function_is_under_100_lines():
    long = {
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}": n
        for path in MODULES.values()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (n := node.end_lineno - node.lineno + 1) >= MAX_FUNCTION_LINES  # type: ignore[operator]
    }
    assert not long, f"functions of {MAX_FUNCTION_LINES} lines or more (signature included): {long}"


def test_the_checker_sees_cycles_and_function_level_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = _graph()
    assert "mura_cli.report.plots" in graph["mura_cli.engine.training.run"]  # imported inside save_epoch
    assert "mura_cli.models.checkpoint" in graph["mura_cli.models.hub"]


def _strings(tree: ast.AST) -> list[tuple[str, int]]:
    """Every string literal of a module (f-string parts included) but its docstrings (any bare string statement),
    with its line."""
    docs = {
        id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        (node.value, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


def test_run_folder_file_names_live_in_run_folder_only():
    """Every file name of a run folder is spelled in ``models/run_folder.py`` and nowhere else in the package:
    the rest asks :class:`~mura_cli.models.run_folder.RunFolder` or imports its constants."""
    import re

    from mura_cli.models import run_folder

    names = sorted({v for k, v in vars(run_folder).items() if k.isupper() and isinstance(v, str) and "." in v})
    assert {"summary.json", "train_config.json", "last_state.json", "oof.csv", "bf16_check.json"} <= set(names)
    spelled = re.compile(
        "|".join([*(rf"(?<![\w.-]){re.escape(n)}\b" for n in names), r"\bfold-(\d|$)", r"-int8\.onnx"])
    )
    dirs = {run_folder.NESTED_DIR, run_folder.ONNX_DIR, run_folder.EXPORT_DIR}
    other_folders = {"mura_cli.data.records": {"summary.json"}}  # the prepared index's summary, not a run's
    bad = []
    for name, path in MODULES.items():
        if name == "mura_cli.models.run_folder":
            continue
        tree = ast.parse(path.read_text())
        for text, line in _strings(tree):
            hits = {m.group(0) for m in spelled.finditer(text)} - other_folders.get(name, set())
            bad += [f"{path.relative_to(PACKAGE.parent)}:{line} spells {h!r}" for h in sorted(hits)]
        for node in ast.walk(tree):
            right = node.right if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) else None
            if isinstance(right, ast.Constant) and right.value in dirs:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} joins {node.right.value!r}")
    assert not bad, "\n".join(bad)


def test_runtime_names_live_in_the_runtime_registry_only():
    """Every ``--engine`` name is spelled in ``engine/serving/runtimes.py`` alone: the rest asks the registry (adding a
    runtime is one entry there plus its backend)."""
    from mura_cli.engine.serving.runtimes import RUNTIMES

    assert set(RUNTIMES) >= {"torch", "torch-bf16", "onnx", "onnx-int8"}
    other_meanings = {  # the same word, another concept
        ("mura_cli.models.run_folder", "onnx"),  # the run folder's export subfolder
        ("mura_cli.engine.evaluation.speed", "torch"),  # the torch package's version in the machine info
        ("mura_cli.errors", "torch"),  # the torch package's version in the mismatch message
    }
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line} spells {text!r}"
        for name, path in MODULES.items()
        if name != "mura_cli.engine.serving.runtimes"
        for text, line in _strings(ast.parse(path.read_text()))
        if text in RUNTIMES and (name, text) not in other_meanings
    ]
    assert not bad, "\n".join(bad)


def test_every_option_default_is_its_settings_default():
    """A ``mura`` option that sets a field of the command's config takes its default from that field (paths as
    strings; no value and an empty list are the same): the default is written once, in the config."""
    import dataclasses

    import typer.main

    from mura_cli import config, config_infer, config_pretrain
    from mura_cli.cli import app

    settings = {
        "predict": config_infer.PredictConfig,
        "localize": config_infer.LocalizeConfig,
        "benchmark": config_infer.BenchmarkConfig,
        "train": config.TrainConfig,
        "prepare": config.PrepareConfig,
        "demo": config_infer.DemoConfig,
        "pretrain": config_pretrain.PretrainConfig,
    }

    def plain(v):
        v = list(v) if isinstance(v, tuple | list) else str(v) if isinstance(v, Path) else v
        return None if v in ([], "") else v

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    checked, bad = 0, []
    for name, cls in settings.items():
        own = {f.name: f for f in dataclasses.fields(cls)}
        for p in commands[name].params:
            where = cls() if p.name in own else config.TransformConfig() if name == "train" else None
            if where is None or not hasattr(where, p.name):
                continue
            checked += 1
            if plain(p.default) != plain(getattr(where, p.name)):
                bad.append(f"mura {name} --{p.name}: {p.default!r}, the config says {getattr(where, p.name)!r}")
    assert checked > 60 and not bad, "\n".join(bad)


def test_shared_defaults_are_written_once():
    """``threshold_frac``, ``max_pixels`` and ``component`` defaults are constants of ``config_infer``: no function
    or config field elsewhere writes the value itself."""
    names = {"threshold_frac", "max_pixels", "component"}
    bad = []
    for name, path in MODULES.items():
        if name == "mura_cli.config_infer":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.arguments):
                args = [*node.posonlyargs, *node.args][-len(node.defaults) :] if node.defaults else []
                pairs = [*zip(args, node.defaults, strict=True), *zip(node.kwonlyargs, node.kw_defaults, strict=True)]
                bad += [
                    f"{path.relative_to(PACKAGE.parent)}:{a.lineno} {a.arg}={d.value!r}"
                    for a, d in pairs
                    if a.arg in names and isinstance(d, ast.Constant) and d.value is not None
                ]
            elif (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id in names
                and isinstance(node.value, ast.Constant)
                and node.value.value is not None
            ):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.target.id}={node.value.value!r}")
    assert not bad, "\n".join(bad)


ENGINE_ROOMS = {
    "training": {"train", "train_job", "train_data", "recipe", "folds", "nested", "distributed", "run", "pretrain"},
    "serving": {
        "load",
        "runtimes",
        "onnx",
        "predict",
        "screen",
        "localize",
        "journal",
        "parallel",
        "dicom_sink",
        "sinks",
    },
    "evaluation": {"evaluate", "benchmark", "speed", "export", "bf16"},
    "": {"backends", "results", "hooks", "demo", "prepare"},
}
"""engine/ by what the user does: a subpackage per room; the shared modules, the demo and prepare stay in engine/.
Training and serving meet only in the shared modules, models/ and data/."""


def _room_modules(room: str) -> set[str]:
    prefix = f"mura_cli.engine.{room}." if room else "mura_cli.engine."
    return {name for name in MODULES if name.startswith(prefix) and name.count(".") == prefix.count(".")}


def test_every_engine_module_has_one_room():
    for room, members in ENGINE_ROOMS.items():
        found = {name.rsplit(".", 1)[1] for name in _room_modules(room)} - {"__init__", *ENGINE_ROOMS}
        assert found == members, (room or "engine/", sorted(found ^ members))


@pytest.mark.parametrize(("room", "other"), [("training", "serving"), ("serving", "training")])
def test_training_and_serving_do_not_import_each_other(room, other):
    graph = _graph()
    bad = [f"{m} -> {t}" for m in sorted(_room_modules(room)) for t in sorted(_room_modules(other)) if t in graph[m]]
    assert not bad, "\n".join(bad)


def test_benchmark_takes_the_defaults_it_shares_with_predict_from_infer_config():
    """``BenchmarkConfig``'s fields that ``InferConfig`` also has take ``InferConfig``'s defaults (written once)."""
    import dataclasses

    from mura_cli.config_infer import BenchmarkConfig, InferConfig

    shared = {f.name for f in dataclasses.fields(InferConfig)} & {f.name for f in dataclasses.fields(BenchmarkConfig)}
    tree = ast.parse(MODULES["mura_cli.config_infer"].read_text())
    bench = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "BenchmarkConfig")
    written = {
        s.target.id: ast.unparse(s.value)
        for s in bench.body
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.value is not None
    }
    assert len(shared) >= 8
    assert {k: written[k] for k in shared} == {k: f"InferConfig.{k}" for k in shared}
