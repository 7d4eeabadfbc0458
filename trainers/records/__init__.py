"""The base layer: what a run writes and reads back (config, run directories, summaries, events, tables, plots)."""
