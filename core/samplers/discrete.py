"""Built-in discrete samplers (importing this module registers them).

* ``ancestral`` — ``x_s ~ p(x_s | x_t)`` for masked and uniform kernels (:mod:`.discrete_ancestral`);
* ``cached`` — masked ancestral sampling that reuses the network output while no token changes;
* ``tau-leaping`` — τ-leaping of the masked reverse CTMC (:mod:`.discrete_tau`);
* ``confidence`` — confidence-ordered unmasking, a heuristic (:mod:`.discrete_confidence`);
* ``mixed-ancestral`` — product (continuous + discrete) processes (:mod:`.product`).
"""

from . import discrete_ancestral, discrete_confidence, discrete_tau, product  # noqa: F401
