"""minilm: the core technology of large language models, from scratch, on NumPy.

    import minilm
    import minilm.nn.functional as F

    x = minilm.Tensor([[1.0, 2.0]], requires_grad=True)
    loss = F.gelu(x).sum()
    loss.backward()
    print(x.grad)
"""
from minilm.autograd import GradcheckError, gradcheck, is_grad_enabled, no_grad
from minilm.backend import get_backend, set_backend
from minilm.random import manual_seed
from minilm.tensor import Tensor
from minilm.tensor_functions import (arange, cat, concatenate, ones, randn, split, stack, tensor,
                                     where, zeros)

__version__ = "0.1.0"

__all__ = ["Tensor", "tensor", "zeros", "ones", "randn", "arange", "cat", "concatenate", "stack",
           "split", "where", "no_grad", "is_grad_enabled", "gradcheck", "GradcheckError",
           "manual_seed", "set_backend", "get_backend"]
