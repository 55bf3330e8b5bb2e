"""Training objective of the world model, as named, weighted, logged terms.

``WorldModelLoss(model, weights)(batch, target)`` returns ``(total, terms)``. The terms:

* ``consistency``: multi-step latent prediction; ``rollout(z_t, a_t..a_{t+k-1})`` against the target
  encoder's ``z_{t+1..t+k}`` (stop-gradient copy of the online encoder or an EMA encoder), discounted
  by ``rho ** i`` (TD-MPC2);
* ``cost``: smooth-L1 of the predicted distance to success (metres, divided by ``cost_scale``) on both
  imagined and encoded latents, labels from ``next.reward`` (cost = -reward);
* ``success``: binary cross-entropy on ``next.success``, imagined and encoded latents;
* ``policy``: behaviour cloning of the ``K``-action chunk from ``z_t`` (L1 or MSE in ``[-1, 1]``,
  ``policy_loss``), averaged over ``batch.chunk_mask``: only steps inside the episode whose label is the
  expert's (``latent_vla.data``: a DART, exploration or brain frame's executed action is no demonstration;
  its ``expert.action`` label is used where valid). Every other term uses every transition;
* ``ensemble``: the consistency loss of every further dynamics head (``model.dynamics_heads`` > 1),
  averaged over them, from the encoder's latents detached (the heads never shape the encoder), with the
  weight of ``consistency``;
* ``decoder``: MSE reconstruction of the first camera's frame (gradient stopped at the latent unless
  ``decoder_grad``);
* ``env_state``: auxiliary regression of the dataset's ``observation.environment_state`` (standardized;
  in sim the named object's and the goal's position) from ``z_t`` and from the imagined latents, when
  the dataset has it: a dense signal that the latent must encode *where the named object is*, which
  behaviour cloning alone teaches slowly;
* ``variance`` / ``covariance``: VICReg-style guard against latent collapse on ``z_t`` over the batch;
* ``straightness``: squared second difference of the encoded latent trajectory relative to its squared
  first difference (low curvature makes straight-line interpolation and gradient planning easier);
* ``adversarial``: FGSM (Goodfellow et al., 2015): consistency and cost losses again after moving the
  actions and the start latent one signed-gradient step of size ``eps_action`` / ``eps_latent`` uphill
  on the consistency + cost loss, which makes the model smoother in the directions a planner pushes.

``WorldModelLoss.first_frame(batch)`` (or ``forward(..., first_frame=True)``) is the grounding phase's
objective (``train.grounding``): ``env_state`` and the anti-collapse terms from each window's first
frame, encoded with the joint state blanked.

Metrics that are logged but not optimized: ``curvature`` (the straightness ratio, always computed),
``latent_std`` (mean per-dimension std of ``z_t`` over the batch), ``consistency_rel`` (the
consistency error divided by that of the constant-latent prediction ``z_{t+i} = z_t``; < 1 means the
dynamics predict better than "nothing moves").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent_vla.augment import random_shift
from latent_vla.data import Batch
from latent_vla.model import WorldModel


@dataclass
class LossWeights:
    """Weights and switches of the objective (``configs/train/*.yaml``, key ``loss``).

    Attributes:
        consistency: weight of the latent prediction loss.
        rho: per-step discount of the prediction loss.
        cost: weight of the cost (distance) regression.
        cost_scale: metres; costs are divided by this before the smooth-L1.
        cost_dense: weight of the gripper-to-object gap (``next.progress``, metres) added to the cost
            target (``latent_vla.data.FrameCache.cost_targets``): a slope inside the success region and
            before the object moves. 0 = the distance to success alone.
        cost_to_go: discount ``gamma`` in ``[0, 1)`` of a cost-to-go target: the cost head learns the
            discounted mean of the episode's coming costs, ``(1 - gamma) sum_k gamma^k c_{t+k}``, instead
            of the cost after one action (``FrameCache.cost_targets``), so the objective's last state is
            scored by a learned value of what follows the plan. 0 = the cost itself.
        success: weight of the success classification.
        policy: weight of behaviour cloning.
        policy_loss: ``"mse"`` or ``"l1"`` (ACT's choice: its gradient does not fade as the error
            shrinks, so the chunk stays precise near the target, where a reach is decided).
        decoder: weight of image reconstruction.
        decoder_grad: let the reconstruction gradient reach the encoder.
        decoder_batch: windows of the batch whose first and last frames are reconstructed (0 = all);
            the decoder is for inspection, so a subset keeps it from dominating a CPU step.
        variance: weight of the variance hinge (anti-collapse).
        std_target: per-dimension std the hinge asks for (latent units).
        covariance: weight of the off-diagonal covariance penalty.
        straightness: weight of the curvature regularizer (0 = only logged).
        action_noise: std of Gaussian noise added to the input actions (normalized units).
        adversarial: weight of the FGSM term (0 = off).
        eps_action: FGSM step on actions, normalized units.
        eps_latent: FGSM step on the start latent (in the latent's residual parameterization).
        encoder_grad_all_frames: back-propagate into the encoder from every frame of the window, not
            only the first (about 3x slower on the CPU; forced on by ``straightness``).
        image_shift: random-shift augmentation (DrQ): the images of ``z_t`` are padded by this many
            pixels (edge replicated) and cropped back at a random offset per sample and camera; the
            prediction targets stay un-shifted (with ``encoder_grad_all_frames`` every frame is
            shifted). Training mode only. 0 = off.
        env_state: weight of the auxiliary environment-state regression (used only when the dataset
            records ``observation.environment_state``; 0 = no head).
        phrasing: weight of phrasing invariance: the mean squared gap, per dimension, between the
            instruction embedding a window trains with (reworded by ``train.rephrase``, words dropped by
            ``train.word_dropout``) and that of its dataset instruction as recorded (a fixed target, no
            gradient). Without it a rewording may land anywhere its task is still readable, and a
            phrasing no training held lands off the embeddings the policy and dynamics were trained
            on. Logged whenever the sampler rewords or drops words; 0 = not trained.
    """

    consistency: float = 20.0
    rho: float = 0.5
    cost: float = 1.0
    cost_scale: float = 0.05
    cost_dense: float = 0.0
    cost_to_go: float = 0.0
    success: float = 0.5
    policy: float = 1.0
    policy_loss: str = "l1"
    decoder: float = 1.0
    decoder_grad: bool = False
    decoder_batch: int = 16
    variance: float = 1.0
    std_target: float = 0.1
    covariance: float = 0.04
    straightness: float = 0.0
    action_noise: float = 0.0
    adversarial: float = 0.0
    eps_action: float = 0.05
    eps_latent: float = 0.1
    encoder_grad_all_frames: bool = False
    image_shift: int = 4
    env_state: float = 5.0
    phrasing: float = 0.0

    def check(self) -> None:
        """Raise ``ValueError`` on a setting no loss term understands (called before data is decoded)."""
        if self.policy_loss not in ("mse", "l1"):
            raise ValueError(f"train.loss.policy_loss must be 'mse' or 'l1', got {self.policy_loss!r}")
        if not 0.0 <= self.cost_to_go < 1.0:
            raise ValueError(f"train.loss.cost_to_go must be a discount in [0, 1), got {self.cost_to_go}")


class _Terms:
    """Named loss terms of one step: ``add`` logs each value (detached) and sums the weighted ones."""

    def __init__(self, like: Tensor) -> None:
        self.values: dict[str, Tensor] = {}
        self.total = like.new_zeros(())

    def add(self, name: str, weight: float, value: Tensor) -> None:
        """Log ``value`` as ``name``; add ``weight * value`` to the total unless the weight is 0."""
        self.values[name] = value.detach()
        if weight:
            self.total = self.total + weight * value

    def result(self) -> tuple[Tensor, dict[str, Tensor]]:
        """``(total, terms)`` with the detached total logged as ``total``."""
        self.values["total"] = self.total.detach()
        return self.total, self.values


class WorldModelLoss(nn.Module):
    """The objective as a module, so DDP can wrap it (its ``forward`` is the whole training step)."""

    def __init__(self, model: WorldModel, weights: LossWeights) -> None:
        super().__init__()
        weights.check()
        self.model = model
        self.w = weights

    def _augment(self, images: Tensor) -> Tensor:
        # (B, 3, h, w) -> the same, randomly shifted while training
        if not self.training or self.w.image_shift <= 0:
            return images
        return random_shift(images, self.w.image_shift)

    def _consistency(self, z_pred: Tensor, z_target: Tensor) -> Tensor:
        # z_pred, z_target: (B, k, Z)
        k = z_pred.shape[1]
        disc = self.w.rho ** torch.arange(k, device=z_pred.device, dtype=z_pred.dtype)  # (k,)
        per_step = ((z_pred - z_target) ** 2).mean(dim=(0, 2))  # (k,)
        return (disc * per_step).sum() / disc.sum()

    def _relative(self, z_pred: Tensor, z_target: Tensor) -> Tensor:
        # consistency of (B, k, Z) predictions against targets (B, k+1, Z), over that of "z stays z_t"
        still = self._consistency(z_target[:, :1].expand_as(z_pred), z_target[:, 1:])
        return self._consistency(z_pred, z_target[:, 1:]) / still.clamp(min=1e-12)

    def _cost(self, z: Tensor, task: Tensor, target: Tensor) -> Tensor:
        # z: (B, k, Z), target: (B, k) metres
        pred = self.model.cost(z, task)
        return F.smooth_l1_loss(pred / self.w.cost_scale, target / self.w.cost_scale)

    def _success(self, z: Tensor, task: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(self.model.success_logit(z, task), target)

    def _policy(self, z0: Tensor, task: Tensor, batch: Batch) -> Tensor:
        # behaviour cloning of the (B, K, A) chunk from z_t (B, Z), averaged over the expert labels
        pred_chunk = self.model.policy(z0, task)  # (B, K, A)
        mask = batch.chunk_mask.unsqueeze(-1)  # (B, K, 1): 1 = an expert label inside the episode
        err = pred_chunk - batch.chunk
        err = err.abs() if self.w.policy_loss == "l1" else err**2
        return (err * mask).sum() / (mask.sum() * pred_chunk.shape[-1]).clamp(min=1.0)

    def _env_state_now(self, z0: Tensor, batch: Batch) -> Tensor:
        assert batch.env_state is not None
        return F.mse_loss(self.model.env_state_standardized(z0), batch.env_state[:, 0])

    def _phrasing(self, batch: Batch, acc: _Terms) -> None:
        # the embeddings (B_r, T) of the reworded windows' instructions (before word dropout), pulled to their
        # recorded ones'; word-dropped ones are not pulled (Batch.phrased_tokens says why)
        if batch.anchor_tokens is None or batch.phrased_tokens is None:
            return
        rows = (batch.phrased_tokens != batch.anchor_tokens).any(dim=1)  # (B,)
        if not bool(rows.any()):
            acc.add("phrasing", self.w.phrasing, batch.anchor_tokens.new_zeros((), dtype=torch.float32))
            return
        with torch.no_grad():
            anchor = self.model.embed_task(batch.anchor_tokens[rows])
        acc.add("phrasing", self.w.phrasing, F.mse_loss(self.model.embed_task(batch.phrased_tokens[rows]), anchor))

    def _latent_health(self, z0_full: Tensor, acc: _Terms) -> None:
        # VICReg-style variance hinge and covariance penalty on the learned block of z_t (B, Z)
        w, add = self.w, acc.add
        z0 = self.model.learned_part(z0_full)  # (B, latent_dim): the joint block is measured, not learned
        std = torch.sqrt(z0.var(dim=0) + 1e-4)  # (latent_dim,)
        add("variance", w.variance, F.relu(w.std_target - std).mean())
        zc = z0 - z0.mean(dim=0)
        cov = (zc.T @ zc) / max(z0.shape[0] - 1, 1)  # (Z, Z)
        off = cov - torch.diag(torch.diagonal(cov))
        add("covariance", w.covariance, (off**2).sum() / z0.shape[-1])
        acc.values["latent_std"] = std.mean().detach()

    def first_frame(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """The grounding objective: ``(total, terms)`` from each window's first frame alone.

        Encodes only ``z_t`` (augmented) *with the joint state blanked* (its standardized mean) and
        trains what a single image can teach: the environment state (where the named object is, when
        the dataset records it) and the anti-collapse terms (behaviour cloning waits for the full
        objective: the policy's chunk is relative to the joints, which this latent does not see). The
        blank state removes a shortcut: late in a demonstration the arm is at the named object, so
        its joints say where the object is, and a model that may read them learns that instead of
        finding the object in the image (measured: 5 % of first frames located within 3 cm with the
        joints, see docs/training.md). No rollout, no target frames, no decoder: a step costs a
        fraction of :meth:`forward`'s (``train.grounding``).
        """
        m, w = self.model, self.w
        task = m.embed_task(batch.tokens)  # (B, T)
        first = {c: self._augment(v[:, 0]) for c, v in batch.images.items()}
        z0 = m.encode(first, torch.zeros_like(batch.state[:, 0]), task)  # (B, Z)
        acc = _Terms(z0)
        if batch.env_state is not None and m.env_state_dim > 0:
            acc.add("env_state", w.env_state, self._env_state_now(z0, batch))
        self._phrasing(batch, acc)
        self._latent_health(z0, acc)
        return acc.result()

    def forward(
        self, batch: Batch, target_model: WorldModel | None = None, first_frame: bool = False
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """One batch -> ``(weighted total, {term: value})``; every value is a detached scalar but the total.

        ``first_frame``: the grounding objective (:meth:`first_frame`) instead (an argument, so a
        DDP-wrapped loss runs either through its forward).
        """
        if first_frame:
            return self.first_frame(batch)
        m, w = self.model, self.w
        B, k1 = batch.state.shape[:2]
        k = k1 - 1
        task = m.embed_task(batch.tokens)  # (B, T)
        flat_imgs = {c: v.flatten(0, 1) for c, v in batch.images.items()}  # (B*(k+1), 3, h, w)
        flat_state = batch.state.flatten(0, 1)  # (B*(k+1), S)
        if w.encoder_grad_all_frames or w.straightness > 0:
            shifted = {c: self._augment(v) for c, v in flat_imgs.items()}  # every frame here (targets too)
            z = m.encode(shifted, flat_state, task.repeat_interleave(k1, 0)).reshape(B, k1, -1)  # (B, k+1, Z)
        else:
            # Only z_t needs encoder gradients (TD-MPC2): the later frames serve as targets and as
            # extra cost/success examples for the heads, so they are encoded without a graph.
            first = {c: self._augment(v[:, 0]) for c, v in batch.images.items()}
            z0 = m.encode(first, batch.state[:, 0], task)  # (B, Z)
            with torch.no_grad():
                rest_imgs = {c: v[:, 1:].flatten(0, 1) for c, v in batch.images.items()}
                rest = m.encode(rest_imgs, batch.state[:, 1:].flatten(0, 1), task.repeat_interleave(k1 - 1, 0))
            z = torch.cat([z0[:, None], rest.reshape(B, k1 - 1, -1)], dim=1)  # (B, k+1, Z)
        with torch.no_grad():
            if target_model is None:
                z_tgt = z.detach()
            else:
                t_task = target_model.embed_task(batch.tokens).repeat_interleave(k1, 0)
                z_tgt = target_model.encode(flat_imgs, flat_state, t_task).reshape(B, k1, -1)

        actions = batch.actions  # (B, k, A)
        if w.action_noise > 0:
            actions = (actions + w.action_noise * torch.randn_like(actions)).clamp(-1.0, 1.0)
        z_pred = m.rollout(z[:, 0], actions)  # (B, k, Z)

        acc = _Terms(z)
        add, terms = acc.add, acc.values
        add("consistency", w.consistency, self._consistency(z_pred, z_tgt[:, 1:]))
        if m.dynamics_heads > 1:
            add("ensemble", w.consistency, self._ensemble(z[:, 0].detach(), actions, z_tgt[:, 1:]))
        with torch.no_grad():  # prediction error relative to predicting "nothing changes"
            terms["consistency_rel"] = self._relative(z_pred, z_tgt)
            if m.proprio_latent:  # the same ratio on the learned block alone
                terms["consistency_rel_learned"] = self._relative(m.learned_part(z_pred), m.learned_part(z_tgt))
        if batch.cost is not None:
            add("cost", w.cost, 0.5 * (self._cost(z_pred, task, batch.cost) + self._cost(z[:, 1:], task, batch.cost)))
        if batch.success is not None:
            add(
                "success",
                w.success,
                0.5 * (self._success(z_pred, task, batch.success) + self._success(z[:, 1:], task, batch.success)),
            )
        if batch.env_state is not None and m.env_state_dim > 0:
            env_now = self._env_state_now(z[:, 0], batch)
            env_imagined = F.mse_loss(m.env_state_standardized(z_pred), batch.env_state[:, 1:])
            add("env_state", w.env_state, 0.5 * (env_now + env_imagined))
        add("policy", w.policy, self._policy(z[:, 0], task, batch))

        first = m.camera_names[0]
        n_dec = B if w.decoder_batch <= 0 else min(B, w.decoder_batch)
        z_dec = z[:n_dec, [0, -1]].flatten(0, 1)  # (2n, Z)
        if not w.decoder_grad:
            z_dec = z_dec.detach()
        frames = batch.images[first][:n_dec, [0, -1]].flatten(0, 1)  # (2n, 3, h, w)
        add("decoder", w.decoder, F.mse_loss(m.decode(z_dec), frames))

        self._phrasing(batch, acc)
        self._latent_health(z[:, 0], acc)

        if k >= 2:
            d1 = z[:, 1:] - z[:, :-1]  # (B, k, Z)
            d2 = d1[:, 1:] - d1[:, :-1]  # (B, k-1, Z)
            curvature = (d2**2).sum(-1).mean() / ((d1**2).sum(-1).mean().detach() + 1e-8)
            add("straightness", w.straightness, curvature)
            terms["curvature"] = terms.pop("straightness")

        if w.adversarial > 0 and (w.eps_action > 0 or w.eps_latent > 0):
            add("adversarial", w.adversarial, self._adversarial(z, z_tgt, actions, task, batch))

        return acc.result()

    def _ensemble(self, z0: Tensor, actions: Tensor, z_target: Tensor) -> Tensor:
        # the consistency of dynamics heads 1.. from z0 (B, Z) under actions (B, k, A), averaged
        m = self.model
        losses = [self._consistency(m.rollout(z0, actions, head), z_target) for head in range(1, m.dynamics_heads)]
        return torch.stack(losses).mean()

    def _adversarial(self, z: Tensor, z_tgt: Tensor, actions: Tensor, task: Tensor, batch: Batch) -> Tensor:
        m, w = self.model, self.w
        with torch.enable_grad():  # the attack needs input gradients even in a no_grad evaluation
            a_in = actions.detach().requires_grad_(True)
            z_in = z[:, 0].detach().requires_grad_(True)
            zp = m.rollout(z_in, a_in)
            inner = self._consistency(zp, z_tgt[:, 1:])
            if batch.cost is not None:
                inner = inner + self._cost(zp, task.detach(), batch.cost)
            g_a, g_z = torch.autograd.grad(inner, [a_in, z_in])
        a_adv = (actions + w.eps_action * g_a.sign()).clamp(-1.0, 1.0).detach()
        # d/dlog z has the sign of d/dz for z > 0 (SimNorm), and LayerNorm's residual is additive.
        z_adv = m._residual(z[:, 0], w.eps_latent * g_z.sign()) if w.eps_latent > 0 else z[:, 0]
        zp_adv = m.rollout(z_adv, a_adv)
        loss = self._consistency(zp_adv, z_tgt[:, 1:])
        if batch.cost is not None:
            loss = loss + self._cost(zp_adv, task, batch.cost)
        return loss
