"""The autograd engine: ops with hand-written backward passes, no_grad, gradcheck, detect_anomaly."""
from minilm.autograd.anomaly import AnomalyError, detect_anomaly
from minilm.autograd.function import Function, unbroadcast
from minilm.autograd.grad_mode import enable_grad, is_grad_enabled, no_grad
from minilm.autograd.gradcheck import GradcheckError, gradcheck

__all__ = ["Function", "unbroadcast", "no_grad", "enable_grad", "is_grad_enabled", "gradcheck", "GradcheckError",
           "detect_anomaly", "AnomalyError"]
