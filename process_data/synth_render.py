"""Scene sampling and rendering for the synthetic motion dataset (see process_data/README.md, "Synthetic data").

One video = a static textured background + 1-3 textured shapes that all perform the class's motion. Every
motion-related quantity is written as `base + amplitude * s(u)` with the centred ramp s(u) = u/(T-1) - 1/2 on
the frame grid u in {0..T-1}:

* the class's own coordinate uses u = t (the frame index), with sign -1 for the reverse direction;
* every other coordinate uses a fixed u = tau drawn uniformly from {0..T-1} once per video ("static jitter").

Because {s(t)} is symmetric about 0 and tau has the same law as a uniformly drawn frame index, a frame taken
at a uniformly random time has exactly the same distribution for every class: the time average of a moving
coordinate equals the law of a static one. Angles are uniform on the circle, so rotation is stationary at
every frame. Amplitudes, speeds and the margins that keep shapes fully in frame are drawn before (and
independently of) the class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

# Class order is fixed: with --classes N the first N are used (opposite motions come in pairs, so every
# prefix of even length is made of pairs that differ only in the direction of time).
CLASSES = (
    "TranslateLeft",
    "TranslateRight",
    "RotateClockwise",
    "RotateCounterclockwise",
    "ZoomIn",
    "ZoomOut",
    "TranslateUp",
    "TranslateDown",
)
# class -> (moving coordinate, sign). Image y points down, so a positive angle turns clockwise on screen.
MOTIONS = {
    "TranslateLeft": ("x", -1),
    "TranslateRight": ("x", 1),
    "TranslateUp": ("y", -1),
    "TranslateDown": ("y", 1),
    "RotateClockwise": ("angle", 1),
    "RotateCounterclockwise": ("angle", -1),
    "ZoomIn": ("scale", 1),
    "ZoomOut": ("scale", -1),
}
VERBS = {  # (singular, plural) phrasings per class
    "TranslateLeft": [
        ("slides to the left", "slide to the left"),
        ("moves left", "move left"),
        ("drifts leftwards", "drift leftwards"),
        ("travels towards the left edge", "travel towards the left edge"),
    ],
    "TranslateRight": [
        ("slides to the right", "slide to the right"),
        ("moves right", "move right"),
        ("drifts rightwards", "drift rightwards"),
        ("travels towards the right edge", "travel towards the right edge"),
    ],
    "TranslateUp": [
        ("moves up", "move up"),
        ("rises", "rise"),
        ("slides upwards", "slide upwards"),
        ("drifts towards the top", "drift towards the top"),
    ],
    "TranslateDown": [
        ("moves down", "move down"),
        ("sinks", "sink"),
        ("slides downwards", "slide downwards"),
        ("drifts towards the bottom", "drift towards the bottom"),
    ],
    "RotateClockwise": [
        ("spins clockwise", "spin clockwise"),
        ("rotates clockwise", "rotate clockwise"),
        ("turns clockwise", "turn clockwise"),
        ("twirls clockwise", "twirl clockwise"),
    ],
    "RotateCounterclockwise": [
        ("spins counterclockwise", "spin counterclockwise"),
        ("rotates anticlockwise", "rotate anticlockwise"),
        ("turns counterclockwise", "turn counterclockwise"),
        ("twirls anticlockwise", "twirl anticlockwise"),
    ],
    "ZoomIn": [
        ("grows larger", "grow larger"),
        ("zooms in", "zoom in"),
        ("gets bigger", "get bigger"),
        ("expands", "expand"),
    ],
    "ZoomOut": [
        ("shrinks", "shrink"),
        ("zooms out", "zoom out"),
        ("gets smaller", "get smaller"),
        ("contracts", "contract"),
    ],
}
TEMPLATES = (
    "{subject} {verb} over a {bg} background",
    "{subject} {verb} in front of a {bg} backdrop",
    "on a {bg} background, {subject} {verb}",
    "{subject} {verb} while the {bg} background stays still",
)
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
BASE_RADIUS = (0.09, 0.14)  # shape radius at zero zoom offset
ZOOM_AMPLITUDE = (0.50, 0.80)  # total log-scale change over the video (factor 1.65-2.2)
SHIFT_AMPLITUDE = (0.30, 0.45)  # total translation over the video
SPIN_DEG_PER_FRAME = (2.5, 4.5)


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
    noise: float = 0.0
    caption: str = ""


def ramp(u: float, n_frames: int) -> float:
    """Centred ramp s(u) = u/(T-1) - 1/2, symmetric over the frame grid u = 0..T-1."""
    return u / max(n_frames - 1, 1) - 0.5


def shape_states(spec: VideoSpec, t: int) -> np.ndarray:
    """Per-shape state at frame t: float64 [n_shapes, 4] = (x, y, angle rad, log radius)."""
    coord, sign = MOTIONS[spec.cls]

    def offset(name: str, amplitude: float) -> float:
        u = t if coord == name else spec.tau[name]
        return (sign if coord == name else 1) * amplitude * ramp(u, spec.n_frames)

    dx, dy, dz = offset("x", spec.shift), offset("y", spec.shift), offset("scale", spec.zoom)
    da = sign * spec.spin * t if coord == "angle" else 0.0
    return np.array([[s.cx + dx, s.cy + dy, s.angle0 + da, s.log_radius + dz] for s in spec.shapes])


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


# ------------------------------------------------------------------------------------------------ sampling


def sample_video_spec(
    rng: np.random.Generator,
    cls: str,
    n_frames: int,
    width: int,
    height: int,
    noise: float = 2.0,
    appearance: bool = True,
) -> VideoSpec:
    """Draw one video of class `cls`. Every draw is class-independent except which coordinate moves.

    Pixel patterns (textures, colour jitter) come from a child generator, so `appearance=False` (no background
    or sprites: cheap, for statistics of the geometry) yields exactly the same geometry and caption."""
    short = min(width, height)
    paint = np.random.default_rng(rng.integers(2**63))
    colours = list(PALETTE)
    bg_colour = colours[rng.integers(len(colours))]
    bg_texture = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    background = None
    if appearance:
        pattern = _texture(bg_texture, height, width, paint, paint.uniform(0.10, 0.22) * short)[..., None]
        bg_rgb = _jitter_colour(bg_colour, paint)
        background = (pattern * _tone(bg_rgb, 0.85) + (1 - pattern) * _tone(bg_rgb, 0.6)).astype(np.float32)
    shift = rng.uniform(*SHIFT_AMPLITUDE) * short
    zoom = rng.uniform(*ZOOM_AMPLITUDE)
    spin = np.deg2rad(rng.uniform(*SPIN_DEG_PER_FRAME))
    tau = {name: int(rng.integers(n_frames)) for name in ("x", "y", "scale")}
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        kind = SHAPES[rng.integers(len(SHAPES))]
        colour = [c for c in colours if c != bg_colour][rng.integers(len(colours) - 1)]
        texture = SHAPE_TEXTURES[rng.integers(len(SHAPE_TEXTURES))]
        log_radius = float(np.log(rng.uniform(*BASE_RADIUS) * short))
        # The shape never leaves the frame: its circumscribed circle at the largest zoom, moved by half the
        # translation amplitude either way, stays inside. The margin does not depend on the class.
        margin = shift / 2 + np.exp(log_radius + zoom / 2) + 1
        cx = rng.uniform(margin, max(margin, width - margin))
        cy = rng.uniform(margin, max(margin, height - margin))
        angle0 = rng.uniform(0, 2 * np.pi)
        sprite = make_sprite(kind, _jitter_colour(colour, paint), texture, paint) if appearance else None
        shapes.append(ShapeSpec(kind, colour, texture, sprite, log_radius, angle0, cx, cy))
    spec = VideoSpec(cls, n_frames, width, height, background, bg_texture, bg_colour, shapes, shift, zoom, spin, tau)
    spec.noise = noise
    spec.caption = make_caption(spec, rng)
    return spec


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
