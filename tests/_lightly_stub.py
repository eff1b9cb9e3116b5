"""Import lightly.loss without torchvision (lightly 1.6.0 is installed with --no-deps).

lightly.loss imports ``torchvision.ops.roi_align`` and ``torchvision.ops.StochasticDepth`` at
import time only (dense_relational_utils, models.utils); the losses under test never call them.
"""
import sys
import types

import torch


def import_lightly_loss():
    if "torchvision" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except ImportError:
            tv = types.ModuleType("torchvision")
            ops = types.ModuleType("torchvision.ops")

            def roi_align(*args, **kwargs):
                raise NotImplementedError("torchvision stub (tests only)")

            ops.roi_align = roi_align
            ops.StochasticDepth = type("StochasticDepth", (torch.nn.Module,), {})
            tv.ops = ops
            sys.modules["torchvision"] = tv
            sys.modules["torchvision.ops"] = ops
    import lightly.loss

    return lightly.loss
