"""Market-1501 formats, pose heatmaps and masks, tf.data pipelines, and the built-in synthetic dataset."""
