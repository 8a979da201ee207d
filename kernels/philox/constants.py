"""The only home of the Philox4x32-10 numbers and the per-family salts
(docs/contract/random-stream.md).

Every twin (NumPy, Numba, CUDA) takes its constants from here; changing any of them changes the
random stream and must bump ``RNG_SPEC_VERSION`` (a breaking change, logged under ``### RNG``).
"""

RNG_SPEC_VERSION = 1

#: Round multipliers (Salmon et al., SC'11).
M0 = 0xD2511F53
M1 = 0xCD9E8D57
#: Weyl key increments, added modulo 2**32 before rounds 2..10.
W0 = 0x9E3779B9
W1 = 0xBB67AE85
ROUNDS = 10
MASK32 = 0xFFFFFFFF

#: Third counter word, fixed per op family so families draw independent streams.
SALT_DROPOUT = 0
SALT_DROPCONNECT = 1
SALT_GAUSSIAN = 2
#: Per-sample augmentation parameters (docs/contract/ops.md): eight words per sample id.
SALT_AUGMENT = 3

#: 2**-32, the spacing of the uniform grid that Box-Muller draws from.
TWO_POW_M32 = 2.0**-32
