"""Several optimizers stepped as one, for a model whose parameters take different update rules
(airbench94_muon: Muon for the convolution filters, SGD for the rest)."""
from .optimizer import Optimizer


class CombinedOptimizer(Optimizer):
    """`optimizers` as one Optimizer: its `param_groups` are theirs, in order (the same dicts, so a
    scheduler setting a group's lr sets that optimizer's), and a step is each one's step.

    Each optimizer runs its own halves of the step, so `mytensor.cuda.graphed` and `amp.GradScaler`
    see them as the optimizers that step. The state dict is the layout of one optimizer holding all
    the groups: parameters numbered across them, as `Optimizer.state_dict` numbers its own."""

    def __init__(self, *optimizers):
        if not optimizers or not all(isinstance(o, Optimizer) for o in optimizers):
            raise TypeError("CombinedOptimizer takes one or more optimizers")
        self.optimizers = optimizers
        self.param_groups = [g for o in optimizers for g in o.param_groups]
        # the settings they all have (OneCycleLR cycles the momentum of optimizers that have one)
        self.defaults = {k: v for k, v in optimizers[0].defaults.items() if all(k in o.defaults for o in optimizers)}

    @property
    def state(self):
        return {p: s for o in self.optimizers for p, s in o.state.items()}

    def add_param_group(self, param_group):
        raise TypeError("add a parameter group to one of the combined optimizers, before combining them")

    def prepare_step(self):
        for o in self.optimizers:
            o.prepare_step()

    def apply_step(self, found_inf=None):
        for o in self.optimizers:
            o.apply_step(found_inf)

    def state_dict(self):
        state, groups, offset = {}, [], 0
        for o in self.optimizers:
            own = o.state_dict()
            state.update({offset + i: s for i, s in own["state"].items()})
            groups += [{**g, "params": [offset + i for i in g["params"]]} for g in own["param_groups"]]
            offset += sum(len(g["params"]) for g in o.param_groups)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(groups)} parameter groups, this optimizer has "
                             f"{len(self.param_groups)}")
        start = 0
        for o in self.optimizers:
            own = groups[start:start + len(o.param_groups)]
            start += len(o.param_groups)
            indices = {i for g in own for i in g["params"]}
            o.load_state_dict({"state": {i: s for i, s in state_dict["state"].items() if i in indices},
                               "param_groups": own})
