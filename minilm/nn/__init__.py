"""Neural-network building blocks. `minilm.nn.functional` holds the ops as functions."""
from minilm.nn import functional
