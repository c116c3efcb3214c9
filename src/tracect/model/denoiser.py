"""The denoiser: a MONAI ``DiffusionModelUNet`` over a window of K axial frames, conditioned on
masks, report, known frames, geometry (and optionally the flow between frames).

- ``pair`` / ``slice`` (2D): the K frames of a window are the image channels, so one 2D network
  call denoises a whole window (TRACE's frame pair for K = 2; K = 1 is the independent-slice baseline).
- ``3d``: the same blocks and widths with ``spatial_dims=3``; the K frames are the depth axis.

Inputs per frame: the noisy frame, the known (clean) frame times its indicator, the indicator map, and a
learned ``mask_embed_dim``-channel embedding of the frame's label mask (concatenated spatially). The
report enters twice: its token embeddings through cross-attention and its pooled embedding added to the
time embedding, together with an embedding of the geometry (pixel spacing, slice thickness, relative
position of the window in the volume). With ``findings`` the report's structured findings
(:mod:`tracect.data.findings`) enter too: their vector on the time path, and the lesion map (kind codes
per pixel) as a learned embedding added to the mask's (``lesion_embed_dim`` > 0: in channels of its own
per frame); with ``findings_per_label`` the vector also shifts each label's embedding by a learned
map of its own, so that a finding reaches the pixels of the organ it concerns. The network knows
nothing about noise schedules.
"""

from __future__ import annotations

import torch
from torch import nn

from tracect.config import ModelConfig
from tracect.data.findings import FINDINGS_DIM, LESION_KINDS

GEOMETRY_FEATURES = 5  # log px/4, log dz/4, position of first and last frame, present flag


def geometry_features(pixel_spacing: torch.Tensor, thickness: torch.Tensor, pos_first: torch.Tensor,
                      pos_last: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """Geometry conditioning vector ``(B, 5)`` from per-window values ``(B,)`` in mm and [0, 1]."""
    present = torch.ones_like(pixel_spacing) if present is None else present.float()
    feats = torch.stack([torch.log(pixel_spacing / 4.0), torch.log(thickness / 4.0), pos_first, pos_last,
                         torch.ones_like(pixel_spacing)], dim=-1)
    return feats * present.unsqueeze(-1)  # a dropped geometry is all zeros, present flag included


def _pointwise_spade(unet: nn.Module) -> None:
    """Make every SPADE block of ``unet`` read its label map pixel by pixel (1x1 convolutions instead
    of MONAI's 3x3, and without the instance norm MONAI puts on the scale and shift, which would take
    away a label's own level). A label map is constant inside each organ, so the 3x3 kernels mostly saw
    the same value nine times, at a higher cost per step (docs/benchmarks.md). The scale and shift start
    at zero: the network begins as the plain UNet with its group norms."""
    from monai.networks.blocks import Convolution
    from monai.networks.blocks.spade_norm import SPADE

    for block in unet.modules():
        if isinstance(block, SPADE):
            dims = 3 if isinstance(block.mlp_gamma.conv, nn.Conv3d) else 2
            hidden, out = block.mlp_shared.conv.out_channels, block.mlp_gamma.conv.out_channels
            block.mlp_shared = Convolution(dims, block.mlp_shared.conv.in_channels, hidden, kernel_size=1,
                                           norm=None, act="LEAKYRELU")
            block.mlp_gamma = Convolution(dims, hidden, out, kernel_size=1, act=None, conv_only=True)
            block.mlp_beta = Convolution(dims, hidden, out, kernel_size=1, act=None, conv_only=True)
            for conv in (block.mlp_gamma.conv, block.mlp_beta.conv):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)


def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.SiLU(), nn.Linear(d_out, d_out))


