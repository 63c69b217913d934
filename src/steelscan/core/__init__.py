"""What every layer shares: the error tree, model metadata, the image reader."""
