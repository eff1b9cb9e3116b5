"""The losses, one module per loss: its torch backend, autograd Function, functional form,
nn.Module and float64 reference, in that order (kernels in ``sslfast.kernels.<same name>``).

| loss | module | Triton kernels |
|---|---|---|
| VICReg | ``vicreg`` | ``kernels/vicreg.py`` |
| Barlow Twins | ``barlow_twins`` | ``kernels/barlow_twins.py`` |
| TiCo | ``tico`` | ``kernels/tico.py`` |
| total coding rate | ``coding_rate`` | none (batched Cholesky) |
| EMP-SSL | ``emp_ssl`` | ``kernels/emp_ssl.py`` |
| multi-crop InfoNCE, NT-Xent, MoCo | ``infonce`` | ``kernels/infonce.py`` |
"""

from .barlow_twins import BarlowTwinsLoss
from .coding_rate import TotalCodingRate
from .emp_ssl import EMPSSLLoss
from .infonce import MultiCropInfoNCELoss, NTXentLoss
from .tico import TiCoLoss
from .vicreg import VICRegLoss

__all__ = [
    "BarlowTwinsLoss",
    "EMPSSLLoss",
    "MultiCropInfoNCELoss",
    "NTXentLoss",
    "TiCoLoss",
    "TotalCodingRate",
    "VICRegLoss",
]
