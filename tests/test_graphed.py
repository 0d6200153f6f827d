"""`mytensor.cuda.graphed`: a replayed training step trains as the eager loop does, and each thing a
replay cannot repeat gives its clear error.

Without a GPU, the recording logic runs against `FakeGraph`, the CPU backend made to "record":
its replay reruns the recorded call with the optimizers' host halves off (a graph holds only the
device work) and writes the results into the recorded outputs, as a replay rewrites them. The
tests marked gpu record real CUDA graphs."""
import numpy as np
import pytest

import mytensor as mt
from mytensor import nn, optim
from mytensor.backend import capture, get_backend
from mytensor.nn import functional as F
from mytensor.optim.optimizer import stepped

GPU = [pytest.param("cuda", marks=pytest.mark.gpu)] if mt.cuda_is_available() else []


class FakeGraph:
    def __init__(self, fn):
        with capture.recording(), stepped() as self.optimizers:
            self.outputs = fn()
        self.fn, self.fresh = fn, True

    def replay(self):
        if self.fresh:  # the recording did the work (a CUDA capture does none; graphed replays once after it)
            self.fresh = False
            return
        for opt in self.optimizers:
            opt.prepare_step = lambda: None
        try:
            with capture.recording():
                new = self.fn()
        finally:
            for opt in self.optimizers:
                del opt.prepare_step
        for old, t in zip(_tensors(self.outputs), _tensors(new)):
            old._data[...] = t._data


def _tensors(value):
    if value is None:
        return []
    return [value] if isinstance(value, mt.Tensor) else [t for v in value for t in _tensors(v)]


@pytest.fixture
def fake_graphs(monkeypatch):
    """The CPU backend records FakeGraphs; yields how many it made."""
    cpu, made = get_backend("cpu"), []
    monkeypatch.setattr(cpu, "records_graphs", True, raising=False)
    monkeypatch.setattr(cpu, "capture_graph", lambda fn: made.append(FakeGraph(fn)) or made[-1], raising=False)
    return made


def _muon_and_sgd(params):
    """Muon for the first weight matrix, SGD for the rest, as one optimizer (airbench94_muon's pairing)."""
    first, *rest = params
    return optim.CombinedOptimizer(optim.Muon([first], lr=0.02, momentum=0.6, normalize_weights=True),
                                   optim.SGD(rest, lr=0.05, momentum=0.85, nesterov=True, weight_decay=1e-3))


OPTIMIZERS = {"sgd": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
              "adam": lambda p: optim.Adam(p, lr=3e-3, weight_decay=1e-3), "muon+sgd": _muon_and_sgd}


def _model(dropout, device):
    layers = [nn.Linear(6, 16), nn.ReLU()] + ([nn.Dropout(0.3)] if dropout else []) + [nn.Linear(16, 3)]
    return nn.Sequential(*layers).to(device)


def _train(device, name, dropout, schedule, wrap, steps=7):
    """The weights and losses after `steps` steps of one seeded run; `wrap` makes the step function."""
    mt.manual_seed(0)
    model = _model(dropout, device)
    opt = OPTIMIZERS[name](model.parameters())
    scheduler = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1 if name == "sgd" else 1e-2, total_steps=steps) \
        if schedule else None
    gen = np.random.default_rng(1)
    data = [(mt.tensor(gen.standard_normal((8, 6)), dtype=mt.float32, device=device),
             mt.tensor(gen.integers(0, 3, 8), device=device)) for _ in range(steps)]

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    step, losses = wrap(step), []
    for x, y in data:
        losses.append(step(x, y).item())
        if scheduler is not None:
            scheduler.step()
    return [p.detach().cpu().numpy() for p in model.parameters()], losses


CASES = [(name, dropout, schedule) for name in OPTIMIZERS for dropout in (False, True) for schedule in (False, True)]


