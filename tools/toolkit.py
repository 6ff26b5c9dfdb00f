"""The four tools of the method, wired into a registry: argument models, descriptions, observations.

The descriptions are part of the protocol the model is trained on: change them and trained models see a
different prompt. Boxes are always on the 0-1000 grid of the image the model was shown.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from tools.boxes import check_rel_box, rel_to_px
from tools.crop import crop
from tools.enhance import enhance
from tools.measure import MeasureError, measure
from tools.registry import Observation, Tool, ToolContext, ToolError, ToolRegistry

BOX_SCHEMA = {
    "type": "array",
    "items": {"type": "number", "minimum": 0, "maximum": 1000},
    "minItems": 4,
    "maxItems": 4,
    "description": "[x1, y1, x2, y2] on the 0-1000 grid of the image",
}


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CropArgs(_Args):
    # Any, so that an unusable box reaches the tool and falls back to a proposal instead of failing.
    bbox: Annotated[Any, WithJsonSchema(BOX_SCHEMA)] = None


class EnhanceArgs(_Args):
    mode: Literal["clahe", "edges", "highpass"] = Field(
        "clahe",
        description="clahe: local contrast (faint stains); edges: gradient map (cracks, broken outlines); "
        "highpass: fine texture without illumination (scratches, texture breaks)",
    )
    bbox: Annotated[
        Any, WithJsonSchema({**BOX_SCHEMA, "description": "region to enhance; whole image if omitted"})
    ] = None


class PriorArgs(_Args):
    name: str | None = Field(
        None, description="product or category; the part under inspection if omitted", max_length=200
    )


class MeasureArgs(_Args):
    operation: Literal["distance", "angle", "position", "spacing"] = Field(
        description="distance: between 2 items; angle: direction of 2 items or angle at the middle of 3; "
        "position: first item relative to second; spacing: gaps along a row of 2 or more items"
    )
    items: list[Annotated[list[float], Field(min_length=2, max_length=4)]] = Field(
        min_length=1,
        max_length=32,
        description="points [x, y] or boxes [x1, y1, x2, y2] on the 0-1000 grid",
    )


def _run_crop(args: CropArgs, ctx: ToolContext) -> Observation:
    result = crop(ctx.frame, args.bbox, max_pixels=ctx.max_observation_pixels)
    return Observation(tool="crop", data=result.describe(), images=[result.patch])


def _run_enhance(args: EnhanceArgs, ctx: ToolContext) -> Observation:
    h, w = ctx.frame.shape[:2]
    region = None
    if args.bbox is not None:
        problem = check_rel_box(args.bbox)
        if problem:
            raise ToolError("invalid_bbox", problem)
        region = rel_to_px(args.bbox, w, h)
    view = enhance(ctx.frame, args.mode, region, max_pixels=ctx.max_observation_pixels)
    data: dict = {"mode": args.mode, "size": [view.shape[1], view.shape[0]]}
    if args.bbox is not None:
        data["bbox"] = list(args.bbox)
    return Observation(tool="enhance", data=data, images=[view])


def _run_prior(args: PriorArgs, ctx: ToolContext) -> Observation:
    name = args.name or ctx.product
    if not name:
        raise ToolError("missing_name", "no product given and none configured for this part; pass a name")
    if ctx.priors is None:
        raise ToolError("no_prior_store", "this station has no prior store configured")
    match = ctx.priors.lookup(name)
    if match is None:
        known = ", ".join(sorted(ctx.priors.names())[:12])
        raise ToolError("no_prior", f"no prior close to {name!r}; known products include: {known}")
    data = {
        "query": name,
        "name": match.prior.name,
        "matched_by": match.matched_by,
        "prior": match.prior.render(),
    }
    return Observation(tool="prior", data=data)


def _run_measure(args: MeasureArgs, ctx: ToolContext) -> Observation:
    h, w = ctx.frame.shape[:2]
    try:
        data = measure(args.operation, args.items, w, h, ctx.mm_per_px)
    except MeasureError as exc:
        raise ToolError("invalid_items", str(exc)) from exc
    return Observation(tool="measure", data={"operation": args.operation, **data})


CROP = Tool(
    name="crop",
    description="Zoom in: return a high-resolution patch of the original image around bbox. "
    "Without a usable bbox, returns the most suspicious region found automatically.",
    args_model=CropArgs,
    run=_run_crop,
)
ENHANCE = Tool(
    name="enhance",
    description="Return an enhanced grey view of the image or of a region, to reveal low-contrast stains, "
    "fine scratches, cracks and texture breaks.",
    args_model=EnhanceArgs,
    run=_run_enhance,
)
PRIOR = Tool(
    name="prior",
    description="Retrieve the normalcy prior of a product: how a defect-free part looks (geometry, texture, "
    "structure), which variation is acceptable, and the defect types known for it.",
    args_model=PriorArgs,
    run=_run_prior,
)
MEASURE = Tool(
    name="measure",
    description="Measure geometry between points or boxes: distances, angles, relative position, spacing "
    "of a row of components. Results in pixels of the original image, and millimetres when calibrated.",
    args_model=MeasureArgs,
    run=_run_measure,
)


def default_registry() -> ToolRegistry:
    """The toolkit as the station and training use it, in prompt order."""
    return ToolRegistry([CROP, ENHANCE, PRIOR, MEASURE])
