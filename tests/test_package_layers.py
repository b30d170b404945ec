"""The package's layers: no two packages (or top-level modules) of pnr_tf import each other, directly or round about."""

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pnr_tf"


def unit_of(module):
    """pnr_tf.data.pipeline -> pnr_tf.data; pnr_tf.inference -> pnr_tf.inference."""
    return ".".join(module.split(".")[:2])


def package_imports():
    """{unit: {unit it imports: [modules where]}} for every pnr_tf module, the package's own __init__ aside."""
    edges = defaultdict(lambda: defaultdict(list))
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        source = unit_of(module)
        if source == "pnr_tf":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pnr_tf"):
                names = [node.module] if node.module != "pnr_tf" else [f"pnr_tf.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name.startswith("pnr_tf")]
            for name in names:
                if unit_of(name) not in (source, "pnr_tf"):
                    edges[source][unit_of(name)].append(module)
    return edges


def test_no_package_imports_one_that_imports_it_back():
    edges = package_imports()

    def reachable(start):
        seen, stack = set(), [start]
        while stack:
            for target in edges.get(stack.pop(), {}):
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
        return seen

    cycles = [f"{source} -> {target} (in {', '.join(sorted(set(where)))})" for source, targets in edges.items()
              for target, where in targets.items() if source in reachable(target)]  # fmt: skip
    assert not cycles, "import cycles between packages:\n" + "\n".join(sorted(cycles))


def test_the_conventions_sit_at_the_bottom():
    edges = package_imports()
    assert not edges.get("pnr_tf.conventions"), dict(edges.get("pnr_tf.conventions", {}))
    importers = {source for source, targets in edges.items() if "pnr_tf.conventions" in targets}
    assert {"pnr_tf.data", "pnr_tf.pose", "pnr_tf.models", "pnr_tf.inference", "pnr_tf.evaluation"} <= importers
