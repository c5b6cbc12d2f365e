"""Scene sampling and rendering for the synthetic motion dataset (see process_data/README.md, "Synthetic data").

One video = a static textured background + 1-3 textured shapes that all perform the class's motion; backgrounds
and shape designs come from a small pool shared by the whole dataset, so appearance identifies neither the class
nor the video. Every motion-related quantity is written as `base + amplitude * s(u)` with the centred ramp
s(u) = u/(T-1) - 1/2 on the frame grid u in {0..T-1}:

* the class's own coordinates use u = t (the frame index), with sign -1 for the reverse direction;
* every other coordinate uses a fixed u = tau drawn uniformly from {0..T-1} once per video ("static jitter").

Because {s(t)} is symmetric about 0 and tau has the same law as a uniformly drawn frame index, a frame taken
at a uniformly random time has exactly the same distribution for every class: the time average of a moving
coordinate equals the law of a static one. Angles are uniform on the circle, so rotation is stationary at
every frame. Amplitudes, speeds and the margins that keep shapes fully in frame are drawn before (and
independently of) the class.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

# Class order is fixed: with --classes N the first N are used. Every class is mapped onto itself by a horizontal
# flip (the augmentation every method uses, and a symmetry of real action classes): left/right and clockwise/
# counter-clockwise are not separate classes but a direction drawn per video, so a flip-invariant encoder is not
# pushed to confuse classes. Up/down and in/out stay apart (no method flips vertically or reverses zoom).
CLASSES = (
    "MoveUp",
    "MoveDown",
    "ZoomIn",
    "ZoomOut",
    "MoveSideways",
    "Spin",
    "RiseDiagonally",
    "SinkDiagonally",
)
# class -> the moving coordinates with their signs; 0 = the video's own direction (+1 or -1, drawn for every
# video whatever its class). Image y points down, so a positive angle turns clockwise on screen.
MOTIONS = {
    "MoveUp": (("y", -1),),
    "MoveDown": (("y", 1),),
    "ZoomIn": (("scale", 1),),
    "ZoomOut": (("scale", -1),),
    "MoveSideways": (("x", 0),),
    "Spin": (("angle", 0),),
    "RiseDiagonally": (("y", -1), ("x", 0)),
    "SinkDiagonally": (("y", 1), ("x", 0)),
}
VERBS = {  # (singular, plural) phrasings per class: the words name the motion, never a direction the flip changes
    "MoveUp": [("moves up", "move up"), ("rises", "rise"), ("slides upwards", "slide upwards")],
    "MoveDown": [("moves down", "move down"), ("sinks", "sink"), ("slides downwards", "slide downwards")],
    "ZoomIn": [("grows larger", "grow larger"), ("zooms in", "zoom in"), ("gets bigger", "get bigger")],
    "ZoomOut": [("shrinks", "shrink"), ("zooms out", "zoom out"), ("gets smaller", "get smaller")],
    "MoveSideways": [("moves sideways", "move sideways"), ("slides sideways", "slide sideways")],
    "Spin": [("spins around", "spin around"), ("rotates", "rotate"), ("turns around", "turn around")],
    "RiseDiagonally": [("rises diagonally", "rise diagonally"), ("moves up at a slant", "move up at a slant")],
    "SinkDiagonally": [("sinks diagonally", "sink diagonally"), ("moves down at a slant", "move down at a slant")],
}
TEMPLATES = (
    "{subject} {verb} over a {bg} background",
    "{subject} {verb} in front of a {bg} backdrop",
    "on a {bg} background, {subject} {verb}",
    "{subject} {verb} while the {bg} background stays still",
)
# --captions motion: the words name the motion and nothing a single frame shows (no colours, shapes or background),
# so matching video to text needs the motion, the way a real caption names the action.
MOTION_TEMPLATES = (
    "{subject} {verb}",
    "{subject} {verb} across the frame",
    "watch {subject} {verb}",
    "{subject} {verb} the whole time",
)
MOTION_SUBJECTS = (("the shape", "the shapes"), ("an object", "some objects"), ("something", "a few things"))
CAPTION_STYLES = ("scene", "motion")
PALETTE = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (45, 85, 220),
    "yellow": (235, 210, 45),
    "orange": (240, 135, 30),
    "purple": (135, 60, 185),
    "cyan": (40, 195, 205),
    "pink": (240, 125, 180),
    "white": (235, 235, 235),
    "gray": (128, 128, 128),
    "brown": (125, 80, 40),
}
SHAPES = ("circle", "square", "triangle", "star", "pentagon", "hexagon", "diamond", "cross")
SHAPE_TEXTURES = ("stripes", "checker", "speckle")
BACKGROUNDS = {"stripes": "striped", "checker": "checkered", "speckle": "speckled"}
SPRITE_RADIUS = 24  # shape sprites are drawn at this radius (px) and warped into the frame

# Ranges as fractions of the short side S of the frame (defaults tuned for 96x72).
BASE_RADIUS = (0.08, 0.12)  # shape radius at zero zoom offset
ZOOM_AMPLITUDE = (0.60, 0.90)  # total log-scale change over the video (factor 1.8-2.5)
SHIFT_AMPLITUDE = (0.40, 0.55)  # total translation over the video (~0.7 px/frame at 72 px, 48 frames)
SPIN_DEG_PER_FRAME = (4.0, 7.0)
CANVAS = 3  # the moving background is drawn on a canvas this many times the frame (covers shift and zoom-out)
DEFAULT_POOL = 4  # backgrounds and shape designs shared by all videos (0: each video draws its own)


@dataclass
class ShapeSpec:
    kind: str
    colour: str
    texture: str
    sprite: np.ndarray | None  # float32 [R, R, 4]: premultiplied RGB + alpha, R = 2 * SPRITE_RADIUS + 2
    log_radius: float  # log of the radius in frame pixels at zero zoom offset
    angle0: float  # radians
    cx: float
    cy: float


@dataclass
class VideoSpec:
    cls: str
    n_frames: int
    width: int
    height: int
    background: np.ndarray | None  # float32 [H, W, 3] RGB (None: geometry only)
    bg_texture: str
    bg_colour: str
    shapes: list[ShapeSpec]
    shift: float  # px, translation amplitude (moving axis) / static jitter amplitude (other axes)
    zoom: float  # log-scale amplitude
    spin: float  # radians per frame
    tau: dict[str, int] = field(default_factory=dict)  # static-jitter frame per coordinate
    direction: int = 1  # +1 / -1: the sense of the motion where the class leaves it open (sideways, spin)
    camera: bool = False  # the background moves with the shapes (a camera motion) instead of staying still
    noise: float = 0.0
    caption: str = ""


def ramp(u: float, n_frames: int) -> float:
    """Centred ramp s(u) = u/(T-1) - 1/2, symmetric over the frame grid u = 0..T-1."""
    return u / max(n_frames - 1, 1) - 0.5


def moving_signs(spec: VideoSpec) -> dict[str, int]:
    """Moving coordinate -> its sign in this video (the video's own direction where the class leaves it open)."""
    return {name: (sign or spec.direction) for name, sign in MOTIONS[spec.cls]}


def motion_offsets(spec: VideoSpec, t: int) -> tuple[float, float, float, float]:
    """(dx px, dy px, angle rad, log-scale) of the scene's motion at frame t: the moving coordinates follow the
    ramp in t, the others sit at their static-jitter frame tau."""
    moving = moving_signs(spec)

    def offset(name: str, amplitude: float) -> float:
        if name in moving:
            return moving[name] * amplitude * ramp(t, spec.n_frames)
        return amplitude * ramp(spec.tau[name], spec.n_frames)

    da = moving["angle"] * spec.spin * t if "angle" in moving else 0.0
    return offset("x", spec.shift), offset("y", spec.shift), da, offset("scale", spec.zoom)


def shape_states(spec: VideoSpec, t: int) -> np.ndarray:
    """Per-shape state at frame t: float64 [n_shapes, 4] = (x, y, angle rad, log radius)."""
    dx, dy, da, dz = motion_offsets(spec, t)
    return np.array([[s.cx + dx, s.cy + dy, s.angle0 + da, s.log_radius + dz] for s in spec.shapes])


def background_matrix(spec: VideoSpec, t: int) -> np.ndarray:
    """2x3 map from the background canvas (CANVAS x the frame, centred on it) to frame t. With camera motion the
    whole scene moves like its shapes (translated, turned and zoomed about the frame centre), so every patch of
    the frame shows the class's motion; without it the background stays still."""
    dx, dy, da, dz = motion_offsets(spec, t) if spec.camera else (0.0, 0.0, 0.0, 0.0)
    scale = np.exp(dz)
    c, s = scale * np.cos(da), scale * np.sin(da)
    frame_centre = np.array([spec.width / 2, spec.height / 2])
    canvas_centre = np.array([spec.width * CANVAS / 2, spec.height * CANVAS / 2])
    linear = np.array([[c, -s], [s, c]])
    shift = frame_centre + np.array([dx, dy]) - linear @ canvas_centre
    return np.concatenate([linear, shift[:, None]], axis=1)


# ------------------------------------------------------------------------------------------------ textures


def _tone(rgb: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(rgb * factor, 0, 255)


def _texture(kind: str, h: int, w: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    """A two-tone pattern in [0, 1], float32 [h, w]; `scale` is the pattern period in px."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    phase_u, phase_v = rng.uniform(0, scale, size=2)
    if kind == "stripes":
        return (np.sin(2 * np.pi * (u + phase_u) / scale) > 0).astype(np.float32)
    if kind == "checker":
        return (((np.floor((u + phase_u) / scale) + np.floor((v + phase_v) / scale)) % 2) == 0).astype(np.float32)
    cells = rng.random((max(2, int(h / scale * 2)), max(2, int(w / scale * 2)))).astype(np.float32)
    blobs = cv2.resize(cells, (w, h), interpolation=cv2.INTER_CUBIC)
    return (blobs > np.median(blobs)).astype(np.float32)


def _polygon(kind: str, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Vertices (float [n, 2], centred at 0) of a shape inscribed in a circle of `radius`."""

    def ring(n, r, start=-np.pi / 2):
        a = start + np.arange(n) * 2 * np.pi / n
        return np.stack([np.cos(a), np.sin(a)], 1) * r

    if kind == "circle":
        return ring(64, radius)
    if kind == "square":
        return ring(4, radius, np.pi / 4)
    if kind == "diamond":
        return ring(4, radius) * np.array([0.7, 1.0])
    if kind in ("triangle", "pentagon", "hexagon"):
        return ring({"triangle": 3, "pentagon": 5, "hexagon": 6}[kind], radius)
    if kind == "star":
        outer, inner = ring(5, radius), ring(5, radius * 0.45, -np.pi / 2 + np.pi / 5)
        return np.stack([outer, inner], 1).reshape(-1, 2)
    arm = radius * 0.38  # cross
    pts = [(arm, -radius), (arm, -arm), (radius, -arm), (radius, arm), (arm, arm), (arm, radius)]
    half = np.array(pts)
    return np.concatenate([half, -half])


def make_sprite(kind: str, rgb: np.ndarray, texture: str, rng: np.random.Generator) -> np.ndarray:
    """Premultiplied RGBA sprite (float32) of a textured shape with radius SPRITE_RADIUS, centred."""
    size = 2 * SPRITE_RADIUS + 2
    ss = 4  # supersampled mask -> anti-aliased edges
    mask = np.zeros((size * ss, size * ss), np.uint8)
    # fillPoly puts integer coordinates on pixel centres: shift by (ss-1)/2 so that, after the area
    # downsampling, the polygon centre is exactly sprite pixel (R+1, R+1); 4 fractional bits for sub-pixel edges.
    pts = _polygon(kind, SPRITE_RADIUS * ss, rng) + size * ss / 2 + (ss - 1) / 2
    cv2.fillPoly(mask, [(pts * 16).round().astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4)
    alpha = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    pattern = _texture(texture, size, size, rng, rng.uniform(9, 16))
    light, dark = _tone(rgb, 1.0), _tone(rgb, 0.45)
    colour = pattern[..., None] * light + (1 - pattern[..., None]) * dark
    return np.concatenate([colour * alpha[..., None], alpha[..., None]], axis=2).astype(np.float32)


def _jitter_colour(name: str, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.array(PALETTE[name], np.float32) + rng.uniform(-15, 15, 3), 0, 255)


@dataclass(frozen=True)
class Look:
    """One appearance: a background (texture + colour) or a shape design (kind + colour + texture)."""

    kind: str
    colour: str
    texture: str
    seed: int  # seeds the pixel pattern, so the same look renders the same pixels in every video


def _draw_background_look(rng: np.random.Generator) -> Look:
    colour = list(PALETTE)[rng.integers(len(PALETTE))]
    return Look("background", colour, list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))], int(rng.integers(2**31)))


def _draw_shape_look(rng: np.random.Generator) -> Look:
    kind, colour = SHAPES[rng.integers(len(SHAPES))], list(PALETTE)[rng.integers(len(PALETTE))]
    return Look(kind, colour, SHAPE_TEXTURES[rng.integers(len(SHAPE_TEXTURES))], int(rng.integers(2**31)))


def appearance_pool(seed: int, size: int) -> tuple[list[Look], list[Look]]:
    """`size` backgrounds and `size` shape designs shared by every video of a dataset (pure function of seed):
    with a small pool, appearance cannot tell one video from another, so instance discrimination must use motion."""
    rng = np.random.default_rng([seed, 7919])
    return [_draw_background_look(rng) for _ in range(size)], [_draw_shape_look(rng) for _ in range(size)]


@functools.lru_cache(maxsize=64)
def _background_pixels(look: Look, height: int, width: int, canvas: int = 1) -> np.ndarray:
    """The look's background for a height x width frame, drawn on a canvas `canvas` times larger (same period)."""
    paint = np.random.default_rng(look.seed)
    short = min(width, height)
    pattern = _texture(look.texture, height * canvas, width * canvas, paint, paint.uniform(0.10, 0.22) * short)
    rgb = _jitter_colour(look.colour, paint)
    pattern = pattern[..., None]
    return (pattern * _tone(rgb, 0.85) + (1 - pattern) * _tone(rgb, 0.6)).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _sprite_pixels(look: Look) -> np.ndarray:
    paint = np.random.default_rng(look.seed)
    return make_sprite(look.kind, _jitter_colour(look.colour, paint), look.texture, paint)


# ------------------------------------------------------------------------------------------------ sampling


def sample_video_spec(
    rng: np.random.Generator,
    cls: str,
    n_frames: int,
    width: int,
    height: int,
    noise: float = 2.0,
    appearance: bool = True,
    pool: tuple[list[Look], list[Look]] | None = None,
    camera: bool = False,
    captions: str = "scene",
) -> VideoSpec:
    """Draw one video of class `cls`. Every draw is class-independent except which coordinates move.

    pool: shared (backgrounds, shape designs) to pick from (None: each video draws its own looks). Pixel patterns
    are seeded by the look, so `appearance=False` (no background or sprites: cheap, for statistics of the
    geometry) yields exactly the same geometry and caption."""
    short = min(width, height)
    background_look = pool[0][rng.integers(len(pool[0]))] if pool else _draw_background_look(rng)
    shift = rng.uniform(*SHIFT_AMPLITUDE) * short
    zoom = rng.uniform(*ZOOM_AMPLITUDE)
    spin = np.deg2rad(rng.uniform(*SPIN_DEG_PER_FRAME))
    tau = {name: int(rng.integers(n_frames)) for name in ("x", "y", "scale")}
    direction = int(rng.choice((-1, 1)))
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        look = pool[1][rng.integers(len(pool[1]))] if pool else _draw_shape_look(rng)
        log_radius = float(np.log(rng.uniform(*BASE_RADIUS) * short))
        # The shape never leaves the frame: its circumscribed circle at the largest zoom, moved by half the
        # translation amplitude either way, stays inside. The margin does not depend on the class.
        margin = shift / 2 + np.exp(log_radius + zoom / 2) + 1
        cx = rng.uniform(margin, max(margin, width - margin))
        cy = rng.uniform(margin, max(margin, height - margin))
        angle0 = rng.uniform(0, 2 * np.pi)
        sprite = _sprite_pixels(look) if appearance else None
        shapes.append(ShapeSpec(look.kind, look.colour, look.texture, sprite, log_radius, angle0, cx, cy))
    canvas = CANVAS if camera else 1
    background = _background_pixels(background_look, height, width, canvas) if appearance else None
    spec = VideoSpec(
        cls, n_frames, width, height, background, background_look.texture, background_look.colour, shapes,
        shift, zoom, spin, tau=tau, direction=direction, noise=noise, camera=camera,
    )  # fmt: skip
    spec.caption = make_caption(spec, rng) if captions == "scene" else make_motion_caption(spec, rng)
    return spec


def make_motion_caption(spec: VideoSpec, rng: np.random.Generator) -> str:
    """One line naming the motion only (a generic subject, singular or plural by the number of shapes). It draws
    from `rng` after all the geometry and as often as make_caption, so the videos do not depend on the style."""
    plural = len(spec.shapes) > 1
    singular_verb, plural_verb = VERBS[spec.cls][rng.integers(len(VERBS[spec.cls]))]
    # one draw for (template, subject): the same two draws as make_caption, so the noise that follows is the same
    template_index, subject_index = divmod(
        int(rng.integers(len(MOTION_TEMPLATES) * len(MOTION_SUBJECTS))), len(MOTION_SUBJECTS)
    )
    template, subject = MOTION_TEMPLATES[template_index], MOTION_SUBJECTS[subject_index][int(plural)]
    text = template.format(subject=subject, verb=plural_verb if plural else singular_verb)
    return text[0].upper() + text[1:]


def make_caption(spec: VideoSpec, rng: np.random.Generator) -> str:
    """One line naming every shape (colour + kind), the background and the motion, in one of a few wordings."""
    names = [f"a {s.colour} {s.kind}" for s in spec.shapes]
    subject = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    singular, plural = VERBS[spec.cls][rng.integers(len(VERBS[spec.cls]))]
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    bg = f"{BACKGROUNDS[spec.bg_texture]} {spec.bg_colour}"
    text = template.format(subject=subject, verb=singular if len(names) == 1 else plural, bg=bg)
    return text[0].upper() + text[1:]


# ------------------------------------------------------------------------------------------------ rendering


def render_frame(spec: VideoSpec, t: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame t as uint8 [H, W, 3] RGB; `rng` draws the per-frame sensor noise (none when None or noise=0)."""
    if spec.camera:
        frame = cv2.warpAffine(
            spec.background, background_matrix(spec, t), (spec.width, spec.height), flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT101,
        )  # fmt: skip
    else:
        frame = spec.background.copy()
    centre = SPRITE_RADIUS + 1
    for shape, (x, y, angle, log_r) in zip(spec.shapes, shape_states(spec, t)):
        k = np.exp(log_r) / SPRITE_RADIUS
        c, s = k * np.cos(angle), k * np.sin(angle)
        # sprite (u, v) -> frame (x, y): rotate + scale about the sprite centre, then move to (x, y)
        matrix = np.array([[c, -s, x - c * centre + s * centre], [s, c, y - s * centre - c * centre]])
        warped = cv2.warpAffine(
            shape.sprite,
            matrix,
            (spec.width, spec.height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        frame = frame * (1 - warped[..., 3:]) + warped[..., :3]
    if rng is not None and spec.noise > 0:
        frame = frame + rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(spec.noise)
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def render_video(spec: VideoSpec, rng: np.random.Generator) -> np.ndarray:
    """All frames, uint8 [T, H, W, 3] RGB."""
    return np.stack([render_frame(spec, t, rng) for t in range(spec.n_frames)])
