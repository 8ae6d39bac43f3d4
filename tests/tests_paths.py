"""Paths the tests share (importable because pytest puts tests/ on sys.path)."""

from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
TINY_MODEL = f"{ASSETS / 'tiny_cnn.py'}:build"
MANY_HEADS_MODEL = f"{ASSETS / 'many_heads.py'}:build"
