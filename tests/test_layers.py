"""The package's layering: no import cycle among its modules, and nothing outside imports ``_src``."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "smartmixed_jax"


def _module_imports(path: Path) -> set[str]:
  """The ``smartmixed_jax`` modules ``path`` imports when it is imported (module level, not under
  ``TYPE_CHECKING``; an import inside a function runs later, when the cycle can no longer bite)."""
  found = set()
  for node in ast.parse(path.read_text()).body:
    if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
      continue
    for child in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else ():
      if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("smartmixed_jax"):
        found.add(child.module)
        found.update(f"{child.module}.{alias.name}" for alias in child.names)
      elif isinstance(child, ast.Import):
        found.update(alias.name for alias in child.names if alias.name.startswith("smartmixed_jax"))
  return found


def _name(path: Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_private_modules_import_each_other_without_a_cycle():
  modules = {_name(p): p for p in (PACKAGE / "_src").glob("*.py")}
  graph = {
    name: {m for m in _module_imports(path) if m in modules and m != name} for name, path in modules.items()
  }
  done, stack = set(), []

  def visit(name):
    if name in stack:
      raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(name) :], name]))
    if name in done:
      return
    stack.append(name)
    for other in sorted(graph[name]):
      visit(other)
    stack.pop()
    done.add(name)

  for name in sorted(graph):
    visit(name)
  assert "smartmixed_jax._src.loop" in graph["smartmixed_jax._src.engine"]  # the check sees real edges


def test_nothing_outside_the_package_imports_its_private_modules():
  outside = [*(PACKAGE.parent / "experiments").glob("*.py")]
  offenders = [p.name for p in outside if any("_src" in m for m in _module_imports(p))]
  assert offenders == []
