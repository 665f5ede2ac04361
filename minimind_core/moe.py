"""Mixture of experts (MiniMind2-MoE, MiniMind-3-MoE): a router sends each token to its top-k experts.

    x -> router (softmax over experts) -> top-k experts, weights renormalised to sum to 1
      -> sum_k weight_k * expert_k(x)  +  sum of the always-on shared experts(x)

Only the picked experts run for a token: MiniMind2-MoE holds 5 feed-forward blocks per layer
(4 routed + 1 shared) but each token goes through 3 (its top 2 + the shared one). Training adds a balance loss (returned with the
output, see `MoEFeedForward.forward`) that keeps the router from sending every token to the same
few experts.

MiniMind-3-MoE is the same machinery with other settings (presets.py): 4 experts, top 1, no shared
expert, a batch-level balance loss with weight 5e-4. Renormalising a single weight makes it exactly
1, so there the expert's output is added unscaled and the router's weights learn from the balance
loss alone (as in MiniMind-3; MiniMind2 renormalised only when k > 1, which changes nothing for its
top-2 models).

Parameter names follow MiniMind's (`mlp.gate.weight`, `mlp.experts.N.*`, `mlp.shared_experts.N.*`)
so its MoE checkpoints load as they are.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


class MoEGate(nn.Module):
    """Softmax router: each token picks its top-k routed experts; weights renormalised to sum to 1."""

    def __init__(self, config):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.n_experts = config.n_routed_experts
        self.norm_topk_prob = config.norm_topk_prob
        self.alpha = config.aux_loss_alpha
        self.seq_aux = config.seq_aux
        self.weight = nn.Parameter(torch.empty(self.n_experts, config.hidden_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x):
        """x [batch, seq, hidden] -> (expert ids [tokens, k], weights [tokens, k], balance loss)."""
        b, t, h = x.shape
        scores = F.linear(x.reshape(-1, h), self.weight).softmax(dim=-1)   # [b*t, experts]
        topk_weight, topk_idx = scores.topk(self.top_k, dim=-1, sorted=False)
        if self.norm_topk_prob:
            topk_weight = topk_weight / (topk_weight.sum(dim=-1, keepdim=True) + 1e-20)
        aux_loss = x.new_zeros(())
        if self.training and self.alpha > 0:
            aux_loss = self.balance_loss(scores.view(b, t, -1), topk_idx.view(b, t * self.top_k))
        return topk_idx, topk_weight, aux_loss

    def balance_loss(self, scores, topk_idx):
        """Balance loss: alpha * sum_e (load_e * mean score_e).

        load_e is the share of the top-k picks that went to expert e, scaled so that a perfectly even
        router has load 1 for every expert. seq_aux (MiniMind2): per sequence, then averaged over
        the sequences; otherwise (MiniMind-3) over every token of the batch at once.
        """
        b, t, n = scores.shape
        if self.seq_aux:
            load = torch.zeros(b, n, device=scores.device, dtype=scores.dtype)
            load.scatter_add_(1, topk_idx, torch.ones_like(topk_idx, dtype=scores.dtype))
            load = load / (topk_idx.shape[1] / n)
            return (load * scores.mean(dim=1)).sum(dim=1).mean() * self.alpha
        one_hot = F.one_hot(topk_idx.reshape(-1), n).float()
        fraction = one_hot.mean(0) * n
        return (fraction * scores.reshape(-1, n).mean(0)).sum() * self.alpha


class MoEFeedForward(nn.Module):
    """Routed experts (top-k of n) plus always-on shared experts.

    `expert(config)` builds one expert: the model passes its SwiGLU FeedForward, so every expert is
    exactly the dense model's feed-forward block (and this module needs nothing from model.py).
    """

    def __init__(self, config, expert: Callable[[object], nn.Module]):
        super().__init__()
        self.experts = nn.ModuleList([expert(config) for _ in range(config.n_routed_experts)])
        self.gate = MoEGate(config)
        self.shared_experts = nn.ModuleList([expert(config) for _ in range(config.n_shared_experts)])

    def forward(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """x [batch, seq, hidden] -> (output [batch, seq, hidden], balance loss: 0 outside training).

        The loss is returned, not kept on the module, so the caller adds up exactly the losses of
        the forward it ran (and nothing stays alive between steps)."""
        b, t, h = x.shape
        topk_idx, topk_weight, aux_loss = self.gate(x)
        flat = x.reshape(-1, h)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token_idx, slot = (topk_idx == e).nonzero(as_tuple=True)
            if token_idx.numel() == 0:
                continue
            y = expert(flat[token_idx]) * topk_weight[token_idx, slot, None].to(flat.dtype)
            out.index_add_(0, token_idx, y)
        out = out.view(b, t, h)
        for shared in self.shared_experts:
            out = out + shared(x)
        return out, aux_loss


__all__ = ["MoEGate", "MoEFeedForward"]
