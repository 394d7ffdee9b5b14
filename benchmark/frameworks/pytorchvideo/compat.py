"""The one shim pytorchvideo 0.1.5 needs on current torchvision.

pytorchvideo 0.1.5 (its last release) imports ``torchvision.transforms.functional_tensor``,
which torchvision 0.17 renamed to ``_functional_tensor`` (pytorchvideo 0.1.5, transforms/augmentations.py imports the old name).
Registering the old name before pytorchvideo is imported keeps the pinned release working.
"""

import sys

import torchvision.transforms._functional_tensor as _functional_tensor

sys.modules.setdefault("torchvision.transforms.functional_tensor", _functional_tensor)
