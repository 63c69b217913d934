"""Evaluation studies that compare methods and print tables (e.g. the seed's SDD history, `sdd_history`)."""
