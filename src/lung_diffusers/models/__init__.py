from .semantic_unet_2d import SegmentationFeatures, SemanticUNet2DModel, SemanticUNet2DOutput
from .spade import SPADEGroupNorm, SPADEResnetBlock2D

__all__ = [
    "SPADEGroupNorm",
    "SPADEResnetBlock2D",
    "SegmentationFeatures",
    "SemanticUNet2DModel",
    "SemanticUNet2DOutput",
]
