"""Corpora and public data sets, read into the shapes Rejoinder's bots and training use."""
