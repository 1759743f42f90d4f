"""Tiny random-weight models with the real classes: plumbing runs in seconds, offline.

Everything here is built from small configs in code; nothing is downloaded and no file is read.
The models have the same classes (and the same geometry where it matters) as the real ones:

* Stable Diffusion: ``UNet2DConditionModel`` (2 blocks), ``AutoencoderKL`` with 4 down blocks so
  that the latent is 1/8 of the image size as in real SD, a 2-layer ``CLIPTextModel`` and a
  ``CLIPTokenizer`` over a byte-level vocabulary built in code (514 tokens), a ``PNDMScheduler``
  with Stable Diffusion's schedule.
* Depth: ``ZoeDepthForDepthEstimation`` (BEiT backbone) and ``DepthAnythingForDepthEstimation``
  (DINOv2 backbone, metric head) with their image processors.

The same seed gives the same weights (the global RNG is saved and restored around building).
Random weights make noise images and an almost constant depth: use these for plumbing, and the
procedural world (``dreamer.backends.synthetic``) for anything that checks geometry or content.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "tiny_sd_components",
    "tiny_text2img_pipeline",
    "tiny_inpaint_pipeline",
    "tiny_img2img_pipeline",
    "tiny_depth_model",
    "tiny_clip_tokenizer",
    "TINY_CROSS_ATTENTION_DIM",
]

#: Width of the tiny text encoder's hidden states (the UNet's cross-attention dimension).
TINY_CROSS_ATTENTION_DIM = 32


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's global RNG (weights are initialised from it) and restore it afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_clip_tokenizer():
    """A working ``CLIPTokenizer`` with no files: byte-level symbols, no merges, 77 tokens.

    Vocabulary: the 256 byte symbols (as the byte-level pre-tokenizer writes them), the same 256
    with the end-of-word suffix ``</w>``, then ``<|startoftext|>`` and ``<|endoftext|>`` (514 ids).
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for symbol in alphabet:
        vocab[symbol] = len(vocab)
    for symbol in alphabet:
        vocab[symbol + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def tiny_sd_components(*, in_channels: int = 4, seed: int = 0) -> dict:
    """Tiny Stable Diffusion components: ``unet``, ``vae``, ``text_encoder``, ``tokenizer``,
    ``scheduler``.

    ``in_channels`` is 4 for text-to-image and 9 for an inpainting UNet (latents, mask, masked
    image latents). The VAE has 4 blocks: images of size [H,W] (multiples of 8) map to latents
    [4,H/8,W/8], and the UNet downsamples latents once more (so H/8 and W/8 must be even: image
    sides that are multiples of 16 always work). Deterministic for ``seed``.
    """
    if in_channels not in (4, 9):
        raise ValueError(f"in_channels must be 4 (text-to-image) or 9 (inpainting), got {in_channels}")
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_clip_tokenizer()
    with _seeded(seed):
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=in_channels,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=TINY_CROSS_ATTENTION_DIM,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 16, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=64,
        )
        text_config = CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TINY_CROSS_ATTENTION_DIM,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            layer_norm_eps=1e-5,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        text_encoder = CLIPTextModel(text_config)
    # Stable Diffusion 1.x's own schedule (its scheduler_config.json), PNDM as SD ships it.
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    for module in (unet, vae, text_encoder):
        module.eval()
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler": scheduler}


def tiny_text2img_pipeline(seed: int = 0):
    """A ``diffusers.StableDiffusionPipeline`` of tiny random models (no safety checker)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        **tiny_sd_components(in_channels=4, seed=seed),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_inpaint_pipeline(seed: int = 0):
    """A ``diffusers.StableDiffusionInpaintPipeline`` of tiny random models (UNet in_channels 9)."""
    from diffusers import StableDiffusionInpaintPipeline

    return StableDiffusionInpaintPipeline(
        **tiny_sd_components(in_channels=9, seed=seed),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_img2img_pipeline(seed: int = 0):
    """A ``diffusers.StableDiffusionImg2ImgPipeline`` of tiny random models (no safety checker)
    with a one-step model's scheduler: Euler with "trailing" timesteps, as SD-Turbo ships it, so
    2 steps at strength 0.5 run one denoising step like the real refiner."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline

    components = tiny_sd_components(in_channels=4, seed=seed)
    components["scheduler"] = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        timestep_spacing="trailing", steps_offset=1)
    return StableDiffusionImg2ImgPipeline(
        **components,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_depth_model(kind: str = "zoedepth", seed: int = 0):
    """A tiny metric depth model and its image processor: ``(model, image_processor)``.

    ``kind``: ``"zoedepth"`` (``ZoeDepthForDepthEstimation``, BEiT backbone, pads its input like
    the real one) or ``"depth_anything"`` (``DepthAnythingForDepthEstimation`` with the metric
    head, DINOv2 backbone, ``max_depth`` 20 like the indoor checkpoint). The processors work at
    32-64 pixels so a forward pass takes milliseconds. The model is in eval mode.
    """
    from transformers import (
        BeitConfig,
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
        ZoeDepthConfig,
        ZoeDepthForDepthEstimation,
        ZoeDepthImageProcessor,
    )

    if kind == "zoedepth":
        with _seeded(seed):
            backbone = BeitConfig(
                image_size=32,
                patch_size=8,
                num_hidden_layers=4,
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                use_relative_position_bias=True,
                reshape_hidden_states=False,
                out_features=["stage1", "stage2", "stage3", "stage4"],
            )
            config = ZoeDepthConfig(
                backbone_config=backbone,
                neck_hidden_sizes=[8, 8, 8, 8],
                fusion_hidden_size=8,
                bottleneck_features=8,
                bin_embedding_dim=8,
                num_relative_features=8,
                num_attractors=[4, 4, 4, 1],
                bin_configurations=[{"n_bins": 8, "min_depth": 0.001, "max_depth": 10.0}],
            )
            model = ZoeDepthForDepthEstimation(config)
        processor = ZoeDepthImageProcessor(size={"height": 32, "width": 32}, ensure_multiple_of=16,
                                           keep_aspect_ratio=True, do_pad=True)
    elif kind == "depth_anything":
        with _seeded(seed):
            backbone = Dinov2Config(
                image_size=28,
                patch_size=14,
                num_hidden_layers=4,
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                out_indices=[1, 2, 3, 4],
                reshape_hidden_states=False,
            )
            config = DepthAnythingConfig(
                backbone_config=backbone,
                patch_size=14,
                reassemble_hidden_size=32,
                neck_hidden_sizes=[8, 8, 8, 8],
                fusion_hidden_size=8,
                head_hidden_size=8,
                depth_estimation_type="metric",
                max_depth=20,
            )
            model = DepthAnythingForDepthEstimation(config)
        processor = DPTImageProcessor(size={"height": 42, "width": 42}, keep_aspect_ratio=True,
                                      ensure_multiple_of=14, do_pad=False, resample=3,
                                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    else:
        raise ValueError(f"unknown tiny depth model kind {kind!r}; expected 'zoedepth' or 'depth_anything'")
    model.eval()
    return model, processor
