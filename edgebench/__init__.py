"""edgebench's one import name: `edgebench.bench`, `edgebench.runtimes`, `edgebench.models`, ...

The card's folders stay at the repository's top, but nothing imports them as `bench` or `models`: those generic
names belong to the user's code (a YOLOv5-style repository has its own `models/` and `utils/` packages), in the
parent and in every child process. In the source tree the subpackages are the folders beside this one; an
installed wheel holds them inside this package (pyproject.toml maps each folder to `edgebench.<folder>`).
"""

from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if not (Path(__file__).resolve().parent / "bench").is_dir() and (_ROOT / "bench" / "__init__.py").is_file():
    __path__.append(str(_ROOT))  # noqa: F821 (a package's own search path)

PACKAGES = ("bench", "runtimes", "models", "compression", "reports", "fleet", "study", "tasks")
