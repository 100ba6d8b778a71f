"""pss.ema.Ema: timm's ModelEmaV3 without per-step state_dict walks, value for value the same."""
import copy

import torch
from timm.utils import ModelEmaV3

from pss.ema import Ema


def test_ema_matches_timm_step_for_step_and_follows_in_place_loads():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    ours, theirs = Ema(model, decay=0.9, use_warmup=True), ModelEmaV3(copy.deepcopy(model), decay=0.9, use_warmup=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(1, 6):
        model(torch.randn(16, 4)).sum().backward()  # BatchNorm's running stats and counter change too
        opt.step()
        opt.zero_grad()
        ours.update(model, step=step)
        theirs.update(model, step=step)
        for (k, a), b in zip(ours.module.state_dict().items(), theirs.module.state_dict().values()):
            assert torch.equal(a, b), (step, k)
    # a resume loads weights in place: the collected lists still point at the live tensors
    state = {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    ours.update(model, step=6)
    theirs.update(model, step=6)
    assert all(torch.equal(a, b) for a, b in zip(ours.module.state_dict().values(), theirs.module.state_dict().values()))
    assert "_lists" not in ours.state_dict() and not any("_lists" in k for k in ours.module.state_dict())
