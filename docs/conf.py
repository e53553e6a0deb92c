"""Sphinx configuration of minisgd's documentation: ``sphinx-build -W -b html docs docs/_build/html``.

Sphinx + MyST because minisgd's docstrings are reStructuredText with ``.. math::`` (autodoc renders them as they
are), the pages are Markdown, and myst-nb executes the tutorials and every derivation page's example at build time
(text notebooks: diffable, no stored outputs). NumPy, SciPy, JAX and curvlinops use the same stack.
"""
import os
import sys
from pathlib import Path

import minisgd

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "minisgd"
author = "the minisgd authors"
copyright = "minisgd authors, MIT licence"
release = minisgd.__version__
version = release

extensions = [
    "myst_nb",  # Markdown pages (MyST) and executable MyST notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # the few NumPy-style "Parameters / Returns" sections
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

# ---- sources ------------------------------------------------------------------------------------------------
exclude_patterns = ["_build", "jupyter_execute", ".jupyter_cache", "**.ipynb_checkpoints"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "attrs_inline"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # pages moved from the README keep their heading depths

# ---- execution: every page with code cells runs at build time, in a fresh kernel, failing the build on error ---
# One BLAS thread per kernel: on a shared 2-core machine a 2-thread OpenBLAS spins against the other jobs and small
# GEMMs ran 17x slower (a tutorial's 1,600 Adam steps: 19.6 s against 1.2 s). The kernels inherit this environment.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
nb_execution_mode = os.environ.get("MINISGD_DOCS_EXECUTE", "force")
nb_execution_timeout = 120  # seconds a cell; tests/test_docs.py checks every page under a minute
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# ---- API reference --------------------------------------------------------------------------------------------
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autosummary_generate = False
napoleon_google_docstring = False
napoleon_numpy_docstring = True

# ---- output ------------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"minisgd {release}"
html_theme_options = {"navigation_with_keys": True}
html_show_sourcelink = False

extensions.append("apipages")  # docs/_ext/apipages.py: the API reference pages, from the package tree
