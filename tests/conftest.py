"""Test configuration: Keras 3 on JAX (x64) is the oracle; losskit runs on
every backend of :mod:`tests.backends`."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

import jax

jax.config.update("jax_enable_x64", True)

from keras.src.backend.common import dtypes as keras_dtypes  # noqa: E402

# Keras 3.15 promotes float64 to float32 inside ops such as `ops.mean`
# (`BIT64_TO_BIT32_DTYPE`, "aligned with JAX's default"), so its float64 losses
# are only float32-accurate.  losskit computes float64 in float64; the oracle is
# made to do the same, so float64 parity can be checked to 1e-10 rather than 1e-7.
keras_dtypes.BIT64_TO_BIT32_DTYPE["float64"] = "float64"

import hypothesis  # noqa: E402
import pytest  # noqa: E402

import losskit  # noqa: E402
from tests.backends import BACKENDS, Backend  # noqa: E402

hypothesis.settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, print_blob=True
)
hypothesis.settings.register_profile("thorough", max_examples=300, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each array library losskit is tested on."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _restore_settings() -> object:
    """Tests that change floatx/epsilon must not leak into others."""
    floatx, epsilon = losskit.floatx(), losskit.epsilon()
    yield
    losskit.set_floatx(floatx)
    losskit.set_epsilon(epsilon)
