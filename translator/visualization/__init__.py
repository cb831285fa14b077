"""Attention plots (PNG grids) and a self-contained HTML attention viewer."""
