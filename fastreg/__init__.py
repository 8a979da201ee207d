"""fastreg: compiled kernels for the regularization steps of neural-network training.

Dropout and noise with a counter-based random stream generated inside the kernels (no stored
masks, the same bits on every backend), a fused dense+activation+dropout layer, DropConnect,
proximal L1/L2/group-lasso updates in one memory pass, and batch image augmentation. Importing
fastreg compiles nothing and imports neither Numba nor CuPy.
"""

from ._backends import available_backends as available_backends
from ._backends import get_backend as get_backend
from ._backends import set_backend as set_backend
from ._backends import use_backend as use_backend
from ._runtime import get_num_threads as get_num_threads
from ._runtime import num_threads as num_threads
from ._runtime import set_num_threads as set_num_threads
from .augment import augment as augment
from .augment import random_affine as random_affine
from .augment import random_cutout as random_cutout
from .augment import random_flip as random_flip
from .augment import random_translate as random_translate
from .dense import dense_dropout as dense_dropout
from .dense import dense_dropout_backward as dense_dropout_backward
from .dropconnect import dropconnect as dropconnect
from .dropconnect import dropconnect_backward as dropconnect_backward
from .dropconnect import dropconnect_inference as dropconnect_inference
from .dropconnect import dropconnect_moments as dropconnect_moments
from .dropout import dropout as dropout
from .dropout import dropout_backward as dropout_backward
from .dropout import dropout_mask as dropout_mask
from .dropout import gaussian_dropout as gaussian_dropout
from .dropout import gaussian_noise as gaussian_noise
from .prox import max_norm_ as max_norm_
from .prox import penalty as penalty
from .prox import prox_adam_ as prox_adam_
from .prox import prox_group_lasso_ as prox_group_lasso_
from .prox import prox_sgd_ as prox_sgd_
from .random import RNG_SPEC_VERSION as RNG_SPEC_VERSION
from .random import philox4x32 as philox4x32
from .random import random_bits as random_bits

__version__ = "0.2.0"
