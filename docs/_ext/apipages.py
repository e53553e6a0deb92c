"""Write the API reference pages, ``docs/api/<part>.md``, from the package tree at every build.

One page per part of the package (the subpackages, then the top-level modules grouped as the architecture test
groups them); each page shows the part's own docstring and every module in it with all its public members. A
module added to minisgd appears without anyone editing the docs, and a docstring that does not render fails the
``-W`` build.
"""
import pkgutil
from pathlib import Path

import minisgd

# The parts in the order a reader meets them; top-level modules are listed under a part of their own.
PARTS = [
    ("core", "The hand-derived math", ["minisgd.core"]),
    ("curvature", "Curvature at a point", ["minisgd.curvature"]),
    ("theory", "Closed forms", ["minisgd.theory"]),
    ("training", "Training", ["minisgd.training"]),
    ("data", "Data", ["minisgd.data"]),
    ("experiments", "Experiments", ["minisgd.experiments"]),
    ("interface", "Sweeps, figures and the command line", ["minisgd.sweep", "minisgd.plotting", "minisgd.cli"]),
    ("base", "Backends, errors, test helpers", ["minisgd.backend", "minisgd.errors", "minisgd.testing"]),
]


def _modules(root):
    """``root`` and, for a package, every module below it (private ones, ``_name``, left out)."""
    module = __import__(root, fromlist=["_"])
    yield root
    if hasattr(module, "__path__"):
        for info in pkgutil.walk_packages(module.__path__, prefix=root + "."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                yield info.name


def _page(title, roots):
    lines = [f"# {title}", ""]
    for root in roots:
        for name in _modules(root):
            # ignore-module-all: a package documents what it defines, not what it re-exports from its modules
            lines += [f"## `{name}`", "", "```{eval-rst}", f".. automodule:: {name}", "   :ignore-module-all:", "```", ""]
    return "\n".join(lines)


def write_pages(app):
    folder = Path(app.srcdir) / "api"
    folder.mkdir(exist_ok=True)
    for stem, title, roots in PARTS:
        text = _page(title, roots)
        path = folder / f"{stem}.md"
        if not path.exists() or path.read_text() != text:  # unchanged pages keep their time stamps
            path.write_text(text)


def setup(app):
    app.connect("builder-inited", write_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
