"""The base layer: what a run writes and reads back.

Config, run directories, summary writers, event files, forgetting metrics, tables, plots.
"""
