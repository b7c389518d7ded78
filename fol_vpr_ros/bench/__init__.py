"""Benchmarks (`fol-vpr bench ...`): each writes a Markdown table and a JSON file."""
