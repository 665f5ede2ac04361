"""Plots and widgets for the lessons: one module per topic."""
