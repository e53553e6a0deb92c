"""The documentation, checked as code: the README's Python blocks and every docs page's run as written, the site
builds with warnings as errors (tutorials and derivation examples executed), and the README stays a front page
whose test command is exactly what CI runs.

Python blocks: every ```python fence of a page runs, the page's blocks in order in one namespace, in a fresh
interpreter in a temporary folder (so files a block writes land there), with MNIST where the library looks for
it. A block that cannot run here says so in an HTML comment on the line before it, ``<!-- docs-test: skip: why -->``
(a GPU, a cluster); the test reports it as skipped with that reason. Executable pages (MyST notebooks, front
matter ``file_format: mystnb``) are run by the Sphinx build instead.

The build: ``sphinx-build -W --keep-going -j 2`` into a temporary folder, one BLAS thread per notebook kernel (see
docs/conf.py). How long each executed page took is on the built site's "Execution times" page (no test times
anything: on a shared machine a wall-clock limit would fail by load, not by code). It needs the ``docs`` extra (the README's test command installs
it; elsewhere the test skips, and fails under CI) and MNIST for the tutorials (skips without it, as the data tests
do).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import DATA_ROOT, REPO

DOCS = REPO / "docs"
README = REPO / "README.md"
SKIP_MARK = re.compile(r"<!--\s*docs-test:\s*skip:\s*(.+?)\s*-->")
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```", re.S | re.M)
BLOCK_TIMEOUT_S = 300  # one page's blocks together
BUILD_TIMEOUT_S = 540


def is_notebook(path):
    """A MyST notebook: front matter (between the first two ``---`` lines) that says ``file_format: mystnb``."""
    text = path.read_text()
    return text.startswith("---\n") and "file_format: mystnb" in text[4:].split("\n---", 1)[0]


def markdown_pages():
    """README.md and every docs page that is not an executable notebook (those run in the build)."""
    pages = [README] + sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts and not is_notebook(p))
    return [p for p in pages if not (p.parent.name == "api" and p.name != "index.md")]  # generated pages


def python_blocks(path):
    """``[(line, code, skip_reason or None)]`` for each ```python fence of ``path``."""
    text = path.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        if match.group(1) != "python":
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP_MARK.search(before)
        blocks.append((line, match.group(2), skip.group(1) if skip else None))
    return blocks


def env_for_examples():
    env = dict(os.environ, MPLBACKEND="Agg", MINISGD_OFFLINE="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    if DATA_ROOT is not None:
        env["MINISGD_DATA"] = str(DATA_ROOT)
    return env


PAGES = [p for p in markdown_pages() if python_blocks(p)]


def run_blocks(page, folder):
    """Run ``page``'s blocks in order in one namespace in a fresh interpreter in ``folder``: ``(result, skipped)``."""
    blocks = python_blocks(page)
    script = ["import sys, traceback", "namespace = {'__name__': '__main__'}"]
    for line, code, skip in blocks:
        if skip is None:  # each block compiled on its own, so a failure names the block's line
            script += [f"try:\n    exec(compile({code!r}, {f'{page.name}, block at line {line}'!r}, 'exec'), namespace)",
                       "except BaseException:\n    traceback.print_exc()\n"
                       f"    sys.exit('the block at line {line} of {page.name} failed')"]
    result = subprocess.run([sys.executable, "-c", "\n".join(script)], cwd=folder, env=env_for_examples(),
                            capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    return result, [f"line {line}: {skip}" for line, _, skip in blocks if skip is not None]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_python_blocks_run_as_written(page, tmp_path):
    result, skipped = run_blocks(page, tmp_path)
    assert result.returncode == 0, f"{page.relative_to(REPO)}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    if skipped:
        pytest.skip("not run here: " + "; ".join(skipped))


def test_blocks_run_in_order_and_a_failure_names_its_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nx = 1\n```\n\n<!-- docs-test: skip: needs a GPU -->\n```python\nimport cupy\n"
                    "```\n\n```bash\nexit 1\n```\n\n```python\nassert x == 2\n```\n")
    assert [(line, skip) for line, _, skip in python_blocks(page)] == [(3, None), (8, "needs a GPU"), (16, None)]
    result, skipped = run_blocks(page, tmp_path)
    assert result.returncode != 0 and "the block at line 16 of page.md failed" in result.stderr
    assert skipped == ["line 8: needs a GPU"]
    page.write_text(page.read_text().replace("x == 2", "x == 1"))
    assert run_blocks(page, tmp_path)[0].returncode == 0


# ---- the README as a front page -----------------------------------------------------------------------------------

def readme_test_command():
    text = README.read_text()
    match = re.search(r"Run the tests.*?```bash\n(.+?)\n```", text, re.S)
    assert match, "README.md has no 'Run the tests' block with the test command"
    return match.group(1).strip()


def test_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; the front page keeps at most 300 (move the rest to docs/)"
    for target in re.findall(r"\]\(((?:docs|plots)/[^)#\s]+)", README.read_text()):
        assert (REPO / target).exists(), f"README.md links to {target}, which does not exist"


def test_ci_runs_exactly_the_readme_test_command():
    command = readme_test_command()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert command in ci, f".ci/run must run the README's test command as it is:\n{command}"


def test_every_scenario_has_a_gallery_page():
    from minisgd.experiments import names
    missing = [n for n in names() if not (DOCS / "gallery" / f"{n}.md").is_file()]
    assert not missing, f"scenarios without a gallery page (docs/gallery/NAME.md): {missing}"


# ---- the site -----------------------------------------------------------------------------------------------------

def test_docs_build_with_warnings_as_errors(tmp_path):
    try:
        import myst_nb  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI"):
            raise AssertionError("CI must build the docs: install the docs extra (pip install -e '.[docs]')") from exc
        pytest.skip(f"the docs extra is not installed ({exc}); pip install -e '.[docs]'")
    if DATA_ROOT is None:
        pytest.skip("MNIST not found: the tutorials read it (set MINISGD_DATA to the folder that contains mnist/)")
    out, doctrees = tmp_path / "html", tmp_path / "doctrees"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-j", "2", "-b", "html", "-d", str(doctrees),
               str(DOCS), str(out)]
    env = dict(env_for_examples(), MINISGD_DOCS_EXECUTE="force")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    log = "\n".join(l for l in (result.stdout + result.stderr).splitlines() if "IPKernelApp" not in l)
    assert result.returncode == 0, f"sphinx-build -W failed:\n{log[-8000:]}"
    for page in ("index", "internals/exact-hessian", "tutorials/sb-vs-lb", "gallery/keskar-mnist", "api/core"):
        assert (out / f"{page}.html").is_file(), f"{page}.html was not built"
    for page in sorted(p for p in DOCS.rglob("*.md") if is_notebook(p)):
        html = (out / page.relative_to(DOCS)).with_suffix(".html").read_text()
        assert "cell_output" in html, f"{page.relative_to(DOCS)} shows no executed output"

