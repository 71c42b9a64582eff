"""Dependencies run one way: math, then models, then training and pipelines, then the CLI."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "sr3"

LAYERS = {
    "errors": 0, "config": 0, "configs": 0, "noise": 0,
    "imaging": 1, "schedules": 1, "pretrained": 1, "device": 1,
    "models": 2, "diffusion": 2,
    "samplers": 3, "data": 3, "metrics": 3, "tiling": 3, "guidance": 3, "conditioning": 3,
    "checkpoint": 4,
    "pipeline": 5,
    "cascade": 6,
    "evaluate": 7, "train": 7, "compare": 7, "study": 7,
    "schedule_search": 8, "serve": 8,
    "cli": 9,
}


def _top(module_path: Path) -> str:
    rel = module_path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sr3."):
            yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            yield from (a.name.split(".")[1] for a in node.names if a.name.startswith("sr3."))


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
