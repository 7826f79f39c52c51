"""The import graph of ``bench``: no cycles, no core module importing method code, and a config that
loads without torch. Read from the source with ast (nothing is imported to draw the graph)."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHOD_CODE = ("bench.methods", "baselines")
KNOWN_CYCLES: list[set[str]] = []   # none; a cycle found here is a bug to fix, not to list


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str = "bench") -> dict[str, set[str]]:
    """{module: the modules of the package it imports}, at any depth of the file (function-level too)."""
    files = {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        here = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here.split(".")[:len(here.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets |= {base} | {f"{base}.{a.name}" for a in node.names}
        graph[mod] = {t for t in targets if t in files and t != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while not comp or w != v:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
            if len(comp) > 1:
                found.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_bench_package_has_no_import_cycle():
    graph = import_graph()
    assert "bench.registry" in graph["bench.config"]          # the graph sees relative imports
    assert [c for c in cycles(graph) if c not in KNOWN_CYCLES] == []


def test_no_core_module_imports_method_code():
    for mod, targets in import_graph().items():
        if not mod.startswith("bench.methods"):
            assert not [t for t in targets if t.startswith(METHOD_CODE)], mod


def test_importing_the_config_imports_no_torch():
    code = "import bench.config, bench.registry, bench.grid, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_a_config_loads_and_validates_without_torch():
    """Every section, the distillation ones and the methods' own included, parses without method code."""
    code = ("import sys; from bench.config import load_config; "
            "c = load_config('smoke', ['kd.temperature=5', 'colt.rate=0.2', 'teacher.data=full']); "
            "assert (c.kd.temperature, c.colt.rate, c.teacher.data) == (5.0, 0.2, 'full'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_no_builtin_method_module_registers_a_section():
    """Sections come from the torch-free section modules; one declared beside method code would be
    unknown to a config parsed before the methods load."""
    code = ("from bench import registry; registry.load_sections(); before = set(registry.sections()); "
            "registry.load(); extra = set(registry.sections()) - before; "
            "assert not extra, f'sections registered by method modules: {sorted(extra)}'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