class FrameDenoiser(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        from monai.networks.nets import DiffusionModelUNet

        self.config = c = config
        self.spatial_dims = 3 if c.kind == "3d" else 2
        C = c.latent_channels
        # a lesion map of its own (pixel models with findings); a latent model gets zeros there
        self.lesion_dim = c.lesion_embed_dim if c.findings else 0
        per_frame = C + (C + 1) * int(c.known_frames) + c.mask_embed_dim + self.lesion_dim
        if self.spatial_dims == 2:
            in_ch = c.frames * per_frame + (2 * (c.frames - 1) if c.flow_input else 0)
            out_ch = c.frames * C
        else:
            in_ch, out_ch = per_frame + (2 if c.flow_input else 0), 1
        # id num_classes = "no mask" (condition dropout)
        self.mask_embed = nn.Embedding(c.num_classes + 1, c.mask_embed_dim)
        unet_args = dict(
            spatial_dims=self.spatial_dims, in_channels=in_ch, out_channels=out_ch,
            num_res_blocks=c.num_res_blocks, channels=c.channels, attention_levels=c.attention_levels,
            norm_num_groups=c.norm_num_groups, num_head_channels=c.num_head_channels,
            with_conditioning=True, cross_attention_dim=c.cross_attention_dim,
            # torch's fused scaled-dot-product attention: the same weights and the same attention up to
            # float rounding, with fewer copies (sequential generation 9% faster on a 2-core CPU)
            use_flash_attention=True)
        if c.spade_channels:
            from monai.networks.nets import SPADEDiffusionModelUNet

            # the label channels of every frame (2D) or of a frame (3D: frames are depth) modulate the
            # decoder's normalisations
            per_label = c.mask_embed_dim + self.lesion_dim
            label_nc = per_label * c.frames if self.spatial_dims == 2 else per_label
            self.unet = SPADEDiffusionModelUNet(label_nc=label_nc, spade_intermediate_channels=c.spade_channels,
                                                **unet_args)
            _pointwise_spade(self.unet)
        else:
            self.unet = DiffusionModelUNet(**unet_args)
        temb = c.channels[0] * 4  # MONAI's time-embedding width
        self.token_proj = nn.Linear(c.text_dim, c.cross_attention_dim)
        self.pooled_proj = _mlp(c.text_dim, temb)
        self.geometry_proj = _mlp(GEOMETRY_FEATURES, temb) if c.geometry else None
        self.findings_proj = self.lesion_embed = self.label_findings = None
        if c.findings_per_label:
            # (labels, FINDINGS_DIM, E), zero at the start: the network begins as the plain findings
            # model and learns how far each finding moves each label
            self.label_findings = nn.Parameter(torch.zeros(c.num_classes + 1, FINDINGS_DIM, c.mask_embed_dim))
        if c.findings:
            self.findings_proj = _mlp(FINDINGS_DIM, temb)
            # code 0 (no lesion) embeds to zero, so that a lesion-free window sees the mask's embedding alone
            self.lesion_embed = nn.Embedding(len(LESION_KINDS) + 1, self.lesion_dim or c.mask_embed_dim,
                                             padding_idx=0)

    def mask_channels(self, mask: torch.Tensor, dtype, findings: torch.Tensor | None = None) -> torch.Tensor:
        """The mask's embedding ``(B, K, E, *S)``: from label ids ``(B, K, *S)`` (long) or from the
        fraction of each label per pixel ``(B, K, num_classes + 1, *S)`` (float: a latent pixel covers
        several labels), which mixes the same embeddings by area (one-hot fractions give the ids').
        With ``findings_per_label`` and findings ``(B, FINDINGS_DIM)``, each label's embedding is first
        shifted by its map of the window's findings (the empty report's zeros shift nothing)."""
        weight = self.mask_embed.weight.to(dtype)  # (L+1, E)
        if self.label_findings is None or findings is None:
            if mask.is_floating_point():
                return torch.einsum("bkl...,le->bke...", mask.to(dtype), weight)
            return self.mask_embed(mask).movedim(-1, 2).to(dtype)
        table = weight + torch.einsum("bf,lfe->ble", findings.to(dtype), self.label_findings.to(dtype))  # (B, L+1, E)
        if mask.is_floating_point():
            return torch.einsum("bkl...,ble->bke...", mask.to(dtype), table)
        ids = mask.flatten(1)  # (B, K*prod(S)): each pixel's row of its window's table
        rows = torch.gather(table, 1, ids.unsqueeze(-1).expand(-1, -1, table.shape[-1]))  # (B, N, E)
        return rows.unflatten(1, mask.shape[1:]).movedim(-1, 2)

    def _inputs(self, x_t, mask, known, known_values, flow, lesion=None,
                findings=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's input ``(B, C_in, *S)`` (2D) or ``(B, C_in, K, *S)`` (3D), and the label
        channels alone in the same layout (the mask's and the lesion map's embeddings: SPADE's map)."""
        c = self.config
        B, K = x_t.shape[:2]
        x = x_t if c.latent_channels > 1 else x_t.unsqueeze(2)  # (B, K, C, *S)
        S = x.shape[3:]
        parts = [x]
        if c.known_frames:
            if known is None:
                known = torch.zeros(B, K, dtype=torch.bool, device=x.device)
                values = torch.zeros_like(x)
            else:
                values = known_values if c.latent_channels > 1 else known_values.unsqueeze(2)
            kmap = known.to(x.dtype).reshape(B, K, 1, *([1] * len(S)))
            parts += [values * kmap, kmap.expand(B, K, 1, *S)]
        masks = self.mask_channels(mask, x.dtype, findings)
        lesions = None  # (B, K, E, *S): the lesion map's embedding
        if self.lesion_embed is not None and lesion is not None and not mask.is_floating_point():
            lesions = self.lesion_embed(lesion.long()).movedim(-1, 2).to(x.dtype)
        if self.lesion_dim:  # channels of its own (zeros without a lesion map)
            labels = torch.cat([masks, masks.new_zeros(B, K, self.lesion_dim, *S) if lesions is None else lesions], dim=2)
        else:
            labels = masks if lesions is None else masks + lesions
        parts.append(labels)  # (B, K, E, *S)
        h = torch.cat(parts, dim=2)  # (B, K, C_in, *S)
        if self.spatial_dims == 2:
            h, labels = h.flatten(1, 2), labels.flatten(1, 2)  # (B, K*C, H, W)
            if c.flow_input:
                h = torch.cat([h, (flow / 4.0).flatten(1, 2).to(x_t.dtype)], dim=1)
        else:
            h, labels = h.movedim(1, 2), labels.movedim(1, 2)  # (B, C, K, H, W): frames are the depth axis
            if c.flow_input:  # flow k->k+1 on frame k, zeros on the last frame
                f = torch.cat([flow, torch.zeros_like(flow[:, :1])], dim=1) / 4.0
                h = torch.cat([h, f.movedim(1, 2).to(x_t.dtype)], dim=1)
        return h, labels

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor,
                pooled: torch.Tensor, geometry: torch.Tensor | None = None,
                known: torch.Tensor | None = None, known_values: torch.Tensor | None = None,
                flow: torch.Tensor | None = None, findings: torch.Tensor | None = None,
                lesion: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the diffusion target for every frame.

        x_t ``(B, K, H, W)`` (a latent model: ``(B, K, C, h, w)``); t ``(B,)`` network time; mask
        ``(B, K, H, W)`` long ids (``num_classes`` = dropped) or ``(B, K, num_classes + 1, H, W)`` label
        fractions; tokens ``(B, L, text_dim)``; pooled ``(B, text_dim)``; geometry ``(B, 5)``; known
        ``(B, K)`` bool with known_values shaped as x_t; flow ``(B, K-1, 2, H, W)`` px; findings
        ``(B, FINDINGS_DIM)`` and lesion ``(B, K, H, W)`` kind codes (a ``findings`` model; ignored
        otherwise; a latent model takes no lesion map). Returns the shape of x_t.
        """
        from monai.networks.nets.diffusion_model_unet import get_timestep_embedding

        unet = self.unet
        h, labels = self._inputs(x_t, mask, known, known_values, flow, lesion, findings)
        spade = {"seg": labels} if self.config.spade_channels else {}
        emb = unet.time_embed(get_timestep_embedding(t, unet.block_out_channels[0]).to(h.dtype))
        emb = emb + self.pooled_proj(pooled.to(h.dtype))
        if self.geometry_proj is not None and geometry is not None:
            emb = emb + self.geometry_proj(geometry.to(h.dtype))
        if self.findings_proj is not None and findings is not None:
            emb = emb + self.findings_proj(findings.to(h.dtype))
        context = self.token_proj(tokens.to(h.dtype))

        # MONAI DiffusionModelUNet.forward, steps 3-7, with our embedding (MONAI adds only class ids)
        h = unet.conv_in(h)
        skips = [h]
        for block in unet.down_blocks:
            h, res = block(hidden_states=h, temb=emb, context=context)
            skips.extend(res)
        h = unet.middle_block(hidden_states=h, temb=emb, context=context)
        for block in unet.up_blocks:
            n = len(block.resnets)
            h = block(hidden_states=h, res_hidden_states_list=skips[-n:], temb=emb, context=context, **spade)
            skips = skips[:-n]
        out = unet.out(h)
        if self.spatial_dims == 3:
            return out.squeeze(1)
        return out.unflatten(1, (self.config.frames, self.config.latent_channels)) if self.config.latent_channels > 1 else out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: FrameDenoiser, batch: int = 1, tokens: int | None = None, frames: int | None = None) -> int:
    """Floating-point operations of one forward pass, counted by ``torch.utils.flop_counter``
    (``frames``: the window length, default the model's; a 3D model's whole-volume window is longer)."""
    from torch.utils.flop_counter import FlopCounterMode

    c = model.config
    S = (c.image_size, c.image_size)
    K = frames or c.frames
    L = tokens or c.text_max_tokens
    dev = next(model.parameters()).device  # count where the model lives (a 3D volume is slow on a CPU)
    z = lambda *shape, **kw: torch.zeros(*shape, device=dev, **kw)  # noqa: E731
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        frame = (c.latent_channels, *S) if c.latent_channels > 1 else S
        model(z(batch, K, *frame), z(batch), z(batch, K, *S, dtype=torch.long), z(batch, L, c.text_dim),
              z(batch, c.text_dim), z(batch, 5), flow=z(batch, max(K - 1, 0), 2, *S) if c.flow_input else None)
    return int(counter.get_total_flops())

