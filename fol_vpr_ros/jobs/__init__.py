"""The commands as typed functions (describe, build-map, evaluate, evaluate-bag, demos): each composes stages."""
