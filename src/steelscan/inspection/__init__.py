"""The inspection station: strip geometry, merging pieces into defects, periodic defects, records, the runner."""
