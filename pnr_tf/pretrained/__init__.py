"""The pretrained real-people generator that ships with pnr_tf: what ``--model pretrained`` names in every
command, and what generate, the page, demo and export use when no model is given.

Trained by ``python -m pnr_tf.train --config configs/pretrained.yaml`` on the Market-1501 and DeepFashion
samples (research use only, as the datasets: MODEL_CARD.md). This folder holds its generator.keras, the
config.yaml of the run and split/ (the held-out people evaluate scores), as a run directory would.
"""

import sys
from pathlib import Path

from pnr_tf import run_files

NAME = "pretrained"
FOLDER = Path(__file__).resolve().parent
GENERATOR = FOLDER / run_files.GENERATOR
CARD = FOLDER / "MODEL_CARD.md"
NOTICE = f"using the pretrained real-people generator ({GENERATOR}; research use only, see {CARD.name})"


def folder():
    """The pretrained generator's folder, or FileNotFoundError when this installation lacks it."""
    if not GENERATOR.is_file():
        raise FileNotFoundError(f"the pretrained generator is not in this installation ({GENERATOR} is missing): reinstall pnr_tf, "
                                "or train it with python -m pnr_tf.train --config configs/pretrained.yaml and copy its generator.keras there")  # fmt: skip
    return FOLDER


MODEL_HELP = ("generator .keras file, training run directory (even one stopped midway), checkpoint, or pretrained: the real-people "
              "generator that ships with pnr_tf (the default)")  # fmt: skip


def chosen_model(model):
    """``--model`` as given, or "pretrained" with a one-line notice on stderr when it was not."""
    if model is not None:
        return model
    print(NOTICE, file=sys.stderr)
    return NAME
