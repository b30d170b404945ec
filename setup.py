from pathlib import Path

from setuptools import find_packages
from setuptools import setup

requirements = [
    line.strip()
    for line in Path(__file__).with_name("requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="pnr-tf",
    version="0.1.0",
    description="Pose-guided person image generation with hidden p-norm regression (TensorFlow / Keras 3)",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["pnr_tf", "pnr_tf.*"]),
    # The fused regression kernel ships as source: it is compiled against the installed
    # TensorFlow on first use (pnr_tf/ops/packed_cholesky.py).
    package_data={"pnr_tf.ops": ["kernels/*.cc"], "pnr_tf.app": ["page.html"],
                  "pnr_tf.pretrained": ["generator.keras", "config.yaml", "MODEL_CARD.md", "split/*.csv"]},
    python_requires=">=3.10",
    install_requires=requirements,
)
