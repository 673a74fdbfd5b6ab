"""Families: recipes for one kind of hidden goal (or for a control), turned into per-organism recipes."""

from model_organisms.families.catalogue import FAMILIES, GOALS, PAYLOAD_SLOTS, PHRASES, Family, decoy
from model_organisms.families.recipe import OrganismRecipe, Role
from model_organisms.families.triggers import Trigger

__all__ = ["FAMILIES", "GOALS", "PAYLOAD_SLOTS", "PHRASES", "Family", "OrganismRecipe", "Role", "Trigger", "decoy"]
