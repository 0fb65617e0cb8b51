"""The networks: :class:`SemanticUNet2DModel`, the Semantic Diffusion Model's U-Net built from diffusers blocks (the
noisy image enters the encoder, the label map the decoder through SPADE norms; ``low_res_channels`` makes it a
cascade's super-resolution stage), and its SPADE norm and res block (:mod:`.spade`). Saved pipeline folders name
:mod:`.semantic_unet_2d` in ``model_index.json``, so that module keeps its path.
"""

from .semantic_unet_2d import SegmentationFeatures, SemanticUNet2DModel, SemanticUNet2DOutput
from .spade import SPADEGroupNorm, SPADEResnetBlock2D

__all__ = [
    "SPADEGroupNorm",
    "SPADEResnetBlock2D",
    "SegmentationFeatures",
    "SemanticUNet2DModel",
    "SemanticUNet2DOutput",
]
