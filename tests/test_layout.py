"""The package's layout rules, read from its source: where each third-party library may be
imported, which way imports point, that no imports go round in a circle, that only the command
line imports the package's own modules inside functions, that every error class is in the one
tree, how long modules and functions may grow, and that every closed choice set is written once
(in ``gguf_embed.choices``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gguf_embed import choices

pytestmark = pytest.mark.quick

PACKAGE = Path(__file__).resolve().parent.parent / "gguf_embed"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_TOP_LEVEL_MODULES = 12

# Layers, lowest first: a module may import its own layer (same package) or lower layers only.
LAYERS = {
    "choices": 0, "keys": 0, "errors": 0, "notes": 0,
    "registry": 1,
    "text": 2, "heads": 2,
    "model": 3,
    "engine": 4,
    "embedder": 5, "reranker": 5,
}
ADAPTER = 6  # corpus, convert, quality, server, cli, ray, mteb and the package's __init__

# third-party library -> where it may be imported (module paths relative to gguf_embed/)
HOMES = {
    "llama_cpp": ("engine/llama.py", "engine/ggml.py", "engine/quantize.py"),
    "click": ("cli/",),
    "rich": ("cli/",),
    "fastapi": ("server/",),
    "starlette": ("server/",),
    "uvicorn": ("server/", "cli/serve.py"),
    "gguf": ("model/", "convert/", "engine/planning.py"),
    "huggingface_hub": ("model/hub.py", "convert/"),
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imports(path: Path, *, in_functions_only: bool = False) -> list[tuple[str, int]]:
    """(absolute dotted name, line) of every import in a module, function-level ones included
    (``in_functions_only``: those alone). ``from . import x`` gives ``package.x`` for each name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = ["gguf_embed", *module_name(path)]
    package = here if path.name == "__init__.py" else here[:-1]
    nodes = ast.walk(tree)
    if in_functions_only:
        nodes = (n for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f))
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import x: each name is a module
                    out += [(f"{name}.{a.name}", node.lineno) for a in node.names]
                    continue
            else:
                name = node.module
                if name == "gguf_embed" or name.startswith("gguf_embed."):  # from gguf_embed.x import y: y may be a module
                    out += [(f"{name}.{a.name}", node.lineno) for a in node.names]
                    continue
            out.append((name, node.lineno))
    return out


def known_modules() -> set[str]:
    return {".".join(["gguf_embed", *module_name(p)]) for p in modules()}


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules importing it runs: the module the import names (or the module a
    name is imported from), and every package above it that the importer is not itself inside (Python
    runs a package's ``__init__`` before any of its modules)."""
    known = known_modules()
    graph: dict[str, set[str]] = {}
    for path in modules():
        me = ".".join(["gguf_embed", *module_name(path)])
        inside = {".".join(me.split(".")[:i]) for i in range(1, me.count(".") + 2)}
        if path.name == "__init__.py":
            inside.add(me)
        edges = graph.setdefault(me, set())
        for name, _ in imports(path):
            parts = name.split(".")
            if parts[0] != "gguf_embed":
                continue
            while parts and ".".join(parts) not in known:  # a name imported from a module
                parts = parts[:-1]
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target not in inside and target != me:
                    edges.add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer_of(parts: list[str]) -> int:
    if not parts:
        return ADAPTER
    return LAYERS.get(parts[0], ADAPTER)


def test_each_third_party_library_has_one_home():
    wrong = []
    for path in modules():
        for name, line in imports(path):
            top = name.split(".")[0]
            if top in HOMES and not any(rel(path).startswith(h) for h in HOMES[top]):
                wrong.append(f"{rel(path)}:{line} imports {name}")
    assert wrong == []


def test_only_the_engine_binding_modules_run_llama_cpp():
    users = {rel(p) for p in modules() for name, _ in imports(p) if name.split(".")[0] == "llama_cpp"}
    assert users <= {"engine/llama.py", "engine/ggml.py", "engine/quantize.py"} and "engine/llama.py" in users


def test_imports_point_one_way():
    wrong = []
    for path in modules():
        src = module_name(path)
        mine = layer_of(src)
        for name, line in imports(path):
            parts = name.split(".")
            if parts[0] != "gguf_embed" or len(parts) == 1:
                continue
            target = parts[1:]
            theirs = layer_of(target)
            same_package = bool(src) and target[0] == src[0]
            if theirs > mine or (theirs == mine and mine < ADAPTER and not same_package):
                wrong.append(f"{rel(path)}:{line} ({mine}) imports {name} ({theirs})")
    assert wrong == []


def test_no_import_cycles():
    """Module-level and in-function imports together: no module's import can come back to it."""
    assert cycles(import_graph()) == []


def test_the_cycle_check_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_package_modules_are_imported_inside_functions_only_by_the_command_line():
    """A command loads its library lazily (``--help`` stays fast); everything else imports at the top."""
    wrong = [f"{rel(p)}:{line} imports {name}" for p in modules() if not rel(p).startswith("cli/")
             for name, line in imports(p, in_functions_only=True) if name.split(".")[0] == "gguf_embed"]
    assert wrong == []


def test_every_error_class_is_in_the_error_tree():
    """Exception classes are defined in errors.py alone (and derive from GGUFEmbedError)."""
    from gguf_embed import errors

    outside = []
    for p in modules():
        if p.name == "errors.py" and p.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    (isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception")) or b.id == "GGUFEmbedError"))
                    or (isinstance(b, ast.Attribute) and b.attr.endswith(("Error", "Exception"))) for b in node.bases):
                outside.append(f"{rel(p)}:{node.lineno} {node.name}")
    assert outside == []
    tree = [getattr(errors, n) for n in errors.__all__ if isinstance(getattr(errors, n), type)]
    assert tree and all(issubclass(c, errors.GGUFEmbedError) for c in tree)


def test_sizes():
    long_modules = [f"{rel(p)}: {n}" for p in modules()
                    if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    long_functions = []
    for p in modules():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{rel(p)}:{node.lineno} {node.name}: {n} lines")
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert long_modules == []
    assert long_functions == []
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


CHOICE_SETS = {name: frozenset(getattr(choices, name)) for name in
               ("POOLINGS", "TASKS", "INPUT_TYPES", "TRUNCATE_POLICIES", "KV_TYPES", "FLASH_ATTN_MODES",
                "QUANT_TYPES", "ENCODING_FORMATS", "LISTING_FORMATS", "PRECISIONS", "COHERE_EMBEDDING_TYPES",
                "OUTPUTS", "HEAD_OUTPUTS")}


@pytest.mark.parametrize("path", [p for p in modules() if p.name != "choices.py"], ids=rel)
def test_choice_sets_are_written_once(path):
    """No module spells out a closed choice set of its own (a literal list/tuple/set of its values)."""
    again = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 2 and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            values = frozenset(e.value for e in node.elts)
            again += [f"line {node.lineno}: {name}" for name, choice in CHOICE_SETS.items() if values == choice]
    assert again == []
