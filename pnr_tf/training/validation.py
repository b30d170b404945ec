"""Validation during training: held-out pairs, scored the way `python -m pnr_tf.evaluate` scores them."""

import numpy as np

from pnr_tf.data.pipeline import decoded_batches
from pnr_tf.evaluation.evaluate import baseline_metrics
from pnr_tf.evaluation.evaluate import pair_scores
from pnr_tf.evaluation.evaluate import person_scores
from pnr_tf.evaluation.ssim import body_masks
from pnr_tf.inference import PoseTransfer


class Validator:
    """Held-out pairs decoded once; SSIM and mask-SSIM (PATN's), L1 on [-1, 1], the person's colour error
    and sharpness (pnr_tf.evaluation.colour, .sharpness) of a generator's outputs.

    Generation goes through ``pnr_tf.inference`` (uint8 photos and keypoints in, uint8 out), so the
    numbers here equal `python -m pnr_tf.evaluate`'s on the same pairs.

    Args:
        samples: a validated SampleSet of the held-out pairs.
        image_size: (height, width).
        batch_size: generation batch size.
    """

    def __init__(self, samples, image_size, batch_size=32):
        self.batch_size = batch_size
        batches = list(decoded_batches(samples, batch_size, image_size))
        self.source_images = np.concatenate([batch["source_images"] for batch in batches])
        self.source_keypoints = np.concatenate([batch["source_keypoints"] for batch in batches])
        self.targets = np.concatenate([batch["target_images"] for batch in batches])
        self.target_keypoints = np.concatenate([batch["target_keypoints"] for batch in batches])
        self.sources = self.source_images[:, 0]
        self.masks = body_masks(self.target_keypoints, *image_size)  # the targets' people, for mask-SSIM, colour, sharpness
        self._models = {}

    def __len__(self):
        return len(self.targets)

    def generate(self, generator):
        """uint8 outputs of ``generator`` (inference mode) for every pair."""
        if id(generator) not in self._models:
            self._models[id(generator)] = PoseTransfer(generator)
        return self._models[id(generator)].generate(self.source_images, self.source_keypoints, self.target_keypoints, self.batch_size)

    def score(self, generator):
        """{"ssim", "l1", "mask_ssim", "colour_error", "sharpness"} of the generator on these pairs, as evaluate computes them."""
        images = self.generate(generator)
        scores = {name: float(np.mean(values)) for name, values in pair_scores(self.targets, images, self.masks).items()}
        return {**scores, **person_scores(self.targets, images, self.masks)[0]}

    def baselines(self):
        """The same scores of the trivial baselines on the same pairs: evaluate's, this set in its ScoredSet's place."""
        return baseline_metrics(self)
