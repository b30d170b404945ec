"""Validation during training: held-out pairs, scored the way `python -m pnr_tf.evaluate` scores them."""

import numpy as np
import tensorflow as tf

from pnr_tf.data.pipeline import make_dataset
from pnr_tf.evaluation.baselines import BASELINES
from pnr_tf.evaluation.baselines import baseline_images
from pnr_tf.evaluation.evaluate import pair_scores
from pnr_tf.evaluation.evaluate import to_uint8

INPUT_NAMES = ("source_image", "source_pose", "target_pose")


class Validator:
    """Held-out pairs decoded once; SSIM (PATN's arguments) and L1 on [-1, 1] of a generator's outputs.

    The images are rounded to uint8 first, as evaluate and the exported models do, so the numbers
    here equal `python -m pnr_tf.evaluate`'s on the same pairs.

    Args:
        samples: a validated SampleSet of the held-out pairs.
        image_size: (height, width).
        heatmap_sigma: the run's data.heatmap_sigma.
        batch_size: generation batch size.
    """

    def __init__(self, samples, image_size, heatmap_sigma, batch_size=32):
        dataset = make_dataset(samples, batch_size, image_size, shuffle=False, repeat=False, sigma=heatmap_sigma, drop_remainder=False)
        self.batches, sources, targets = [], [], []
        for batch in dataset:
            self.batches.append({name: batch[name] for name in INPUT_NAMES})
            sources.append(to_uint8(batch["source_image"][:, 0]))
            targets.append(to_uint8(batch["target_image"]))
        self.sources, self.targets = np.concatenate(sources), np.concatenate(targets)
        self._functions = {}

    def __len__(self):
        return len(self.targets)

    def generate(self, generator):
        """uint8 outputs of ``generator`` (inference mode) for every pair."""
        key = id(generator)
        if key not in self._functions:
            self._functions[key] = tf.function(lambda inputs: generator(inputs, training=False), reduce_retracing=True)
        return np.concatenate([to_uint8(self._functions[key](batch)) for batch in self.batches])

    def score(self, generator):
        """{"ssim": mean SSIM, "l1": mean L1} of the generator on these pairs."""
        return {name: float(np.mean(values)) for name, values in pair_scores(self.targets, self.generate(generator)).items()}

    def baselines(self):
        """{baseline: {"ssim", "l1"}} on the same pairs (pnr_tf.evaluation.baselines)."""
        results = {}
        for name in BASELINES:
            scores = pair_scores(self.targets, baseline_images(name, self.sources, self.targets))
            results[name] = {metric: float(np.mean(values)) for metric, values in scores.items()}
        return results
