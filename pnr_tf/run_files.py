"""The names of a training run's files and folders, for everything that writes or reads a run directory
(``pnr_tf.training.run_directory`` describes each)."""

CONFIG = "config.yaml"
SESSIONS = "sessions.jsonl"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
SAMPLES = "samples"
VALIDATION_LOG = "validation.jsonl"
GENERATOR = "generator.keras"
BEST_GENERATOR = "generator_best.keras"
SPLIT = "split"
EVALUATION = "evaluation"
