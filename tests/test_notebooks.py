"""The example notebooks run from top to bottom on the real shared data and draw their figures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import SHARED

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _kernel_manager(tmp_path: Path):
    """A kernel manager for a kernel named ``python3`` running THIS interpreter (the venv with exemplar_color).

    A ``python3`` kernelspec found on the Jupyter path could point at another Python (e.g. one registered in
    the user's home), so the spec is written to a temporary folder and only that folder is searched.
    """
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    write_kernel_spec(tmp_path / "kernels" / "python3")  # argv: [sys.executable, "-m", "ipykernel_launcher", ...]
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    km = KernelManager(kernel_name="python3", kernel_spec_manager=ksm)
    assert km.kernel_spec.argv[0] == sys.executable
    return km


@pytest.mark.slow  # every notebook run in a kernel
@pytest.mark.parametrize("name", ["colorize_historical_photo.ipynb", "automatic_colorization.ipynb",
                                  "colorize_film.ipynb"])
def test_notebook_runs(name, tmp_path, monkeypatch):
    if not SHARED.exists():
        pytest.skip(f"needs {SHARED} (the project's ../shared folder with the photos and VGG-19 weights is absent)")
    for module in ("nbformat", "nbclient", "ipykernel", "matplotlib"):
        pytest.importorskip(module, reason=f"{module} is needed to run the notebooks: pip install -e '.[test]'")
    import nbformat
    from nbclient import NotebookClient

    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") or c.get("execution_count") for c in nb.cells if c.cell_type == "code"), \
        f"{name} must be stored without outputs"

    # The kernel inherits the environment: the notebook finds the same shared folder as the tests, and uses
    # one CPU thread like the rest of the suite (pytest -n 2 on 2 cores).
    monkeypatch.setenv("EXEMPLAR_COLOR_SHARED", str(SHARED))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")

    client = NotebookClient(nb, km=_kernel_manager(tmp_path), timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback

    figures = [c for c in nb.cells if "figure" in c.metadata.get("tags", [])]
    assert figures, f"{name}: no cell tagged 'figure'"
    for cell in figures:
        images = [o for o in cell.outputs if o.get("output_type") in ("display_data", "execute_result")
                  and "image/png" in o.get("data", {})]
        assert images, f"{name}: figure cell produced no image:\n{cell.source[:200]}"
