"""The learner's fast paths compute what the reference step functions compute.

`RSSM.observe` filters a whole [B, T] sequence with the sequence-wide parts taken out of
the loop (reset masks, action input layer, the embedding's share of the posterior layer,
all noise in one draw); it must equal `obs_step` called step by step with the same noise,
for every RSSM variant. The dense GRU's one-matmul path must equal the block path.
"""

import pytest
import torch

from daydream.agent import Agent
from daydream.agent.nets import CPU_NORM_NODE_MIN, BlockGRU, RMSNorm, _RMSNormCPU
from helpers import synthetic_batch, tiny_config, vector_spaces


@pytest.mark.parametrize("overrides", [
    [],
    ["model.latent=gaussian"],
    ["model.blocks=4"],
    ["model.norm=none"],
    ["model.blocks=4", "model.dyn_input=split", "model.dyn_layers=1", "model.gate_norm=false",
     "model.prior_layers=2", "model.initial=zeros"],
])
def test_observe_equals_obs_step_loop(overrides):
    torch.manual_seed(0)
    obs_space, act_space = vector_spaces(action_dim=2)
    agent = Agent(tiny_config(*overrides), obs_space, act_space)
    b, t = 3, 10
    batch = synthetic_batch(obs_space, 2, b=b, t=t)
    batch["is_first"][1, 4] = True  # a reset mid-sequence
    data = agent._to_tensors(batch, batch_dims=2)
    rssm = agent.wm.rssm
    embed = agent.wm.encoder(data)
    noise = rssm.sample_noise((b, t), "cpu")
    post, prior = rssm.observe(embed, data["action"], data["is_first"], noise=noise)
    init = rssm.initial(b)
    state, steps = init, []
    for i in range(t):
        state = rssm.obs_step(state, data["action"][:, i], embed[:, i], data["is_first"][:, i], noise=noise[:, i],
                              init=init)
        steps.append(state)
    for key in steps[0]:
        ref = torch.stack([s[key] for s in steps], 1)
        torch.testing.assert_close(post[key], ref, rtol=1e-5, atol=1e-5, msg=key)
    prior_ref = rssm._stats(rssm.prior_net(post["deter"]))
    for key, value in prior_ref.items():
        torch.testing.assert_close(prior[key], value, msg=key)


def test_dense_gru_path_equals_block_path():
    torch.manual_seed(0)
    gru = BlockGRU(8, 12, 1, "rms")
    x, h = torch.randn(5, 8), torch.randn(5, 12)
    fused = gru(x, h)
    parts = gru.norm(gru.gates(torch.cat([x, h], -1).unsqueeze(-2)))  # the block-linear layer, one block
    reset, cand, update = parts.squeeze(-2).chunk(3, -1)
    cand = torch.tanh(torch.sigmoid(reset) * cand)
    update = torch.sigmoid(update - 1.0)
    torch.testing.assert_close(fused, update * cand + (1 - update) * h)


def test_prefetched_device_batches_train_like_numpy_batches():
    import numpy as np

    from daydream.replay.prefetch import Prefetcher, to_device

    obs_space, act_space = vector_spaces(action_dim=2)
    batch = synthetic_batch(obs_space, 2, b=2, t=6)
    ahead = Prefetcher(lambda: batch, 2, transform=to_device("cpu"))
    try:
        tensors = next(ahead)
    finally:
        ahead.stop()
    assert set(tensors) == set(batch)
    for key, value in batch.items():
        assert isinstance(tensors[key], torch.Tensor) and np.array_equal(tensors[key].numpy(), value)
    metrics = []
    for data in (batch, tensors):
        torch.manual_seed(0)
        agent = Agent(tiny_config(), obs_space, act_space)
        metrics.append({k: float(v) for k, v in agent.train(data).items()})
    assert metrics[0] == metrics[1]


@pytest.mark.parametrize("actor_grad", ["dynamics", "reinforce"])
def test_critic_loss_on_the_shared_critic_pass_equals_a_pass_of_its_own(actor_grad):
    """The critic's loss reuses the logits of the actor's critic pass (kept by `retain_graph`):
    after the actor's step, its loss and parameter gradients equal those of a fresh critic pass
    on the detached imagined states, and its step changes the critic alone."""
    torch.manual_seed(0)
    obs_space, act_space = vector_spaces(action_dim=2)
    agent = Agent(tiny_config(f"behavior.actor_grad={actor_grad}"), obs_space, act_space)
    data = agent._to_tensors(synthetic_batch(obs_space, 2, b=2, t=6), batch_dims=2)
    _, post, _ = agent.wm.loss(data)
    actor_loss, targets, _ = agent.behavior.actor_loss(agent.wm, post, data["is_terminal"])
    agent.actor_opt.step(actor_loss, retain_graph=True)
    params = list(agent.behavior.critic.parameters())
    shared, _ = agent.behavior.critic_loss(targets)
    own, _ = agent.behavior.critic_loss({k: v for k, v in targets.items() if k != "logits"})
    torch.testing.assert_close(shared, own)
    for a, b in zip(torch.autograd.grad(shared, params, retain_graph=True), torch.autograd.grad(own, params)):
        torch.testing.assert_close(a, b)
    # the critic's step backpropagates into the critic alone: it does not walk back into the
    # imagination, whose actor weights the actor's step has already changed in place
    others = [p.detach().clone() for p in [*agent.wm.parameters(), *agent.behavior.actor.parameters()]]
    agent.critic_opt.step(shared)
    after = [*agent.wm.parameters(), *agent.behavior.actor.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(others, after))


