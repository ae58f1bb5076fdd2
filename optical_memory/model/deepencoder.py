"""DeepSeek-OCR's DeepEncoder: SAM-B → 16x compressor → CLIP-L over the compressed grid → Linear projector.

Composed from transformers' parts (ARCHITECTURE.md, "DeepEncoder"):

- ``DeepseekOcr2SamVisionEncoder`` is SAM-B with its neck and the two stride-2 convs (``downsample_channels`` =
  [512, 1024] is v1's compressor). Its absolute position embedding is resized in fp32, bicubic with antialias, as
  v1 does; its relative-position tables are resized in the storage dtype, so the attention here swaps in subclasses
  that resize them in fp32 like the reference. The attention class is chosen by name (:data:`SAM_ATTENTION`, in
  ``optical_memory.model.sam_attention``), which is where the fused kernels are registered without touching the weights.
- ``CLIPVisionEmbeddings`` / ``CLIPEncoderLayer`` / a ``LayerNorm`` are CLIP-L's parts. The glue written here feeds
  them the compressor grid instead of the patch conv (which stays in the checkpoint unused), prepends the class
  embedding and adds the 257 position embeddings with the 16×16 grid part resized to the token grid.
- Each token is [CLIP output without the class token ‖ compressor features] → ``Linear`` to the decoder width.

:meth:`DeepEncoder.optimize` switches to the fast path (``optical_memory.model.deepencoder_fast``: fused SAM attention,
compiled blocks) and :meth:`DeepEncoder.use_reference` back; both compute the same function within bf16 rounding.

The decoder layout (newline after every grid row, GUNDAM tiles stitched into one big grid first, then the global
grid, then one view separator) is built here too, because ``image_newline`` and ``view_seperator`` are vision-side
parameters; the decoder only sees finished rows of embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import CLIPVisionConfig
from transformers.models.clip.modeling_clip import (
    CLIPEncoderLayer,
    CLIPVisionEmbeddings,
)
from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import (
    DeepseekOcr2SamVisionConfig,
)
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import (
    DeepseekOcr2SamVisionEncoder,
)

from optical_memory.core.geometry import GUNDAM_MAX_TILES, Mode
from optical_memory.core.types import PageView
from optical_memory.core.validation import validate_int
from optical_memory.model.configuration_deepseek_ocr import DeepSeekOCRConfig
from optical_memory.model.deepencoder_fast import EncoderFastPath
from optical_memory.model.preprocessing import VisionInputs, preprocess
from optical_memory.model.sam_attention import (
    FUSED_SAM_ATTENTION,
    SAM_ATTENTION,
    SamEagerAttention,
    SamFlexAttention,
    SamFoldedAttention,
    SamSdpaAttention,
)

# The SAM attention kinds live in optical_memory.model.sam_attention; re-exported here, where encoders choose them.
__all__ = [
    "SAM_ATTENTION",
    "ClipOverCompressor",
    "DeepEncoder",
    "SamEagerAttention",
    "SamFlexAttention",
    "SamFoldedAttention",
    "SamSdpaAttention",
    "VisionEmbedding",
    "encode_views",
]


class ClipOverCompressor(nn.Module):
    """CLIP-L whose patch sequence is the compressor grid (row-major), with a class token and resized positions."""

    def __init__(self, config: CLIPVisionConfig) -> None:
        super().__init__()
        if config._attn_implementation is None:
            config._attn_implementation = "sdpa"
        self.config = config
        self.embeddings = CLIPVisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers))

    def position_embeddings(self, grid: int) -> torch.Tensor:
        """[1 + grid², hidden]: the class position, then the pretrained square grid resized to ``grid``×``grid``."""
        table = self.embeddings.position_embedding.weight
        pretrained = round((table.shape[0] - 1) ** 0.5)
        if pretrained == grid:
            return table
        square = table[1:].reshape(1, pretrained, pretrained, -1).permute(0, 3, 1, 2).float()
        resized = F.interpolate(square, size=(grid, grid), mode="bicubic", align_corners=False, antialias=True)
        resized = resized.permute(0, 2, 3, 1).reshape(grid * grid, -1).to(table.dtype)
        return torch.cat([table[:1], resized])

    def embed(self, compressed: torch.Tensor) -> torch.Tensor:
        """[batch, channels, g, g] compressor grid → [batch, 1 + g², hidden] normalised input of the first layer."""
        batch, _, height, width = compressed.shape
        if height != width:
            raise ValueError(f"the compressor grid must be square, got {height}x{width}")
        patches = compressed.flatten(2).transpose(1, 2)
        class_token = self.embeddings.class_embedding.to(patches.dtype).expand(batch, 1, -1)
        hidden = torch.cat([class_token, patches], dim=1) + self.position_embeddings(height).to(patches.dtype)
        return self.pre_layrnorm(hidden)

    def forward(self, compressed: torch.Tensor) -> torch.Tensor:
        """[batch, channels, g, g] compressor grid → [batch, g², hidden] CLIP features without the class token."""
        hidden = self.embed(compressed)
        for layer in self.layers:
            hidden = layer(hidden, None)
        return hidden[:, 1:]


@dataclass(frozen=True)
class VisionEmbedding:
    """One page in decoder layout: ``embeddings`` [positions, hidden] fill that many ``<image>`` positions.

    ``valid_tokens`` is the paper's count (grid cells); ``positions`` adds row newlines and the view separator.
    """

    embeddings: torch.Tensor
    mode: Mode
    tiles: tuple[int, int]

    @property
    def valid_tokens(self) -> int:
        return self.mode.valid_tokens(self.tiles)

    @property
    def positions(self) -> int:
        return int(self.embeddings.shape[0])


class DeepEncoder(nn.Module):
    """Pixels → vision tokens in the decoder's layout. ``sam_attention`` names an entry of :data:`SAM_ATTENTION`."""

    def __init__(self, config: DeepSeekOCRConfig, *, sam_attention: str = "sdpa") -> None:
        super().__init__()
        if not isinstance(config, DeepSeekOCRConfig):
            raise TypeError(f"config must be a DeepSeekOCRConfig, got {type(config).__name__}")
        self.config = config
        self.sam = DeepseekOcr2SamVisionEncoder(config.sam_config)
        self.clip = ClipOverCompressor(config.clip_config)
        self.projector = nn.Linear(config.vision_feature_size, config.text_config.hidden_size)
        self.image_newline = nn.Parameter(torch.empty(config.text_config.hidden_size))
        self.view_separator = nn.Parameter(torch.empty(config.text_config.hidden_size))
        self.reset_layout_embeddings()
        self.sam_attention = ""
        self.fast_path: EncoderFastPath | None = None
        self.set_sam_attention(sam_attention)

    def reset_layout_embeddings(self) -> None:
        """Random ``image_newline`` / ``view_separator`` with the reference's scale (std = hidden ** -0.5)."""
        std = self.image_newline.shape[0] ** -0.5
        with torch.no_grad():
            nn.init.normal_(self.image_newline, std=std)
            nn.init.normal_(self.view_separator, std=std)

    def set_sam_attention(self, kind: str) -> None:
        """Swap every SAM block's attention for ``SAM_ATTENTION[kind]``, keeping the same parameter tensors.

        The fast path needs a fused kind; choosing another one returns the encoder to the reference path.
        """
        if kind not in SAM_ATTENTION:
            raise ValueError(f"sam_attention {kind!r} is not one of: {', '.join(SAM_ATTENTION)}")
        if kind not in FUSED_SAM_ATTENTION:
            self.fast_path = None
        sam_config: DeepseekOcr2SamVisionConfig = self.config.sam_config
        for layer in self.sam.layers:
            current = layer.attn
            with torch.device("meta"):
                replacement = SAM_ATTENTION[kind](sam_config, layer.window_size)
            replacement.load_state_dict(current.state_dict(), assign=True)
            replacement.train(current.training)
            layer.attn = replacement
        self.sam_attention = kind

    def optimize(self, *, sam_attention: str = "triton", compile: bool = True) -> "DeepEncoder":
        """Switch to the fast path (``optical_memory.model.deepencoder_fast``); returns ``self``.

        Same weights and outputs within bf16 rounding. ``sam_attention`` names a fused kind: ``triton`` (the fastest
        measured; it runs ``folded`` where its kernel does not), ``folded`` or ``flex``. ``compile`` runs the blocks
        through ``torch.compile`` (the first batch of each mode pays the compilation; later batch sizes of that mode
        reuse it).
        """
        if sam_attention not in FUSED_SAM_ATTENTION:
            raise ValueError(
                f"sam_attention {sam_attention!r} is not a fused kind; the fast path takes one of: "
                f"{', '.join(FUSED_SAM_ATTENTION)}"
            )
        self.set_sam_attention(sam_attention)
        self.fast_path = EncoderFastPath(compile=compile)
        return self

    def use_reference(self) -> "DeepEncoder":
        """Back to the reference path (transformers' modules as composed, SDPA with the bias mask); returns ``self``."""
        self.set_sam_attention("sdpa")
        return self

    @property
    def is_optimized(self) -> bool:
        return self.fast_path is not None

    @property
    def dtype(self) -> torch.dtype:
        return self.projector.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.projector.weight.device

    def token_grid(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[batch, 3, side, side] normalised views → [batch, side/64, side/64, hidden] projected tokens."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3 or pixel_values.shape[2] != pixel_values.shape[3]:
            raise ValueError(f"pixel_values must be [batch, 3, side, side], got {tuple(pixel_values.shape)}")
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        if self.fast_path is None:
            compressed = self.sam(pixel_values).last_hidden_state
            clip_features = self.clip(compressed)
        else:
            compressed = self.fast_path.sam(self.sam, pixel_values)
            clip_features = self.fast_path.clip(self.clip.layers, self.clip.embed(compressed))[:, 1:]
        features = torch.cat([clip_features, compressed.flatten(2).transpose(1, 2)], dim=-1)
        tokens = self.projector(features)
        batch, _, rows, cols = compressed.shape
        return tokens.reshape(batch, rows, cols, -1)

    def _rows_with_newlines(self, grid: torch.Tensor) -> torch.Tensor:
        newlines = self.image_newline.to(grid.dtype).expand(grid.shape[0], 1, grid.shape[-1])
        return torch.cat([grid, newlines], dim=1).reshape(-1, grid.shape[-1])

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_values_local: torch.Tensor | None = None,
        image_grids: Sequence[tuple[int, int]] | None = None,
    ) -> list[torch.Tensor]:
        """Per page, [positions, hidden] in decoder layout: stitched tiles (if any), global grid, view separator."""
        grids = [(1, 1)] * pixel_values.shape[0] if image_grids is None else [tuple(g) for g in image_grids]
        if len(grids) != pixel_values.shape[0]:
            raise ValueError(f"image_grids has {len(grids)} entries for {pixel_values.shape[0]} pages")
        global_tokens = self.token_grid(pixel_values)
        tile_count = sum(cols * rows for cols, rows in grids if cols * rows > 1)
        held = 0 if pixel_values_local is None else pixel_values_local.shape[0]
        if held != tile_count:
            raise ValueError(f"pixel_values_local holds {held} tiles but image_grids describe {tile_count}")
        local_tokens = self.token_grid(pixel_values_local) if tile_count else None
        separator = self.view_separator.to(global_tokens.dtype).unsqueeze(0)
        pages: list[torch.Tensor] = []
        offset = 0
        for page, (cols, rows) in enumerate(grids):
            parts: list[torch.Tensor] = []
            if cols * rows > 1 and local_tokens is not None:
                tiles = local_tokens[offset : offset + cols * rows]
                offset += cols * rows
                side = tiles.shape[1]
                stitched = tiles.reshape(rows, cols, side, side, -1).permute(0, 2, 1, 3, 4)
                parts.append(self._rows_with_newlines(stitched.reshape(rows * side, cols * side, -1)))
            parts.append(self._rows_with_newlines(global_tokens[page]))
            parts.append(separator)
            pages.append(torch.cat(parts))
        return pages

    def encode(self, inputs: VisionInputs) -> list[VisionEmbedding]:
        """Encode one prepared batch; checks every page against ``Mode.decoder_positions``."""
        pages = self(inputs.pixel_values, inputs.pixel_values_local, inputs.image_grids)
        embeddings = []
        for page, grid, expected in zip(pages, inputs.image_grids, inputs.decoder_positions):
            if page.shape[0] != expected:
                raise RuntimeError(
                    f"{inputs.mode.value} page with tiles {grid} has {page.shape[0]} positions, layout says {expected}"
                )
            embeddings.append(VisionEmbedding(embeddings=page, mode=inputs.mode, tiles=grid))
        return embeddings