@pytest.mark.parametrize("name,dropout,schedule", CASES)
def test_recorded_steps_train_as_the_eager_loop(fake_graphs, name, dropout, schedule):
    want = _train("cpu", name, dropout, schedule, lambda f: f)
    got = _train("cpu", name, dropout, schedule, mt.cuda.graphed)
    assert len(fake_graphs) == 1  # recorded once, at the second call
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
    for a, b in zip(got[0], want[0]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("device", GPU)
@pytest.mark.parametrize("name,dropout,schedule", CASES)
def test_cuda_graph_steps_train_as_the_eager_loop(device, name, dropout, schedule):
    want = _train(device, name, dropout, schedule, lambda f: f)
    got = _train(device, name, dropout, schedule, mt.cuda.graphed)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-4)
    for a, b in zip(got[0], want[0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", GPU)
def test_cuda_graph_replays_autocast_and_the_grad_scaler(device):
    """A float16 step with loss scaling: replayed, it matches the eager one."""
    def run(wrap):
        mt.manual_seed(0)
        model = _model(True, device)
        opt, scaler = optim.SGD(model.parameters(), lr=0.05, momentum=0.9), mt.amp.GradScaler()
        x, y = mt.randn(8, 6, device=device), mt.randint(0, 3, (8,), device=device)

        def step(x, y):
            with mt.autocast("cuda", dtype=mt.float16):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            return loss

        step = wrap(step)
        losses = [step(x, y).item() for _ in range(5)]
        return losses, [p.detach().cpu().numpy() for p in model.parameters()]
    (want, want_w), (got, got_w) = run(lambda f: f), run(mt.cuda.graphed)
    np.testing.assert_allclose(got, want, rtol=1e-3)
    for a, b in zip(got_w, want_w):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("device", GPU)
def test_cuda_graph_dropout_masks_move_on_at_every_replay(device):
    @mt.cuda.graphed
    def masks(x):
        return F.dropout(x, 0.5)
    x = mt.ones(4096, device=device)
    outs = [masks(x).cpu().numpy() for _ in range(4)]  # eager, recorded, replayed, replayed
    assert masks.graph is not None
    for a, b in zip(outs, outs[1:]):
        assert (a != b).mean() > 0.3


def test_on_the_cpu_calls_run_eagerly():
    """No argument on a GPU: nothing is recorded, the same code serves both devices."""
    want = _train("cpu", "adam", True, True, lambda f: f)
    step = None

    def wrap(f):
        nonlocal step
        step = mt.cuda.graphed(f)
        return step
    got = _train("cpu", "adam", True, True, wrap)
    assert step.graph is None
    for a, b in zip(got[0], want[0]):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ misuse
def _setup(optimizer=optim.SGD, **kw):
    model = nn.Linear(4, 2)
    opt = optimizer(model.parameters(), lr=0.1, **kw)
    return model, opt, mt.randn(3, 4), mt.randint(0, 2, (3,))


def _step(model, opt, extra=lambda loss: None):
    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        extra(loss)
        return loss
    return step


def test_forbid_raises_only_while_recording():
    capture.forbid("this", "That.")
    with capture.recording(), pytest.raises(capture.GraphCaptureError,
                                            match="this inside a function recorded as a CUDA graph.*That"):
        capture.forbid("this", "That.")
    assert not capture.is_recording()


def test_a_scheduler_stepped_inside_raises(fake_graphs):
    model, opt, x, y = _setup()
    scheduler = optim.lr_scheduler.StepLR(opt, step_size=1)
    step = mt.cuda.graphed(_step(model, opt, lambda loss: scheduler.step()))
    step(x, y)  # the warm-up runs eagerly
    with pytest.raises(capture.GraphCaptureError, match=r"scheduler.step\(\) inside a function recorded"):
        step(x, y)


def test_another_shape_raises_or_runs_eagerly(fake_graphs):
    model, opt, x, y = _setup()
    step = mt.cuda.graphed(_step(model, opt))
    step(x, y), step(x, y)
    with pytest.raises(capture.GraphCaptureError, match=r"recorded for arguments \(tensor\(3, 4\) float32 on cpu"):
        step(x[:2], y[:2])
    lenient = mt.cuda.graphed(_step(model, opt), fallback=True)
    lenient(x, y), lenient(x, y)
    assert lenient(x[:2], y[:2]).shape == ()  # eagerly
    lenient(x, y)  # and the graph again


def test_other_values_of_plain_arguments_raise(fake_graphs):
    model, opt, x, y = _setup()

    def step(x, y, scale):
        loss = F.cross_entropy(model(x), y) * scale
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    step = mt.cuda.graphed(step)
    step(x, y, 1.0), step(x, y, 1.0), step(x, y, 1.0)
    with pytest.raises(capture.GraphCaptureError, match="pass the values as tensors"):
        step(x, y, 2.0)


def test_a_host_value_returned_raises(fake_graphs):
    model, opt, x, y = _setup()
    inner = _step(model, opt)
    step = mt.cuda.graphed(lambda x, y: (inner(x, y), 3.5))
    step(x, y)
    with pytest.raises(capture.GraphCaptureError, match="returned a float"):
        step(x, y)


def test_outputs_kept_past_the_next_call_raise(fake_graphs):
    model, opt, x, y = _setup()
    step = mt.cuda.graphed(_step(model, opt))
    step(x, y), step(x, y)  # the warm-up and the recording
    for _ in range(3):
        loss = step(x, y)  # one name for the last result is fine
    kept = [loss]
    with pytest.raises(capture.GraphCaptureError, match="held in more than one place"):
        step(x, y)
    assert kept


def test_optimizers_a_replay_cannot_step_raise(fake_graphs):
    class WholeStep(optim.SGD):
        def step(self):
            super().step()
    for optimizer, match in ((optim.RMSprop, "bakes its hyperparameters"), (WholeStep, r"overrides step\(\)")):
        model, opt, x, y = _setup(optimizer)
        step = mt.cuda.graphed(_step(model, opt))
        step(x, y)
        with pytest.raises(capture.GraphCaptureError, match=match):
            step(x, y)


def test_zero_grad_after_the_step_raises(fake_graphs):
    model, opt, x, y = _setup()
    step = mt.cuda.graphed(_step(model, opt, lambda loss: opt.zero_grad()))
    step(x, y)
    with pytest.raises(capture.GraphCaptureError, match=r"call zero_grad\(\) before backward\(\)"):
        step(x, y)


def test_an_optimizer_new_in_the_recording_raises(fake_graphs):
    model, opt, x, y = _setup()
    late = optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        (late if calls else opt).step()
        calls.append(1)
        return loss
    step = mt.cuda.graphed(step)
    step(x, y)
    with pytest.raises(capture.GraphCaptureError, match="ran in the recording but in none of the 1 warm-up"):
        step(x, y)


def test_a_failed_recording_falls_back_to_eager_steps(fake_graphs):
    """With fallback, the failing call and every later one run eagerly, each stepping once."""
    want_model, want_opt, x, y = _setup(optim.RMSprop)
    got_model, got_opt = nn.Linear(4, 2), None
    got_model.load_state_dict(want_model.state_dict())
    got_opt = optim.RMSprop(got_model.parameters(), lr=0.1)
    eager, lenient = _step(want_model, want_opt), mt.cuda.graphed(_step(got_model, got_opt), fallback=True)
    for i in range(4):
        eager(x, y)
        if i == 1:
            with pytest.warns(UserWarning, match="runs eagerly from now on"):
                lenient(x, y)
        else:
            lenient(x, y)
    assert lenient.eager
    for a, b in zip(got_model.parameters(), want_model.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="needs a function"):
        mt.cuda.graphed(3)
    with pytest.raises(ValueError, match="warmup must be at least 1"):
        mt.cuda.graphed(lambda: None, warmup=0)

    @mt.cuda.graphed(warmup=2, fallback=True)
    def f(x):
        return x + 1
    assert isinstance(f, mt.cuda.GraphedFunction) and f.warmup == 2 and f.fallback


@pytest.mark.parametrize("device", GPU)
def test_cuda_errors_name_what_a_replay_cannot_repeat(device):
    model = nn.Linear(4, 2).to(device)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x, y = mt.randn(3, 4, device=device), mt.randint(0, 2, (3,), device=device)
    for extra, match in ((lambda loss: loss.item(), "reading a tensor's value on the host"),
                         (lambda loss: print(loss), "reading a tensor's value on the host"),
                         (lambda loss: mt.manual_seed(1), "setting a seed"),
                         (lambda loss: mt.cuda.synchronize(), "waiting for the GPU"),
                         (lambda loss: mt.nonzero(model.weight), "reading a tensor's value|CUDA could not record")):
        step = mt.cuda.graphed(_step(model, opt, extra))
        step(x, y)
        with pytest.raises(capture.GraphCaptureError, match=match):
            step(x, y)


def test_the_trainer_replays_its_step(fake_graphs):
    """`mytensor train`'s epoch through the public API: the same weights and sums as eagerly, the
    last, smaller batch run eagerly."""
    from mytensor.training.loop import train_one_epoch
    gen = np.random.default_rng(2)
    batches = [(mt.tensor(gen.standard_normal((n, 6)), dtype=mt.float32), mt.tensor(gen.integers(0, 3, n)))
               for n in (8, 8, 8, 8, 5)]
    runs = []
    for cuda_graph in (False, True):
        mt.manual_seed(0)
        model = _model(True, "cpu")
        opt = optim.Adam(model.parameters(), lr=1e-2)
        scheduler = optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=len(batches))
        stats = train_one_epoch(model, batches, opt, scheduler, step_scheduler_per_batch=True,
                                cuda_graph=cuda_graph)
        runs.append((stats, [p.detach().numpy() for p in model.parameters()]))
    assert len(fake_graphs) == 1
    (eager, eager_w), (replayed, replayed_w) = runs
    for key in ("loss", "acc", "acc5"):
        assert replayed[key] == pytest.approx(eager[key], rel=1e-6)
    for a, b in zip(replayed_w, eager_w):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_run_records_its_evaluation_once(fake_graphs):
    """The run's `EvaluationStep` kept across evaluations, with test-time augmentation: one recording,
    the sums of the eager evaluation, each evaluation's its own (the last, smaller batch eager)."""
    from mytensor.training.loop import EvaluationStep, evaluate
    gen = np.random.default_rng(4)
    batches = [(mt.tensor(gen.standard_normal((n, 3, 6, 6)), dtype=mt.float32), mt.tensor(gen.integers(0, 4, n)))
               for n in (8, 8, 8, 5)]
    mt.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 4))
    runs = []
    for cuda_graph in (False, True):
        step = EvaluationStep(model, tta="translate", cuda_graph=cuda_graph)
        runs.append([evaluate(model, batches[:k], step=step) for k in (4, 3)])
    assert len(fake_graphs) == 1
    eager, replayed = runs
    assert eager[0]["loss"] != pytest.approx(eager[1]["loss"], rel=1e-4)
    for e, r in zip(eager, replayed):
        for key in ("loss", "acc", "acc5"):
            assert r[key] == pytest.approx(e[key], rel=1e-6)


