"""Which floating-point precision a run computes in: ``train.precision`` resolved once, against the machine.

    auto            bfloat16 where the hardware has it, float32 elsewhere (below)
    float32         everything in float32
    mixed_bfloat16  layers compute in bfloat16, weights stay float32 (Keras' mixed_bfloat16 policy)
    mixed_float16   the same in float16, with loss scaling (GPUs)

``auto`` on a CPU: bfloat16 when it has bfloat16 instructions (Intel AMX, or AVX512-BF16 on Intel and
AMD Zen 4 / 5), which TensorFlow's oneDNN kernels use; float32 elsewhere, where bfloat16 would be
emulated and slower. On GPUs: bfloat16 from compute capability 8.0 (Ampere), float16 on 7.x (Volta,
Turing: fast float16, no bfloat16), float32 before. The regression, the losses and the weight average
stay float32 under every policy (``pnr_tf.layers.regression``, ``pnr_tf.layers.decoder``).
"""

import dataclasses
import platform

import tensorflow as tf

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # as /proc/cpuinfo names them


@dataclasses.dataclass(frozen=True)
class Precision:
    policy: str  # a Keras dtype policy: "float32", "mixed_bfloat16" or "mixed_float16"
    reason: str  # why, for the log and sessions.jsonl

    @property
    def loss_scaling(self):
        """float16 gradients underflow without it; bfloat16 has float32's range."""
        return self.policy == "mixed_float16"


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags as Linux lists them (an empty set where there is no /proc/cpuinfo)."""
    try:
        with open(path, encoding="utf-8") as file:
            for line in file:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def gpu_compute_capabilities():
    """(major, minor) of each visible GPU."""
    capabilities = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return capabilities


def resolve_precision(requested, flags=None, gpus=None):
    """``requested`` (one of PRECISIONS) as a Precision; ``flags`` / ``gpus`` default to this machine's."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return Precision(requested, "as configured")
    gpus = gpu_compute_capabilities() if gpus is None else gpus
    if gpus:
        oldest = min(gpus)
        if oldest >= (8, 0):
            return Precision("mixed_bfloat16", f"GPU compute capability {oldest[0]}.{oldest[1]} computes bfloat16")
        if oldest >= (7, 0):
            return Precision("mixed_float16", f"GPU compute capability {oldest[0]}.{oldest[1]}: float16, no bfloat16")
        return Precision("float32", f"GPU compute capability {oldest[0]}.{oldest[1]}: no fast half precision")
    flags = cpu_flags() if flags is None else set(flags)
    found = [flag for flag in BFLOAT16_CPU_FLAGS if flag in flags]
    if found:
        return Precision("mixed_bfloat16", f"the CPU has {' and '.join(found)}")
    machine = platform.machine() or "this CPU"
    return Precision("float32", f"{machine} CPU without bfloat16 instructions (amx_bf16, avx512_bf16): bfloat16 would be emulated")
