"""One line describing the machine a benchmark ran on (shared by the benchmark scripts)."""

import os
import platform
import subprocess


def describe_machine() -> str:
    """CPU model and count, OS, Python, TensorFlow and Keras versions, current load average."""
    import keras
    import tensorflow as tf

    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        cpu = f"{fields['Model name'].strip()}, {fields['CPU(s)'].strip()} CPU(s)"
    except (OSError, KeyError):
        cpu = platform.processor() or "unknown CPU"
    return (f"{cpu}; Linux {platform.release()}; Python {platform.python_version()}; "
            f"TensorFlow {tf.__version__}, Keras {keras.__version__}; "
            f"load average at start {os.getloadavg()[0]:.1f}")