def test_a_run_records_its_step_once_for_all_epochs(fake_graphs):
    """The run's `TrainingStep` kept across epochs: one recording, each epoch's sums its own, and the
    weights of the eager epochs."""
    from mytensor.training.loop import TrainingStep, train_one_epoch
    gen = np.random.default_rng(3)
    epochs = [[(mt.tensor(gen.standard_normal((8, 6)), dtype=mt.float32), mt.tensor(gen.integers(0, 3, 8)))
               for _ in range(3)] for _ in range(3)]
    runs = []
    for cuda_graph in (False, True):
        mt.manual_seed(0)
        model = _model(True, "cpu")
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        step = TrainingStep(model, opt, label_smoothing=0.1, cuda_graph=cuda_graph)
        stats = [train_one_epoch(model, batches, opt, step=step) for batches in epochs]
        runs.append((stats, [p.detach().numpy() for p in model.parameters()]))
    assert len(fake_graphs) == 1
    (eager, eager_w), (replayed, replayed_w) = runs
    assert eager[0]["loss"] != pytest.approx(eager[2]["loss"], rel=1e-3)  # each epoch sums its own steps
    for e, r in zip(eager, replayed):
        for key in ("loss", "acc", "acc5"):
            assert r[key] == pytest.approx(e[key], rel=1e-6)
    for a, b in zip(replayed_w, eager_w):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
