"""Readers for every label layout, one shape out (`LabelledData`); see `base` for the conventions."""
