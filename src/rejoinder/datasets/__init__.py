"""Corpora and public data sets that bots, benchmarks and training share."""
