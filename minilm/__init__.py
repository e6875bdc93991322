"""minilm: the core technology of large language models, from scratch, on NumPy.

    import minilm
    import minilm.nn.functional as F

    x = minilm.Tensor([[1.0, 2.0]], requires_grad=True)
    loss = F.gelu(x).sum()
    loss.backward()
    print(x.grad)
"""
from minilm.autograd import (AnomalyError, GradcheckError, detect_anomaly, enable_grad, gradcheck,
                             is_grad_enabled, no_grad)
from minilm.backend import get_backend, set_backend
from minilm.random import manual_seed
from minilm.tensor import Tensor
# (`minilm.tensor` stays the module that defines Tensor, so there is no `tensor()` function here:
#  write minilm.Tensor(data).)
from minilm.tensor_functions import arange, cat, concatenate, ones, randn, split, stack, where, zeros

from minilm import nn, optim  # noqa: E402  (torch-style access: minilm.nn, minilm.optim)

__version__ = "0.1.0"

__all__ = ["Tensor", "zeros", "ones", "randn", "arange", "cat", "concatenate", "stack",
           "split", "where", "no_grad", "enable_grad", "is_grad_enabled", "gradcheck", "GradcheckError",
           "detect_anomaly", "AnomalyError",
           "manual_seed", "set_backend", "get_backend"]
