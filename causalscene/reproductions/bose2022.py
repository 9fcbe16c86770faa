"""Placeholder: filled in by the move of this paper's reproductions out of ``commands/``."""

from causalscene.reproductions._base import Reproduction

REPRODUCTIONS: list[Reproduction] = []
