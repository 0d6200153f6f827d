"""Lookahead: slow weights that every k steps move part of the way toward the model's, which then
continue from them (Zhang et al., 2019, "Lookahead Optimizer: k steps forward, 1 step back").
The slow weights average out the noise of the last steps; airbench94 pulls ever harder toward
them as its learning rate decays."""
import numpy as np

from ..autograd.grad_mode import no_grad


class Lookahead:
    """Slow copies of `model`'s trainable parameters and floating buffers (batch-norm statistics).
    Call `step()` after every optimizer step: every k-th one does slow += alpha * (model - slow)
    and gives the model the slow values. alpha: a number in [0, 1], or a function of the step
    count giving one. `finish()` gives the model the slow values as they are (the end of training)."""

    def __init__(self, model, k=5, alpha=0.5):
        self.tensors = [p for p in model.parameters() if p.requires_grad]
        self.tensors += [b for b in model.buffers() if b.is_floating_point()]
        with no_grad():
            self.slow = [t.detach().clone() for t in self.tensors]
        self.k, self.alpha, self.steps = k, alpha, 0

    def step(self):
        self.steps += 1
        if self.steps % self.k == 0:
            self.sync(self.alpha(self.steps) if callable(self.alpha) else self.alpha)

    def sync(self, alpha):
        """slow += alpha * (model - slow), then the model takes the slow values (in place, no host sync)."""
        with no_grad():
            for slow, t in zip(self.slow, self.tensors):
                slow.lerp_(t, alpha)
                t.copy_(slow)

    def finish(self):
        self.sync(0.0)

    def state_dict(self):
        return {"steps": self.steps, "slow": [s.cpu().numpy() for s in self.slow]}

    def load_state_dict(self, state):
        self.steps = int(state["steps"])
        with no_grad():
            for slow, saved in zip(self.slow, state["slow"]):
                slow.copy_(slow.new_tensor(np.asarray(saved)))
