"""Image-quality degraders with five severity levels each: MRI's own artefacts (made in k-space
where that is where they arise) and the generic corruptions of the robustness benchmarks.

Every degrader: a pure function of (image, random generator, parameters); uint8 in, uint8 out,
same shape; the identity at its ``none`` setting; deterministic for a seed. Pixel-sized
parameters of the levels are given for 256-pixel images and scale with the image width.
Images with equal colour channels (grayscale read as BGR) are degraded once and copied.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from btk.api import Degrader, Param, RegisterDegrader, hookimpl


def _plane(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """The grayscale plane (float64) and whether the image has three equal channels."""
    if image.ndim == 2:
        return image.astype(np.float64), False
    if image.shape[-1] == 1:
        return image[..., 0].astype(np.float64), False
    if np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2]):
        return image[..., 0].astype(np.float64), True
    return image.astype(np.float64).mean(axis=-1), True


def _back(plane: np.ndarray, like: np.ndarray) -> np.ndarray:
    out = np.clip(np.rint(plane), 0, 255).astype(np.uint8)
    if like.ndim == 2:
        return out
    return np.repeat(out[..., None], like.shape[-1], axis=-1)


def _kspace(plane: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(plane))


def _image(k: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.ifft2(np.fft.ifftshift(k)))


def rician_noise(image, rng, sigma):
    """Magnitude MRI noise: |signal + n1 + i n2| with n1, n2 ~ N(0, (sigma * 255)^2) (Rician)."""
    if sigma == 0:
        return image.copy()
    plane, _ = _plane(image)
    s = sigma * 255
    noisy = np.hypot(plane + rng.normal(0, s, plane.shape), rng.normal(0, s, plane.shape))
    return _back(noisy, image)


def rigid_motion(image, rng, shift, fraction):
    """Rigid in-plane translation during the scan: the last ``fraction`` of the phase-encoding
    lines (rows of k-space, in acquisition order) are acquired with the head moved by ``shift``
    pixels in a random direction, i.e. multiplied by the phase ramp of that translation."""
    if shift == 0 or fraction == 0:
        return image.copy()
    plane, _ = _plane(image)
    h, w = plane.shape
    k = _kspace(plane)
    angle = rng.uniform(0, 2 * np.pi)
    dx, dy = shift * np.cos(angle), shift * np.sin(angle)
    u = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    v = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    ramp = np.exp(-2j * np.pi * (u * dx + v * dy))
    moved = np.zeros((h, 1), bool)
    moved[int(round(h * (1 - fraction))):] = True
    k = np.where(moved, k * ramp, k)
    return _back(_image(k), image)


def ghosting(image, rng, strength, period):
    """Periodic ghosts: every ``period``-th phase-encoding line of k-space is scaled by
    ``1 - strength`` (signal changing between lines, e.g. pulsation), which adds shifted, fainter
    copies of the anatomy ``rows / period`` apart along the phase-encoding direction."""
    if strength == 0:
        return image.copy()
    plane, _ = _plane(image)
    k = _kspace(plane)
    k[::period, :] *= 1.0 - strength
    return _back(_image(k), image)


def spike(image, rng, amplitude):
    """A k-space spike (a corrupt sample, e.g. from static discharge): one bad point at a random
    position away from the centre of k-space. Its inverse transform is a plane wave, so the image
    gets herringbone stripes; added directly in image space as a cosine of ``amplitude`` x 255
    grey levels at that frequency."""
    if amplitude == 0:
        return image.copy()
    plane, _ = _plane(image)
    h, w = plane.shape
    fu, fv = rng.uniform(0.08, 0.35) * rng.choice([-1, 1]), rng.uniform(0.08, 0.35) * rng.choice([-1, 1])
    y, x = np.mgrid[0:h, 0:w]
    stripes = amplitude * 255 * np.cos(2 * np.pi * (fu * x + fv * y) + rng.uniform(0, 2 * np.pi))
    return _back(plane + stripes, image)


def bias_field(image, rng, strength):
    """Coil inhomogeneity: the image times a smooth field exp(strength * f), f a random
    low-frequency pattern (noise blurred at a quarter of the width, scaled to [-1, 1])."""
    import cv2

    if strength == 0:
        return image.copy()
    plane, _ = _plane(image)
    h, w = plane.shape
    small = rng.normal(0, 1, (8, 8)).astype(np.float32)
    field = cv2.resize(cv2.GaussianBlur(small, (0, 0), 2), (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float64)
    field /= np.abs(field).max() + 1e-9
    return _back(plane * np.exp(strength * field), image)


def gibbs(image, rng, keep):
    """Gibbs ringing: k-space truncated to its central ``keep`` share in each direction (a lower
    acquisition resolution), so sharp edges ring."""
    if keep >= 1:
        return image.copy()
    plane, _ = _plane(image)
    h, w = plane.shape
    k = _kspace(plane)
    mask = np.zeros_like(k, dtype=bool)
    kh, kw = max(1, int(round(h * keep / 2))), max(1, int(round(w * keep / 2)))
    mask[h // 2 - kh:h // 2 + kh, w // 2 - kw:w // 2 + kw] = True
    return _back(_image(np.where(mask, k, 0)), image)


def jpeg(image, rng, quality):
    """JPEG compression at ``quality`` (OpenCV's encoder); 0 turns it off."""
    import cv2

    if quality == 0:
        return image.copy()
    _, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    flag = cv2.IMREAD_GRAYSCALE if image.ndim == 2 or image.shape[-1] == 1 else cv2.IMREAD_COLOR
    return cast(np.ndarray, cv2.imdecode(data, flag)).reshape(image.shape)  # decoding what imencode made


def contrast(image, rng, factor):
    """Lower contrast: pixel values pulled toward the image mean, x' = mean + factor * (x - mean)."""
    if factor == 1:
        return image.copy()
    values = image.astype(np.float64)
    return np.clip(np.rint(values.mean() + factor * (values - values.mean())), 0, 255).astype(np.uint8)


DEGRADERS = (
    Degrader("noise", rician_noise, (Param("sigma", float, 0.06, 0.0, 1.0, "noise SD as a share of 255"),),
             "Rician noise of magnitude MRI", levels=tuple({"sigma": s} for s in (0.02, 0.04, 0.06, 0.09, 0.12)),
             none={"sigma": 0.0}),
    Degrader("motion", rigid_motion, (Param("shift", float, 4.0, 0.0, 64.0, "translation in pixels"),
                                      Param("fraction", float, 0.5, 0.0, 1.0, "share of k-space lines after the move")),
             "rigid head motion during the scan (k-space phase ramp)",
             levels=tuple({"shift": s, "fraction": 0.5} for s in (1.0, 2.0, 4.0, 6.0, 8.0)), scaled=("shift",),
             none={"shift": 0.0}),
    Degrader("ghosting", ghosting, (Param("strength", float, 0.45, 0.0, 1.0, "signal lost on modulated lines"),
                                    Param("period", int, 4, 2, 64, "every how many k-space lines")),
             "periodic ghosts (k-space line modulation)",
             levels=tuple({"strength": s, "period": 4} for s in (0.15, 0.3, 0.45, 0.6, 0.8)), none={"strength": 0.0}),
    Degrader("spike", spike, (Param("amplitude", float, 0.06, 0.0, 1.0, "stripe amplitude as a share of 255"),),
             "k-space spike: herringbone stripes",
             levels=tuple({"amplitude": a} for a in (0.02, 0.04, 0.06, 0.09, 0.13)),
             none={"amplitude": 0.0}),
    Degrader("bias", bias_field, (Param("strength", float, 0.3, 0.0, 2.0, "log-amplitude of the field"),),
             "smooth multiplicative bias field (coil inhomogeneity)",
             levels=tuple({"strength": s} for s in (0.1, 0.2, 0.3, 0.45, 0.6)), none={"strength": 0.0}),
    Degrader("gibbs", gibbs, (Param("keep", float, 0.45, 0.01, 1.0, "central share of k-space kept"),),
             "Gibbs ringing from k-space truncation", levels=tuple({"keep": k} for k in (0.8, 0.6, 0.45, 0.3, 0.2)),
             none={"keep": 1.0}),
    Degrader("jpeg", jpeg, (Param("quality", int, 15, 0, 100, "JPEG quality (0: off)"),),
             "JPEG compression (ImageNet-C's qualities)", levels=tuple({"quality": q} for q in (25, 18, 15, 10, 7)),
             none={"quality": 0}),
    Degrader("contrast", contrast, (Param("factor", float, 0.35, 0.0, 1.0, "contrast kept"),),
             "lower contrast, toward the mean", levels=tuple({"factor": f} for f in (0.7, 0.5, 0.35, 0.2, 0.1)),
             none={"factor": 1.0}),
)


@hookimpl
def btk_register_degraders(register: RegisterDegrader) -> None:
    for degrader in DEGRADERS:
        register(degrader)
