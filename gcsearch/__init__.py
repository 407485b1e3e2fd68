"""gcsearch: search and ablation of global-context blocks in ResNet backbones."""

from gcsearch.spec import ArchSpec

__version__ = "0.1.0"
__all__ = ["ArchSpec", "__version__"]
