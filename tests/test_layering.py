"""Dependencies run one way: math, then models, then training and pipelines, then the CLI; inference never
imports the training-pairs room, and a subcommand imports no other subcommand, only the CLI's shared flags."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "sr3"

LAYERS = {
    "errors": 0, "config": 0, "configs": 0, "noise": 0,
    "imaging": 1, "schedules": 1, "pretrained": 1, "device": 1,
    "models": 2, "diffusion": 2, "resize": 2,
    "samplers": 3, "data": 3, "metrics": 3, "tiling": 3, "guidance": 3, "conditioning": 3,
    "checkpoint": 4,
    "predictors": 5,
    "pipeline": 6,
    "cascade": 7,
    "upscaler": 8,
    "evaluate": 9, "train": 9, "compare": 9, "study": 9,
    "schedule_search": 10, "serve": 10,
    "cli": 11,
}
INFERENCE = ("predictors", "pipeline", "cascade", "upscaler")  # what sampling a trained model runs
CLI_SHARED = ("common",)  # the modules of cli/ that every subcommand may import


def _top(module_path: Path) -> str:
    rel = module_path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _modules_imported(path: Path):
    """The dotted sr3 modules `path` imports anywhere in it (inside functions too), without the `sr3.`."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sr3."):
            yield node.module.removeprefix("sr3.")
        elif isinstance(node, ast.Import):
            yield from (a.name.removeprefix("sr3.") for a in node.names if a.name.startswith("sr3."))


def _imports(path: Path):
    yield from (m.split(".")[0] for m in _modules_imported(path))


def _modules():
    return [p for p in SRC.rglob("*.py") if not (p.name == "__init__.py" and p.parent == SRC)]


def test_every_module_has_a_layer():
    unplaced = sorted({_top(p) for p in _modules()} - set(LAYERS))
    unknown = sorted({t for p in _modules() for t in _imports(p)} - set(LAYERS))
    assert not unplaced, f"modules with no layer in LAYERS: {unplaced}"
    assert not unknown, f"imports of sr3 modules with no layer in LAYERS: {unknown}"


def test_every_import_points_down_and_peers_stay_apart():
    bad = []
    for path in _modules():
        if _top(path) not in LAYERS:
            continue  # named by test_every_module_has_a_layer
        here = _top(path)
        for target in _imports(path):
            if target not in LAYERS:
                continue
            if target == here:
                continue
            if LAYERS[target] > LAYERS[here] or (LAYERS[target] == LAYERS[here] and LAYERS[here] > 0):
                bad.append(f"{path.relative_to(SRC)} imports sr3.{target}")
    assert not bad, bad


def _module_file(dotted: str) -> Path:
    base = SRC.joinpath(*dotted.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def test_inference_never_imports_the_training_pairs():
    """Sampling a model needs no training data code: follow every import of the inference modules, transitively."""
    seen, todo = set(), list(INFERENCE)
    while todo:
        module = todo.pop()
        path = _module_file(module)
        if module in seen or not path.is_file():
            continue
        seen.add(module)
        todo += list(_modules_imported(path))
    assert "data.pairs" not in seen, sorted(seen)


def test_subcommands_import_only_the_shared_cli_modules():
    bad = []
    for path in (SRC / "cli").glob("*.py"):
        if path.stem in ("main", "__init__", *CLI_SHARED):
            continue
        for module in _modules_imported(path):
            if module.startswith("cli.") and module.split(".")[1] not in CLI_SHARED:
                bad.append(f"cli/{path.name} imports sr3.{module}")
    assert not bad, bad
