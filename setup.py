"""llm_tf: Transformer language models in TensorFlow/Keras, from self-attention to SavedModel."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements():
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines
            if line.strip() and not line.startswith("#") and "pytest" not in line]


setup(
    name="llm_tf",
    version="0.1.0",
    description="A TensorFlow/Keras reference implementation of Transformer language models: "
                "layers, pre-training, cached generation and SavedModel export.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["llm_tf", "llm_tf.*"]),
    install_requires=requirements(),
    extras_require={
        "test": ["pytest>=8.0", "nbmake>=1.5", "matplotlib>=3.8", "ipykernel>=6.0",
                 "ruff==0.17.6",
                 "regex>=2023.0"],  # the pre-tokenizer of GPT-2's reference encoder.py (tests)
        "notebooks": ["jupyter", "matplotlib>=3.8", "ipykernel>=6.0"],
    },
    entry_points={"console_scripts": ["llm-tf=llm_tf.cli:main"]},
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