@pytest.mark.parametrize("action_dim, discrete", [(2, False), (3, True)])
def test_reinforce_rollout_without_autograd_equals_the_recorded_rollout(action_dim, discrete):
    """REINFORCE imagines without autograd and takes the actor's parameters again in one pass:
    the same states, actions, parameters and actor gradients as a rollout recorded step by step."""
    torch.manual_seed(0)
    obs_space, act_space = vector_spaces(action_dim=action_dim, discrete=discrete)
    agent = Agent(tiny_config("behavior.actor_grad=reinforce"), obs_space, act_space)
    behavior, wm = agent.behavior, agent.wm
    data = agent._to_tensors(synthetic_batch(obs_space, action_dim, b=2, t=6), batch_dims=2)
    _, post, _ = wm.loss(data)
    start = {k: v.detach().reshape(-1, *v.shape[2:]) for k, v in post.items()}
    torch.manual_seed(1)
    fast = behavior.imagine(wm, start)
    torch.manual_seed(1)
    recorded = behavior._rollout(wm, start)
    assert not fast[0].requires_grad and recorded[0].requires_grad  # the recorded rollout built a graph
    torch.testing.assert_close(fast[0], recorded[0].detach())
    torch.testing.assert_close(fast[1], recorded[1])
    params = list(behavior.actor.parameters())
    grads = []
    for _, actions, dist in (fast, recorded):
        loss = (behavior.actor.log_prob(dist, actions) + behavior.actor.entropy(dist)).mean()
        grads.append(torch.autograd.grad(loss, params))
    for key in fast[2]:
        torch.testing.assert_close(fast[2][key], recorded[2][key], msg=key)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("space", ["symlog", "raw"])
def test_padded_twohot_logits_equal_the_unpadded_head(space):
    """255 bins give 256 logits (the padding slot's probability is exactly 0): the mean, the two-hot
    log-likelihood and their gradients equal those of the 255 real logits alone."""
    from daydream.agent.heads import TwoHotHead

    torch.manual_seed(0)
    head = TwoHotHead(6, 16, 1, "rms", "silu", 255, 20.0, space)
    torch.nn.init.normal_(head.out.weight, std=0.5)  # away from the zero init, so every bin is in play
    feat, target = torch.randn(32, 6), torch.randn(32) * 30
    logits = head.logits(feat)
    assert logits.shape[-1] == 256 and len(head.bins) == 255
    assert torch.equal(torch.softmax(logits, -1)[:, 255], torch.zeros(32))

    def outputs(padded: bool) -> list[torch.Tensor]:
        head.zero_grad()
        if padded:
            logits, bins = head.logits(feat), head.decode_bins
        else:
            logits, bins = head.out(head.mlp(feat)), head.bins
        mean = twohot_mean(logits, bins, head.raw)
        nll = -head.log_prob(logits, target)
        (mean.sum() + nll.sum()).backward()
        return [mean.detach(), nll.detach(), *[p.grad.clone() for p in head.parameters()]]

    for padded, plain in zip(outputs(True), outputs(False)):
        torch.testing.assert_close(padded, plain, rtol=1e-4, atol=1e-5)  # raw-space means reach 1e8


def twohot_mean(logits: torch.Tensor, bins: torch.Tensor, raw: bool) -> torch.Tensor:
    from daydream.agent.math import symexp, twohot_decode

    decoded = twohot_decode(torch.softmax(logits, -1), bins)
    return decoded if raw else symexp(decoded)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("input_grad", [True, False])
def test_cpu_rmsnorm_node_equals_torch_rmsnorm(dtype, input_grad):
    """The one-node CPU RMSNorm (large inputs): torch's values and gradients (input and weight), and
    gradcheck in float64; an input without a gradient gets none. Small inputs keep torch's."""
    torch.manual_seed(0)
    ours, reference = RMSNorm(16, eps=1e-4).to(dtype), torch.nn.RMSNorm(16, eps=1e-4).to(dtype)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        reference.weight.copy_(ours.weight)
    x = (3.0 * torch.randn(2, CPU_NORM_NODE_MIN // 32, 16, dtype=dtype)).requires_grad_(input_grad)
    grad = torch.randn_like(x)
    got = torch.autograd.grad(ours(x), [x, ours.weight] if input_grad else [ours.weight], grad)
    expected = torch.autograd.grad(reference(x), [x, reference.weight] if input_grad else [reference.weight], grad)
    assert ours(x).grad_fn.name() == "_RMSNormCPUBackward"
    assert ours(x[:, :8]).grad_fn.name() != "_RMSNormCPUBackward"
    torch.testing.assert_close(ours(x), reference(x))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    if dtype == torch.float64 and input_grad:
        small = x[:, :4].detach().requires_grad_()
        assert torch.autograd.gradcheck(lambda x, w: _RMSNormCPU.apply(x, w, 1e-4), (small, ours.weight))