def encode_views(
    model_or_encoder: nn.Module,
    images: Sequence[Image.Image],
    modes: Sequence[Mode],
    *,
    max_tiles: int = GUNDAM_MAX_TILES,
    batch_size: int = 4,
) -> list[VisionEmbedding]:
    """Vision embeddings per page, in input order; pages of one mode are encoded ``batch_size`` at a time.

    ``model_or_encoder`` is a :class:`DeepEncoder` or a model holding one as ``.vision`` (``DeepSeekOCR``).
    """
    encoder = getattr(model_or_encoder, "vision", model_or_encoder)
    if not isinstance(encoder, DeepEncoder):
        raise TypeError(
            f"model_or_encoder must be a DeepEncoder or hold one as .vision, got {type(model_or_encoder).__name__}"
        )
    if isinstance(images, Image.Image) or len(images) != len(modes):
        raise ValueError("images and modes must be sequences of the same length")
    validate_int(batch_size, field_name="batch_size", minimum=1)
    for position, mode in enumerate(modes):
        if not isinstance(mode, Mode):
            raise TypeError(f"modes[{position}] must be a Mode, got {type(mode).__name__}")
    results: list[VisionEmbedding | None] = [None] * len(images)
    by_mode: dict[Mode, list[int]] = {}
    for position, mode in enumerate(modes):
        by_mode.setdefault(mode, []).append(position)
    with torch.no_grad():
        for mode, positions in by_mode.items():
            for start in range(0, len(positions), batch_size):
                chunk = positions[start : start + batch_size]
                inputs = preprocess([images[i] for i in chunk], mode, max_tiles=max_tiles)
                for position, embedding in zip(chunk, encoder.encode(inputs)):
                    results[position] = embedding
    return [embedding for embedding in results if embedding is not None]


def encode_pages(model_or_encoder: nn.Module, views: Sequence[PageView], *, batch_size: int = 4) -> list[VisionEmbedding]:
    """Vision embeddings of the image pages among ``views`` (a context's ``pages``) at their modes, oldest first.

    Each result's ``positions`` equals its page's ``Mode.decoder_positions``, so together they fill the context's
    ``report.decoder_positions``. Pages priced for a host LLM have no mode: such views raise ``ValueError``.
    """
    if any(view.tier is not None and view.tier.mode is None for view in views):
        raise ValueError("these pages were priced for a host LLM; build the context for consumer='deepseek-ocr'")
    shown = [view for view in views if view.mode is not None]
    return encode_views(model_or_encoder, [view.image for view in shown], [view.mode for view in shown], batch_size=batch_size)

